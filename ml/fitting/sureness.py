"""Fitting how sure a whole number's reading is (``ml.serving.sureness``): numbers written with
the training digits a model never trained on (its holdout), read as the worker reads them, and
a logistic model of which readings are exactly right.

The numbers: the rendering scenarios of ``ml.fitting.synth`` (photos, scans, canvas, screens,
pencil; some digits touching, some pages with specks and broken strokes), and the same digits
drawn in the other hands of ``ml.fitting.styles`` (European forms, slanted) written into
scanned and photographed numbers. Never the real folders or scikit-learn's writers: those
judge the fit (``evaluate --numbers``).

The level ``sure_above`` is chosen on out-of-fold probabilities (each number's probability from
a model fitted without it): the lowest level at which ``SURE_EXACT`` of the numbers at or above
it are exact, among the numbers no doubt vetoes (``ml.serving.sureness.vetoed``).

Where the segmenter and the line reader count the digits otherwise, which one to believe is
learned first (``fit_count_choice``), from the disagreements where one of them counted right,
on the numbers read as the hand-set rule chose; the numbers are then read again as the learned
choice chooses, and the probability fitted on that reading.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict

from ml.fitting.data import Mnist
from ml.fitting.real_digits import REAL_NUMBER_LENGTHS, as_mnist_digit
from ml.fitting.styles import render_style
from ml.fitting.synth import NumberUpload, number_set
from ml.serving.inference import Predictor
from ml.serving.numbers import read_numbers
from ml.serving.sureness import FEATURES, SURE_EXACT, SURE_FLOOR, CountChoice, NumberSureness, features, vetoed

BATCH = 32
FOLDS = 5
# The other hands of ``ml.fitting.styles`` written into numbers. (Its low-resolution scans and
# thin pens are drawn at 28 px: grown back into a line they make blocks and faint smudges no
# scanner makes of a number; 2% of such thin-pen numbers read exactly, 92% of slanted ones.)
HANDS = ("european", "slanted")
# Disagreements on the count of each kind (the line reader right, the segmenter right) needed
# to learn the choice from.
MIN_EACH = 20
# The logistic models' inverse regularisation (scikit-learn's C).
REGULARISATION = 1.0


def sureness_numbers(mnist: Mnist, *, holdout: int, count: int, seed: int) -> list[NumberUpload]:
    """``count`` numbers of the ``holdout`` training digits: half rendered as people send numbers
    (a quarter of the pages flawed), half written in the other hands, scanned or photographed."""
    images, labels = mnist.held_out(holdout)
    rendered = number_set(images, labels, count=count - count // 2, seed=seed, flaw_rate=0.25)
    rng = np.random.default_rng(seed + 1)
    picks = rng.choice(len(images), size=min(len(images), 3000), replace=False)
    styled = np.stack(
        [
            as_mnist_digit(render_style(images[i], style=HANDS[n % len(HANDS)], label=int(labels[i]), rng=rng))
            for n, i in enumerate(picks)
        ]
    )
    hands = number_set(
        styled,
        labels[picks],
        count=count // 2,
        seed=seed + 2,
        scenarios=("scan", "photo"),
        lengths=REAL_NUMBER_LENGTHS,
        touch_rate=0.05,
        flaw_rate=0.5,
    )
    return rendered + hands


@dataclass
class _Readings:
    """What reading the numbers gave: per number read as several digits, its sureness
    ``FEATURES`` and whether it is exact; per disagreement on the count where one reader counted
    right, its ``COUNT_FEATURES``, whether the line reader was the one, and whether the rule
    in force took it."""

    rows: list = field(default_factory=list)
    exact: list = field(default_factory=list)
    count_rows: list = field(default_factory=list)
    line_right: list = field(default_factory=list)
    took_line: list = field(default_factory=list)


def readings(predictor: Predictor, uploads: list[NumberUpload], log: Callable[[str], None]) -> _Readings:
    """The uploads read as the worker reads them (``auto``). Uploads read as one digit, refused
    or not a digit give no sureness row: no number's sureness speaks for them."""
    found = _Readings()
    started = time.monotonic()
    for start in range(0, len(uploads), BATCH):
        chunk = uploads[start : start + BATCH]
        for result, upload in zip(read_numbers(predictor, [u.data for u in chunk]), chunk, strict=True):
            disagreement = result.disagreement
            if disagreement is not None:
                cuts_right, line_right = (
                    len(text) == len(upload.number) for text in (disagreement.cuts, disagreement.line)
                )
                if cuts_right != line_right:
                    found.count_rows.append(disagreement.features)
                    found.line_right.append(line_right)
                    found.took_line.append(disagreement.took_line)
            if result.evidence is not None and result.verdict != "not_a_digit":
                found.rows.append(features(result.evidence))
                found.exact.append(result.number == upload.number)
        done = start + len(chunk)
        if done % (BATCH * 20) == 0 or done == len(uploads):
            log(f"  read {done:,} of {len(uploads):,} numbers ({time.monotonic() - started:.0f} s)")
    return found


def fit_count_choice(found: _Readings, log: Callable[[str], None]) -> tuple[CountChoice | None, dict]:
    """Which reader counted right, learned from the disagreements where one did; None where
    too few of either kind were seen to learn from."""
    x, y = np.array(found.count_rows), np.array(found.line_right, dtype=bool)
    if min(int(y.sum()), int((~y).sum())) < MIN_EACH:
        log(f"count choice: {len(y)} disagreements, too few of each kind to learn from: the rule stays")
        return None, {"disagreements": len(y)}
    model = LogisticRegression(C=REGULARISATION, max_iter=5000)
    out_of_fold = cross_val_predict(model, x, y, cv=FOLDS, method="predict_proba")[:, 1] >= 0.5
    model.fit(x, y)
    learned, rule = float((out_of_fold == y).mean()), float((np.array(found.took_line) == y).mean())
    log(
        f"count choice: {len(y)} disagreements where one reader counted right ({y.mean():.0%} the line reader); "
        f"chosen right {learned:.1%} (out of fold) against {rule:.1%} by the hand-set rule"
    )
    choice = CountChoice(tuple(float(c) for c in model.coef_[0]), float(model.intercept_[0]))
    return choice, {"disagreements": len(y), "chosen_right": learned, "rule_chosen_right": rule}


def sure_level(
    probabilities: np.ndarray, exact: np.ndarray, *, target: float = SURE_EXACT, floor: float = 0.0
) -> float:
    """The lowest probability, not under ``floor``, at which at least ``target`` of the readings at
    or above it are exact (1.0, no reading sure, where none is)."""
    order = np.argsort(-probabilities)
    precision = np.cumsum(exact[order]) / np.arange(1, len(order) + 1)
    meets = np.flatnonzero(precision >= target)
    return max(float(probabilities[order][meets[-1]]), floor) if len(meets) else 1.0


def fit_sureness(
    predictor: Predictor, mnist: Mnist, *, holdout: int, count: int, seed: int, log: Callable[[str], None] = print
) -> NumberSureness:
    """A ``NumberSureness`` fitted for ``predictor`` on ``count`` numbers of its holdout digits:
    first the count choice, on the numbers read as the hand-set rule chooses; then the
    probability of exactness, on the numbers read as the count choice chooses."""
    log(f"writing {count:,} numbers with {holdout:,} held-out training digits (seed {seed})")
    uploads = sureness_numbers(mnist, holdout=holdout, count=count, seed=seed)
    predictor.sureness = None
    log("reading them as the hand-set rule chooses the count")
    found = readings(predictor, uploads, log)
    choice, choice_fitted = fit_count_choice(found, log)
    if choice is not None:
        # Read again as the worker will: the count chosen, no number yet sure.
        predictor.sureness = NumberSureness((0.0,) * len(FEATURES), 0.0, sure_above=2.0, count_choice=choice)
        log("reading them again as the learned choice chooses the count")
        found = readings(predictor, uploads, log)
    x, y = np.array(found.rows), np.array(found.exact, dtype=bool)
    # A vetoed number is never sure and shows no probability: the model and its level are fitted
    # on the rest, so that the probability people see is calibrated where it is shown.
    free = ~vetoed(x) if len(x) else np.zeros(0, dtype=bool)
    if len(set(y[free].tolist())) < 2:
        raise ValueError("every number no doubt vetoes was read right, or none: nothing to calibrate on")
    model = LogisticRegression(C=REGULARISATION, max_iter=5000)
    out_of_fold = cross_val_predict(model, x[free], y[free], cv=FOLDS, method="predict_proba")[:, 1]
    level = sure_level(out_of_fold, y[free], floor=SURE_FLOOR)
    model.fit(x[free], y[free])
    sure = np.zeros(len(y), dtype=bool)
    sure[free] = out_of_fold >= level
    fitted = {
        "numbers": count,
        "read_as_several": len(y),
        "vetoed": int((~free).sum()),
        "exact": float(y.mean()),
        "seed": seed,
        "holdout": holdout,
        "sure_exact_target": SURE_EXACT,
        "out_of_fold": {"sure": float(sure.mean()), "sure_exact": float(y[sure].mean()) if sure.any() else None},
        "count_choice": choice_fitted,
    }
    log(
        f"{len(y):,} read as several digits, {y.mean():.1%} exact; sure from {level:.3f}: "
        f"{sure.mean():.1%} answered sure, {fitted['out_of_fold']['sure_exact'] or 0:.2%} of those exact (out of fold)"
    )
    return NumberSureness(
        coefficients=tuple(float(c) for c in model.coef_[0]),
        intercept=float(model.intercept_[0]),
        sure_above=level,
        features=FEATURES,
        fitted=fitted,
        count_choice=choice,
    )
