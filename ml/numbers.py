"""Reading whole numbers: each image segmented into digits (``ml.segment``), all the digits of
all the images classified in one model call, and a reading per image.

A number's verdict is ``number`` when every digit is confident (each judged alone, as a single
digit is: the detector's "digit" and the calibrated confidence over the bundle's ``unsure``
line) and ``unsure`` when any is not. An image of one digit keeps the single-digit result
(``digit``, ``unsure`` or ``not_a_digit``, with its reason) exactly as ``predict_images`` gives it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ml.inference import UNEXPECTED_ERROR, Prediction, Predictor
from ml.preprocessing import ModelInput, PreprocessingError
from ml.segment import Scorer, Segment, segment_digits

logger = logging.getLogger(__name__)


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
    for "digit" times the calibrated confidence. A cut through the middle of a digit leaves
    halves the detector doubts; two touching digits left whole are a "number" to it."""

    def score(arrays: np.ndarray) -> np.ndarray:
        return predictor.kinds(arrays)[:, 0] * predictor.probabilities(arrays).max(axis=1)

    return score


def read_numbers(predictor: Predictor, blobs: list[bytes]) -> list[NumberResult]:
    """Segment each image and classify the digits of all of them in one batch. Whatever goes
    wrong with one image is that image's error: its neighbours are read all the same."""
    score = split_scorer(predictor)
    segmented: list[list[Segment] | None] = []
    errors: list[str | None] = []
    for blob in blobs:
        try:
            segmented.append(segment_digits(blob, score=score))
            errors.append(None)
        except PreprocessingError as exc:
            segmented.append(None)
            errors.append(str(exc))
        except Exception:
            logger.exception("segmentation failed on an image of %d bytes", len(blob))
            segmented.append(None)
            errors.append(UNEXPECTED_ERROR)
    arrays = [segment.model_input.array for segments in segmented if segments for segment in segments]
    predictions = iter(predictor.predict_arrays(np.stack(arrays)) if arrays else [])
    results = []
    for segments, error in zip(segmented, errors, strict=True):
        if segments is None:
            results.append(NumberResult(error=error))
            continue
        digits = tuple(DigitReading(next(predictions), s.model_input, s.box) for s in segments)
        results.append(_reading(digits))
    return results


def _reading(digits: tuple[DigitReading, ...]) -> NumberResult:
    if len(digits) == 1:
        prediction = digits[0].prediction
        number = "" if prediction.verdict == "not_a_digit" else str(prediction.digit)
        return NumberResult(number, digits, prediction.verdict, prediction.reason, prediction)
    sure = all(d.prediction.verdict == "digit" for d in digits)
    return NumberResult("".join(str(d.prediction.digit) for d in digits), digits, "number" if sure else "unsure")
