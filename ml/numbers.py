"""Reading whole numbers: each image segmented into digits (``ml.segment``), all the digits of
all the images classified in one model call, and a reading per image.

The groups of strokes of every image in a batch are judged in one model call (model and
detector together): for digits written apart, that call is every digit's answer. A group the
model doubts (touching digits read whole are a "number" to the detector) is cut, and its
candidate pieces judged together with every other image's, one call a round (the cuts, then
the cuts of their sides); the pieces kept are answered from them.

A number's verdict is ``number`` when every digit is confident (each judged alone, as a single
digit is: the detector's "digit" and the calibrated confidence over the bundle's ``unsure``
line) and ``unsure`` when any is not. An image of one digit keeps the single-digit result
(``digit``, ``unsure`` or ``not_a_digit``, with its reason) exactly as ``predict_images`` gives it.

Pieces judged one by one miss what the whole shows: the letters of a word, the parts of a
drawing, cut and read alone, can pass for digits. So the groups of strokes, judged whole in the
first model call before any cut, speak for the image: where the detector finds them likelier
text, drawings, scribbles or photos than digits, the image is ``not_a_digit`` with that
reason, or ``unsure`` where it only leans that way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ml.inference import UNEXPECTED_ERROR, Prediction, Predictor
from ml.preprocessing import ModelInput, PreprocessingError
from ml.reject import KINDS, REASONS
from ml.segment import GLANCE, READ, Page, Scorer, Scoring, Segment, lockstep, read_page, resolving, scored

logger = logging.getLogger(__name__)

# The detector's share, over an image's groups of strokes, of the kinds that are neither a
# digit nor a number, above which they are not read as a number, and above which not surely.
# Chosen on ml.negatives seed 11 (500 non-digits) against number_set seed 11 (300 numbers); on
# seed 12, untuned: 90.2% of the non-digits caught (not a digit, unsure or refused; 75.4%
# judging the pieces alone), 1 number of 300 taken for not a digit.
WHOLE_NOT_A_NUMBER = 0.9
WHOLE_UNSURE = 0.7
_OTHER_KINDS = [kind for kind in KINDS if kind not in ("digit", "number")]
_OTHER = [KINDS.index(kind) for kind in _OTHER_KINDS]


@dataclass(frozen=True)
class DigitReading:
    """One digit of a number: the model's prediction for it, its input and its box (x, y, w, h)."""

    prediction: Prediction
    model_input: ModelInput
    box: tuple[int, int, int, int]

    def as_dict(self) -> dict:
        return {
            "digit": self.prediction.digit,
            "confidence": self.prediction.confidence,
            "probabilities": list(self.prediction.probabilities),
            "box": list(self.box),
        }


@dataclass(frozen=True)
class NumberResult:
    """The outcome for one image: its digits read left to right, or an error.

    ``number`` is the digits as a string ("" for an image that is not a digit); ``verdict`` is
    ``number`` or ``unsure`` for several digits, the single digit's own verdict for one, and
    ``prediction`` that single digit's prediction (None for several).
    """

    number: str = ""
    digits: tuple[DigitReading, ...] = ()
    verdict: str = ""
    reason: str = ""
    prediction: Prediction | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        return {"number": self.number, "verdict": self.verdict, "digits": [d.as_dict() for d in self.digits]}


def split_scorer(predictor: Predictor) -> Scorer:
    """How sure ``predictor`` is that each input is one digit, and which: the detector's share
    for "digit" times the calibrated confidence (read), or the detector's share alone (a
    glance). A cut through the middle of a digit leaves halves the detector doubts; two
    touching digits left whole are a "number" to it."""
    return _Reader(predictor).scorer


class _Reader:
    """The predictor's answers for a batch, each input judged once: the groups of every image
    in one call, then the pieces of doubtful groups (touching digits) as they are cut."""

    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        self.answers: dict[bytes, Prediction] = {}
        self.kinds: dict[bytes, np.ndarray] = {}

    @property
    def scorer(self) -> Scorer:
        return {READ: self.score, GLANCE: self.glance}

    def glance(self, arrays: np.ndarray) -> np.ndarray:
        return self.predictor.kinds(arrays)[:, 0]

    def score(self, arrays: np.ndarray) -> np.ndarray:
        predictions, kinds = self.predictor.assess(arrays)
        for array, prediction, kind in zip(arrays, predictions, kinds, strict=True):
            key = np.asarray(array, dtype=np.float32).tobytes()
            self.answers[key], self.kinds[key] = prediction, kind
        return kinds[:, 0] * np.array([prediction.confidence for prediction in predictions])

    def predictions(self, arrays: list[np.ndarray]) -> list[Prediction]:
        """Predictions for inputs, judging in one call any not judged yet."""
        keys = [array.tobytes() for array in arrays]
        fresh = [array for key, array in zip(keys, arrays, strict=True) if key not in self.answers]
        if fresh:
            self.score(np.stack(fresh))
        return [self.answers[key] for key in keys]


def read_numbers(predictor: Predictor, blobs: list[bytes]) -> list[NumberResult]:
    """Segment each image and read its digits. The groups of strokes of all the images are
    classified in one model call, which is every digit's answer where digits stand apart;
    only groups the model doubts (touching digits) cost more calls, to choose a cut: one a
    round for the whole batch, however many images have such groups.
    Whatever goes wrong with one image is that image's error: its neighbours are read all the
    same."""
    reader = _Reader(predictor)
    pages: list[Page | None] = []
    errors: list[str | None] = []
    for blob in blobs:
        page, error = _attempt(read_page, blob)
        pages.append(page)
        errors.append(error)
    groups = [model_input.array for page in pages if page for model_input in page.inputs]
    wholes = iter(reader.score(np.stack(groups)) if groups else [])
    # Every page resolved side by side: each round of doubts, over all pages, is one call.
    tasks = {
        i: _guarded(resolving(page, np.array([next(wholes) for _ in page.groups])))
        for i, page in enumerate(pages)
        if page is not None
    }
    segmented: list[list[Segment] | None] = [None] * len(pages)
    for i, (segments, error) in zip(tasks, scored(lockstep(list(tasks.values())), reader.scorer), strict=True):
        segmented[i], errors[i] = segments, error
    arrays = [segment.model_input.array for segments in segmented if segments for segment in segments]
    predictions = iter(reader.predictions(arrays))
    results = []
    for page, segments, error in zip(pages, segmented, errors, strict=True):
        if segments is None:
            results.append(NumberResult(error=error))
            continue
        digits = tuple(DigitReading(next(predictions), s.model_input, s.box) for s in segments)
        results.append(_reading(digits, _as_a_whole(page, reader)))
    return results


def _guarded(task: Scoring[list[Segment]]) -> Scoring[tuple[list[Segment] | None, str | None]]:
    """A page's resolving task that ends in its segments and no error, or None and the error
    for people: one page's failure is its own."""
    try:
        return (yield from task), None
    except PreprocessingError as exc:
        return None, str(exc)
    except Exception:
        logger.exception("reading a number failed while resolving its digits")
        return None, UNEXPECTED_ERROR


def _attempt(step, blob_or_page, *args):
    """``step(blob_or_page, *args)`` and no error, or None and the error for people."""
    try:
        return step(blob_or_page, *args), None
    except PreprocessingError as exc:
        return None, str(exc)
    except Exception:
        logger.exception("reading a number failed at %s", step.__name__)
        return None, UNEXPECTED_ERROR


def _as_a_whole(page: Page, reader: _Reader) -> np.ndarray:
    """What the detector makes of an image beyond its digits: the mean of its answers for the
    groups of strokes, each judged whole before any cut. The letters of a word are text one by
    one even where their cut pieces pass for digits. (The whole image squeezed into 28x28 was
    tried too: a canvas "17" of two clean strokes looked like a drawing to it.)"""
    return np.mean([reader.kinds[model_input.array.tobytes()] for model_input in page.inputs], axis=0)


def _reading(digits: tuple[DigitReading, ...], whole_kinds: np.ndarray) -> NumberResult:
    """The reading of an image's digits; ``whole_kinds``: what the detector makes of its
    groups of strokes (``_as_a_whole``)."""
    if len(digits) == 1:
        prediction = digits[0].prediction
        number = "" if prediction.verdict == "not_a_digit" else str(prediction.digit)
        return NumberResult(number, digits, prediction.verdict, prediction.reason, prediction)
    other = float(whole_kinds[_OTHER].sum())
    if other > WHOLE_NOT_A_NUMBER:
        likeliest = _OTHER_KINDS[int(np.argmax(whole_kinds[_OTHER]))]
        return NumberResult("", digits, "not_a_digit", REASONS[likeliest])
    sure = other <= WHOLE_UNSURE and all(d.prediction.verdict == "digit" for d in digits)
    return NumberResult("".join(str(d.prediction.digit) for d in digits), digits, "number" if sure else "unsure")
