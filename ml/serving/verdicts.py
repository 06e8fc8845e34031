"""What the site says of each reading, as data: the verdicts and the temperature, served.

A bundle's metadata holds the numbers fitting chose (``ml.fitting.reject`` fits the detector and the
thresholds, ``ml.fitting.calibration`` the temperature); this module only applies them, so serving
never imports fitting. Each prediction gets a verdict:
    not_a_digit  the detector's probability of "digit" is below ``reject_below``
    unsure       a digit, but the calibrated confidence is below ``unsure_below``
    digit        otherwise
and its confidence is the digit model's probabilities with their log divided by the bundle's
temperature (``tempered``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("digit", "text", "drawing", "scribble", "number", "photo")
# The kinds that are neither a digit nor a number: what "not a digit" is.
OTHER_KINDS = tuple(kind for kind in KINDS if kind not in ("digit", "number"))
# What a person is told, after "This does not look like a digit:".
REASONS = {
    "text": "it looks like letters, a word or a symbol.",
    "drawing": "it looks like a drawing or a shape.",
    "scribble": "it looks like a scribble, or something crossed out.",
    "number": "it looks like several digits written together, which could not be told apart.",
    "photo": "it looks like a photo of something else.",
    # Not a kind the detector answers: an image with no ink at all (``ml.serving.numbers``).
    "blank": "it looks blank: there is no writing on it to read.",
}
BLANK = "blank"
VERDICTS = ("digit", "unsure", "not_a_digit")
# The probability floor before taking logs: float32 softmax outputs reach 0 exactly.
PROBABILITY_FLOOR = 1e-12


@dataclass(frozen=True)
class Verdict:
    verdict: str  # one of VERDICTS
    kind: str  # the detector's answer, one of KINDS
    reason: str  # for not_a_digit: what it looks like instead; else ""


def verdicts(
    digit_share: np.ndarray, kind_probabilities: np.ndarray, confidence: np.ndarray, thresholds: dict
) -> list[Verdict]:
    """The verdict of each prediction from the detector's output and the calibrated confidence."""
    out = []
    for p_digit, kinds, sure in zip(digit_share, kind_probabilities, confidence, strict=True):
        other = KINDS[1 + int(np.argmax(kinds[1:]))]
        if p_digit < thresholds["reject_below"]:
            out.append(Verdict("not_a_digit", other, REASONS[other]))
        elif sure < thresholds["unsure_below"]:
            out.append(Verdict("unsure", "digit", ""))
        else:
            out.append(Verdict("digit", "digit", ""))
    return out


def shares(verdict_list: list[Verdict]) -> dict:
    """The share of each verdict in ``verdict_list``."""
    return {name: sum(v.verdict == name for v in verdict_list) / max(len(verdict_list), 1) for name in VERDICTS}


def tempered(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """The probabilities with their log divided by ``temperature`` and normalised again."""
    scaled = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), PROBABILITY_FLOOR, 1.0)) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)
