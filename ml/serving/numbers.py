"""Reading what people send: one digit, or a whole number segmented into digits
(``ml.serving.segment``), all the digits of all the images classified in one model call.

Every image is read two ways at once: whole, as one digit (exactly the single-digit path,
``predict_images``), and segmented. One digit found is the single-digit reading. Several are
the answer only where the evidence for several beats one digit (``_chosen``): a person who
knows what they sent can say so instead (``READINGS``: ``digit`` or ``number``).

The groups of strokes of every image in a batch, and each image read whole, are judged in one
model call (model and detector together): for digits written apart, that call is every
digit's answer. A group the model doubts (touching digits read whole are a "number" to the
detector) is cut, and its candidate pieces judged together with every other image's, one call
a round (the cuts, then the cuts of their sides); the pieces kept are answered from them.

A number's verdict is ``number`` when every digit is confident (each judged alone, as a single
digit is: the detector's "digit" and the calibrated confidence over the bundle's ``unsure``
line) and the image read whole looks more like several digits than like text, a drawing, a
scribble or a photo; ``unsure`` otherwise.

Pieces judged one by one miss what the whole shows: the letters of a word, the parts of a
drawing, cut and read alone, can pass for digits. So the groups of strokes, judged whole in the
first model call before any cut, speak for the image: where the detector finds them likelier
text, drawings, scribbles or photos than digits, the image is ``not_a_digit`` with that
reason, or ``unsure`` where it only leans that way.

Kept whole: one module past STYLE's 400 lines on purpose: a batch's model calls (whole, groups, cuts,
the line reader) are planned together so that every image costs one call a round.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np

from ml.serving.artifacts import INPUT_SIDE
from ml.serving.inference import UNEXPECTED_ERROR, Prediction, Predictor
from ml.serving.lines import LineInput, LineReading, line_input, pieces
from ml.serving.preprocessing import ModelInput, NothingToRead, PreprocessingError
from ml.serving.segment import (
    AUTO,
    DIGIT,
    GLANCE,
    MUST_SPLIT,
    NUMBER,
    READ,
    READINGS,
    LineTooLong,
    Page,
    Scorer,
    Scoring,
    Segment,
    page_of,
    read_whole,
    resolving_pages,
    segments_of,
    whole_segment,
)
from ml.serving.sureness import (
    OTHER_VETO,
    SIZES_VETO,
    Candidate,
    NumberSureness,
    Reading,
    count_features,
    features,
    vetoed,
)
from ml.serving.verdicts import BLANK, KINDS, OTHER_KINDS, REASONS

logger = logging.getLogger(__name__)
T = TypeVar("T")

# The detector's share, over an image's groups of strokes, of the kinds that are neither a
# digit nor a number, above which they are not read as a number, and above which not surely.
# Chosen on ml.fitting.negatives seed 11 (500 non-digits) against number_set seed 11 (300 numbers); on
# seed 12, untuned: 90.2% of the non-digits caught (not a digit, unsure or refused; 75.4%
# judging the pieces alone), 1 number of 300 taken for not a digit.
WHOLE_NOT_A_NUMBER = 0.9
WHOLE_UNSURE = OTHER_VETO
_OTHER = [KINDS.index(kind) for kind in OTHER_KINDS]
_DIGIT, _NUMBER = KINDS.index("digit"), KINDS.index("number")
# Digits written apart: at least this share of the tallest digit's height between neighbours
# (a broken 4 or 8 read in pieces has its pieces closer, or overlapping). Chosen on tuning
# sets (real single digits, numbers of seed 100): 0.15 to 0.25 split the same single digits.
DIGITS_APART = 0.2
# A number's digits are written at about one size: a confident number's shortest digit is at
# least this share of its tallest's height (the letters of a word are not: an "o" beside a
# "T"). On the tuning numbers (seed 100) 1% of confident readings were below 0.5, none below
# 0.4; 3 of 15 non-digits read as confident numbers were.
ONE_SIZE = SIZES_VETO
# Why a number is not sure, as a person is told after "not sure:".
UNSURE_REASONS = {
    "digit": "at least one digit is unclear (see each below).",
    "other": "parts of it look more like letters or a drawing than like digits.",
    "apart": "its digits run into one another, and where they were cut is a guess.",
    "sizes": "its digits are of very different sizes, as the letters of a word are.",
    "line": "read as one line instead of digit by digit, it looks like {line}.",
    "whole": "the chance that all {count} digits are right is too low to be sure.",
}
# Why an image read as one digit, as asked, is not one digit, where it reads as several.
SEVERAL_DIGITS = "it looks like several digits ({number}), not one: read it as a number instead."
# What an image with no ink is read from: an empty input.
_BLANK = ModelInput(
    array=np.zeros((INPUT_SIDE, INPUT_SIDE), dtype=np.float32), display=np.zeros((INPUT_SIDE, INPUT_SIDE), np.uint8)
)
# Where the segmenter cut touching digits, the line reader's probabilities for each digit join
# the classifier's, to this power (``_with_line``).
LINE_WEIGHT = 1.0


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
    # For several digits read by a model with a ``NumberSureness``: the calibrated probability
    # that the whole reading is exactly right, and what it was computed from.
    sureness: float | None = None
    evidence: Reading | None = None
    # Where the two readers counted the digits otherwise: the choice made (``_with_line``).
    disagreement: CountDisagreement | None = None

    def as_dict(self) -> dict:
        several = {"number_confidence": self.sureness} if len(self.digits) > 1 else {}
        digits = {"digits": [d.as_dict() for d in self.digits]}
        return {"number": self.number, "verdict": self.verdict} | several | digits


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
        fresh = {key: array for key, array in zip(keys, arrays, strict=True) if key not in self.answers}
        if fresh:
            self.score(np.stack(list(fresh.values())))
        return [self.answers[key] for key in keys]

    def run(self, task: Scoring[T]) -> T:
        """A scoring task (``ml.serving.segment.lockstep``) run to its end, each of its requests
        answered here: segmentation only asks, and control never goes back into it from the
        answers."""
        try:
            request = task.send(None)
            while True:
                request = task.send({kind: self.scorer[kind](inputs) for kind, inputs in request.items()})
        except StopIteration as done:
            return done.value

    def score_of(self, arrays: list[np.ndarray]) -> np.ndarray:
        """``score``'s answer for inputs already judged."""
        keys = [array.tobytes() for array in arrays]
        return np.array([self.kinds[key][_DIGIT] * self.answers[key].confidence for key in keys])


@dataclass
class _Image:
    """One image of a batch on its way through ``read_numbers``: what each step found of it.
    ``first`` is the image read whole as one digit, its input and box (None where that failed:
    ``whole_error``, and ``blank``, the box of an image with no ink), ``single`` its reading;
    ``page`` its groups of strokes, where it may be read as a number (None where that failed:
    ``error``, and ``long_line`` where the line is too long), ``segments`` their digits, and
    ``line`` the line reader's reading of them."""

    reading: str
    whole_error: str | None = None
    blank: tuple[int, int, int, int] | None = None
    # The page read whole, kept for an image read as one digit where asked: its groups of
    # strokes are found only where its single reading is not a digit (``_asked_for_one``).
    whole: Page | None = None
    first: Segment | None = None
    single: _Single | None = None
    page: Page | None = None
    error: str | None = None
    long_line: bool = False
    segments: list[Segment] | None = None
    line: _Line | None = None


def read_numbers(predictor: Predictor, blobs: list[bytes], readings: Sequence[str] | None = None) -> list[NumberResult]:
    """Read each image as one digit or as a number, as its ``readings`` entry says (``READINGS``;
    ``auto`` for all when None): ``digit`` is the single-digit path alone, ``number`` the
    segmented reading, ``auto`` the one the evidence favours (``_chosen``).

    The groups of strokes of all the images, and each image read whole, are classified in one
    model call, which is every digit's answer where digits stand apart; only groups the model
    doubts (touching digits) cost more calls, to choose a cut: one a round for the whole batch,
    however many images have such groups. Whatever goes wrong with one image is that image's
    error: its neighbours are read all the same."""
    readings = list(readings) if readings is not None else [AUTO] * len(blobs)
    if len(readings) != len(blobs) or not set(readings) <= set(READINGS):
        raise ValueError(f"one reading of {READINGS} per image")
    reader = _Reader(predictor)
    images = [_opened(blob, reading) for blob, reading in zip(blobs, readings, strict=True)]
    firsts = [image.first.model_input.array for image in images if image.first is not None]
    groups = [model_input.array for image in images if image.page for model_input in image.page.inputs]
    blank = [_BLANK.array] if any(image.blank is not None for image in images) else []
    # One call for every image read whole, every group of strokes, and a blank input.
    reader.predictions(firsts + groups + blank)
    for image in images:
        if image.first is not None:
            image.single = _single(image.first, reader)
        if image.page is not None and image.reading == AUTO and not _may_be_several(image.page, image.single):
            image.page = None
        if image.whole is not None and image.single.result.verdict == "not_a_digit":
            image.page = _several_asked_as_one(image.whole)
    # The groups of the images asked for as one digit that may be several: one call, rarely.
    reader.predictions(
        [i.array for image in images if image.page and image.reading == DIGIT for i in image.page.inputs]
    )
    _segmented(images, reader)
    _read_lines(predictor, images)
    arrays = [segment.model_input.array for image in images if image.segments for segment in image.segments]
    lines = [image.line for image in images]
    arrays += [segment.model_input.array for line in lines if line and line.segments for segment in line.segments]
    reader.predictions(arrays)  # one call for every digit either way read
    return [_result(image, reader) for image in images]


def _opened(blob: bytes, reading: str) -> _Image:
    """An image decoded and its ink found (read whole), and its groups of strokes where it may
    be read as a number."""
    whole, failure = _attempt(read_whole, blob)
    image = _Image(reading, whole_error=str(failure) if failure else None)
    if isinstance(failure, NothingToRead):
        image.blank = failure.box or (0, 0, 0, 0)
    if whole is not None:
        image.first = whole_segment(whole)
        if reading == DIGIT:
            image.whole = whole
        else:
            image.page, failure = _attempt(page_of, whole)
            image.long_line = isinstance(failure, LineTooLong)
    image.error = str(failure) if failure else None
    return image


def _segmented(images: list[_Image], reader: _Reader) -> None:
    """Every page resolved side by side, each round of doubts, over all pages, one call: its
    segments, or the error that stopped them, on each image."""
    paged = [image for image in images if image.page is not None]
    wholes = [reader.score_of([model_input.array for model_input in image.page.inputs]) for image in paged]
    outcomes = reader.run(resolving_pages([image.page for image in paged], wholes))
    for image, outcome in zip(paged, outcomes, strict=True):
        if isinstance(outcome, Exception):
            image.error = _for_people(outcome, "reading a number failed while resolving its digits")
        else:
            image.segments, image.error = outcome, None


def _result(image: _Image, reader: _Reader) -> NumberResult:
    """An image's reading from what the steps found of it."""
    if image.blank is not None:
        return _blank(reader, image.blank)
    if image.single is None:
        return NumberResult(error=image.whole_error)
    if image.segments is None:
        return _without_segments(image.reading, image.single, image.error, image.long_line)
    digits = _read(image.segments, reader)
    line = image.line
    disagreement = None
    if line is not None:
        as_written = len(image.segments) == len(image.page.groups)
        digits, disagreement = _with_line(digits, line, reader, as_written=as_written)
    if len(digits) < 2:
        return _chosen(image.reading, image.single, None)
    evidence = _Evidence(
        whole_kinds=_as_a_whole(image.page, reader),
        image_kinds=image.single.kinds,
        digit_shares=_digit_shares(digits, reader),
        line=line.reading if line is not None else None,
    )
    number = replace(_reading(digits, evidence, reader.predictor.sureness), disagreement=disagreement)
    if image.reading == DIGIT:
        return _asked_for_one(image.single.result, number)
    return _chosen(image.reading, image.single, number)


def _blank(reader: _Reader, box: tuple[int, int, int, int]) -> NumberResult:
    """The reading of an image with nothing on it: not a digit, as a verdict people are given
    like any other, not a failure. Its figures are the model's own, for an empty input."""
    (prediction,) = reader.predictions([_BLANK.array])
    prediction = replace(prediction, verdict="not_a_digit", reason=REASONS[BLANK])
    return NumberResult("", (DigitReading(prediction, _BLANK, box),), "not_a_digit", prediction.reason, prediction)


def _read(segments: list[Segment], reader: _Reader) -> tuple[DigitReading, ...]:
    predictions = reader.predictions([segment.model_input.array for segment in segments])
    return tuple(DigitReading(p, s.model_input, s.box) for p, s in zip(predictions, segments, strict=True))


@dataclass(frozen=True)
class _Line:
    """The line reader's reading of a page, and its digits cut apart at its own alignment (None
    where a piece would hold no ink or no digit)."""

    reading: LineReading
    segments: list[Segment] | None


def _read_lines(predictor: Predictor, images: list[_Image]) -> None:
    """The line reader's reading (``_Line``) of every page the segmenter read, in one call, on
    each image; none where the model has no line reader."""
    if predictor.line_reader is None:
        return
    drawn = {}
    for n, image in enumerate(images):
        if image.page is None or image.segments is None:
            continue
        mask = np.logical_or.reduce(image.page.groups)
        try:
            drawn[n] = (mask, line_input(image.page.ink, mask))
        except PreprocessingError:
            continue
    readings = predictor.read_lines(np.stack([line.array for _, line in drawn.values()])) if drawn else []
    for (n, (mask, line)), reading in zip(drawn.items(), readings, strict=True):
        images[n].line = _Line(reading, _line_segments(images[n], mask, line, reading))


def _line_segments(image: _Image, mask: np.ndarray, line: LineInput, reading: LineReading) -> list[Segment] | None:
    """The line reader's digits cut apart at its own alignment, where it counts the digits
    otherwise than the segmenter (None where it does not, or a piece would hold no ink or no
    digit)."""
    # Its own cuts are read only where they stand: where it counts the digits otherwise.
    wanted = len(reading.digits) not in (0, len(image.segments))
    cut = pieces(mask, line, reading) if wanted else []
    if not (cut and all(piece.any() for piece in cut)):
        return None
    try:
        return segments_of(image.page, cut)
    except PreprocessingError:
        return None


@dataclass(frozen=True)
class CountDisagreement:
    """Where the segmenter and the line reader count a number's digits otherwise: what the
    choice between them saw (``ml.serving.sureness.COUNT_FEATURES``), each one's digits, and
    which was taken."""

    features: np.ndarray
    cuts: str
    line: str
    took_line: bool


def _with_line(
    digits: tuple[DigitReading, ...], line: _Line, reader: _Reader, *, as_written: bool
) -> tuple[tuple[DigitReading, ...], CountDisagreement | None]:
    """The segmenter's digits with the line reader's word in them: where both count the same
    digits, each digit is the one both make likeliest together (the classifier's and the line
    reader's probabilities multiplied, the latter to the power ``LINE_WEIGHT``); where they
    count otherwise, either the segmenter's digits or the line reader's, boxed and judged
    (verdict, detector) at its own cuts, and the disagreement. Which: the bundle's fitted
    ``CountChoice`` (``ml.fitting.sureness``) where it has one, from how sure each reading's
    digits are; else the line reader's, unless the segmenter's digits are the groups of strokes
    ``as_written``, each a confident digit. A digit the two readings do not make the same is
    never more than ``unsure``."""
    ctc = line.reading
    if len(ctc.digits) == len(digits):
        fused = tuple(
            replace(d, prediction=_fused(d.prediction, row)) for d, row in zip(digits, ctc.probabilities, strict=True)
        )
        return fused, None
    if line.segments is None:
        return digits, None
    pieces = _read(line.segments, reader)
    row = count_features(
        _candidate(digits, reader), _candidate(pieces, reader), as_written=as_written, line_peaks=ctc.confidences
    )
    line_digits = tuple(
        replace(d, prediction=_fused(d.prediction, p, weight=None))
        for d, p in zip(pieces, ctc.probabilities, strict=True)
    )
    sureness = reader.predictor.sureness
    if sureness is not None and sureness.count_choice is not None:
        took_line = sureness.count_choice.line_probability(row) >= 0.5
    else:
        took_line = not (as_written and _all_confident(digits))
    disagreement = CountDisagreement(row, _text(digits), _text(line_digits), took_line)
    return (line_digits if took_line else digits), disagreement


def _candidate(digits: tuple[DigitReading, ...], reader: _Reader) -> Candidate:
    return Candidate(
        confidences=tuple(d.prediction.confidence for d in digits),
        digit_shares=_digit_shares(digits, reader),
        all_digits=_all_confident(digits),
    )


def _digit_shares(digits: tuple[DigitReading, ...], reader: _Reader) -> tuple[float, ...]:
    """The detector's share of "digit" for each digit read (each was judged already)."""
    return tuple(float(reader.kinds[d.model_input.array.tobytes()][_DIGIT]) for d in digits)


def _text(digits: tuple[DigitReading, ...]) -> str:
    return "".join(str(d.prediction.digit) for d in digits)


def _fused(
    prediction: Prediction, line_probabilities: tuple[float, ...], weight: float | None = LINE_WEIGHT
) -> Prediction:
    """A digit read by the classifier and by the line reader: with ``weight``, their
    probabilities multiplied (the line reader's to that power); without, the line reader's
    alone. Its verdict is the classifier's where both make it the same digit, else ``unsure``."""
    line_p = np.asarray(line_probabilities, dtype=np.float64)
    joint = line_p if weight is None else np.asarray(prediction.probabilities) * line_p**weight
    joint = joint / max(joint.sum(), 1e-12)
    digit = int(np.argmax(joint))
    agreed = digit == prediction.digit == int(np.argmax(line_p))
    verdict = prediction.verdict if agreed or prediction.verdict == "not_a_digit" else "unsure"
    return replace(
        prediction,
        digit=digit,
        confidence=float(joint[digit]),
        probabilities=tuple(float(p) for p in joint),
        verdict=verdict,
    )


@dataclass(frozen=True)
class _Single:
    """An image read whole, as one digit: its reading, and what the detector makes of it."""

    result: NumberResult
    kinds: np.ndarray


def _single(segment: Segment, reader: _Reader) -> _Single:
    (prediction,) = reader.predictions([segment.model_input.array])
    kinds = reader.kinds[segment.model_input.array.tobytes()]
    digit = DigitReading(prediction, segment.model_input, segment.box)
    number = "" if prediction.verdict == "not_a_digit" else str(prediction.digit)
    return _Single(NumberResult(number, (digit,), prediction.verdict, prediction.reason, prediction), kinds)


def _may_be_several(page: Page, single: _Single) -> bool:
    """Whether ``auto`` could find several digits on ``page``: one group of strokes is one digit
    unless the image read whole looks like several (``_chosen``), so it is not cut in vain."""
    return len(page.groups) > 1 or _looks_like_several(single.kinds)


def _several_asked_as_one(whole: Page) -> Page | None:
    """The groups of strokes of an image read as one digit, as its owner asked, that is not a
    digit to the model: its page where they are several (it may hold several digits), else
    None, as where they cannot be found (the single reading stands then, as asked)."""
    page, _ = _attempt(page_of, whole)
    return page if page is not None and len(page.groups) > 1 else None


def _asked_for_one(single: NumberResult, number: NumberResult) -> NumberResult:
    """An image read as one digit, as its owner asked: the single-digit reading, but where it is
    not a digit and reads as several digits (a number that is not "not a digit"), its reason
    says so, and which (a person can then ask for it to be read as a number)."""
    if single.verdict != "not_a_digit" or number.verdict == "not_a_digit" or len(number.digits) < 2:
        return single
    reason = SEVERAL_DIGITS.format(number=number.number)
    return replace(single, reason=reason, prediction=replace(single.prediction, reason=reason))


def _looks_like_several(kinds: np.ndarray) -> bool:
    """Whether the detector finds an image read whole likelier several digits than one."""
    return bool(kinds[_NUMBER] > kinds[_DIGIT])


def _without_segments(reading: str, single: _Single, error: str | None, long_line: bool) -> NumberResult:
    """An image read as one digit only (``digit``), or whose segmented reading failed: a
    refusal (several lines, too many digits) is the answer where a number was asked for, the
    line is longer than a number we read (``long_line``), or the image read whole looks most
    like several digits; otherwise the single-digit reading stands (a single
    long stroke is no line of thirteen digits)."""
    if reading == DIGIT or error is None:
        return single.result
    if reading == NUMBER or long_line or int(np.argmax(single.kinds)) == _NUMBER:
        return NumberResult(error=error)
    return single.result


def _chosen(reading: str, single: _Single, number: NumberResult | None) -> NumberResult:
    """The reading given for an image: one digit found, or asked for, is the single-digit
    reading exactly; several found are the number when asked for one, and in ``auto`` only
    when the evidence for several beats the single digit (and their strokes do not look like
    text, a drawing or a scribble): the detector finds the image read
    whole likelier several digits than one, and either every digit read is confident, or
    several digits are likelier to it than all the other kinds together, or the writing is
    wider than one digit can be (``MUST_SPLIT`` times its height). Measured on real single
    digits and numbers: ``docs/performance.md``."""
    if number is None or reading == DIGIT:
        return single.result
    if reading == NUMBER:
        return number
    if number.verdict == "not_a_digit":
        # Its strokes look like text, a drawing or a scribble: no evidence for several digits.
        return single.result
    kinds = single.kinds
    evidence = (
        _all_confident(number.digits)
        or kinds[_NUMBER] > kinds[_OTHER].sum()
        or _width_over_height(number.digits) > MUST_SPLIT
    )
    if _looks_like_several(kinds) and evidence:
        return number
    # Clean strokes drawn on a canvas can look like a drawing read whole; digits written apart,
    # each a confident digit, where the whole is no confident digit, are a number all the same.
    apart = _all_confident(number.digits) and single.result.verdict != "digit" and _apart(number.digits)
    return number if apart else single.result


def _all_confident(digits: tuple[DigitReading, ...]) -> bool:
    return all(d.prediction.verdict == "digit" for d in digits)


def _apart(digits: tuple[DigitReading, ...]) -> bool:
    """Whether every two neighbours stand at least ``DIGITS_APART`` of the tallest's height apart."""
    boxes = sorted(digit.box for digit in digits)
    tallest = max(box[3] for box in boxes)
    return all(right[0] - (left[0] + left[2]) >= DIGITS_APART * tallest for left, right in itertools.pairwise(boxes))


def _width_over_height(digits: tuple[DigitReading, ...]) -> float:
    boxes = np.array([digit.box for digit in digits])
    left, top = boxes[:, 0].min(), boxes[:, 1].min()
    right, bottom = (boxes[:, 0] + boxes[:, 2]).max(), (boxes[:, 1] + boxes[:, 3]).max()
    return float(right - left) / max(float(bottom - top), 1.0)


def _for_people(exc: Exception, what: str) -> str:
    """An image's error for people: a ``PreprocessingError`` says it; anything else is logged
    (``what`` failed) and said as ``UNEXPECTED_ERROR``."""
    if isinstance(exc, PreprocessingError):
        return str(exc)
    logger.error(what, exc_info=exc)
    return UNEXPECTED_ERROR


def _attempt(step, blob_or_page, *args):
    """``step(blob_or_page, *args)`` and no error, or None and the error, whose message is for
    people."""
    try:
        return step(blob_or_page, *args), None
    except PreprocessingError as exc:
        return None, exc
    except Exception:
        logger.exception("reading a number failed at %s", step.__name__)
        return None, PreprocessingError(UNEXPECTED_ERROR)


def _as_a_whole(page: Page, reader: _Reader) -> np.ndarray:
    """What the detector makes of an image beyond its digits: the mean of its answers for the
    groups of strokes, each judged whole before any cut. The letters of a word are text one by
    one even where their cut pieces pass for digits. (The whole image squeezed into 28x28 was
    tried too: a canvas "17" of two clean strokes looked like a drawing to it.)"""
    return np.mean([reader.kinds[model_input.array.tobytes()] for model_input in page.inputs], axis=0)


@dataclass(frozen=True)
class _Evidence:
    """What is known of an image's several digits beside the digits themselves:
    ``whole_kinds``, what the detector makes of its groups of strokes (``_as_a_whole``);
    ``image_kinds``, of the image read whole; ``digit_shares``, the detector's share of "digit"
    for each digit read; ``line``, the line reader's reading, where the model has one."""

    whole_kinds: np.ndarray
    image_kinds: np.ndarray
    digit_shares: tuple[float, ...]
    line: LineReading | None


def _reading(digits: tuple[DigitReading, ...], evidence: _Evidence, sureness: NumberSureness | None) -> NumberResult:
    """The reading of an image's several digits. Text, drawings and the like are not a number
    (``WHOLE_NOT_A_NUMBER``). Otherwise a number is ``number`` (sure) where the calibrated
    probability that it is exactly right (``sureness``, ``ml.serving.sureness``) reaches its
    level; a model without one is as honest as a digit: sure only where every digit is, where
    the image read whole looks more like several digits than like any kind that is not a
    digit, or its digits stand apart, where its digits are of about one size, and where the
    line reader, reading the whole line its own way, reads the same number. An unsure number
    says its first doubt, in the order a person can check them."""
    whole_kinds, image_kinds = evidence.whole_kinds, evidence.image_kinds
    line_text = evidence.line.text if evidence.line is not None else None
    other = float(whole_kinds[_OTHER].sum())
    if other > WHOLE_NOT_A_NUMBER:
        likeliest = OTHER_KINDS[int(np.argmax(whole_kinds[_OTHER]))]
        return NumberResult("", digits, "not_a_digit", REASONS[likeliest])
    heights = [digit.box[3] for digit in digits]
    number = _text(digits)
    confident, apart = _all_confident(digits), _apart(digits)
    # Why it is not sure, in words that agree with the figures shown beside it: the first
    # doubt found, in the order a person can check them.
    looks_other = bool(image_kinds[_NUMBER] < image_kinds[_OTHER].max() and not apart)
    doubts = (
        (not confident, UNSURE_REASONS["digit"]),
        (other > WHOLE_UNSURE, UNSURE_REASONS["other"]),
        (looks_other, UNSURE_REASONS["apart"]),
        (min(heights) < ONE_SIZE * max(heights), UNSURE_REASONS["sizes"]),
        (line_text is not None and line_text != number, UNSURE_REASONS["line"].format(line=line_text)),
    )
    reason = next((why for doubted, why in doubts if doubted), "")
    read = Reading(
        confidences=tuple(d.prediction.confidence for d in digits),
        digit_shares=evidence.digit_shares,
        all_digits=confident,
        line_text=line_text,
        text=number,
        other=other,
        apart=apart,
        sizes=min(heights) / max(max(heights), 1),
        line_confidences=evidence.line.confidences if evidence.line is not None else (),
        looks_other=looks_other,
    )
    if sureness is None:
        return NumberResult(number, digits, "unsure" if reason else "number", reason, evidence=read)
    # A digit shown as unsure, or strokes that look like a word or a drawing, keep a number
    # unsure (``ml.serving.sureness.vetoed``, the fit's own rule), and its reason, the first
    # doubt, says which; the probability was fitted on the numbers no such doubt vetoes, so it
    # speaks for those alone.
    row = features(read)
    if vetoed(row)[0]:
        return NumberResult(number, digits, "unsure", reason, evidence=read)
    probability = sureness.probability(row)
    if sureness.is_sure(probability):
        return NumberResult(number, digits, "number", "", sureness=probability, evidence=read)
    reason = reason or UNSURE_REASONS["whole"].format(count=len(digits))
    return NumberResult(number, digits, "unsure", reason, sureness=probability, evidence=read)
