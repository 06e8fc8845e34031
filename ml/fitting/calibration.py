"""Calibrated confidence: a confidence of 90% should be right nine times in ten.

A network's softmax is not that: trained to push the right class to 1, it says 99% far more
often than it is right 99% of the time, most of all on inputs unlike its training data. An
ensemble's mean leans the other way. Temperature scaling (Guo et al. 2017) fixes both with one
number fitted on images the model never trained on: the log-probabilities are divided by a
temperature T before the softmax again (T > 1 softens, T < 1 sharpens). The predicted digit
never changes, only how sure the model says it is.

Which T: the one with the least calibration error (ECE), averaged over the kinds of held-out
digits, searched on a fine grid that holds T = 1. The usual fit (the least negative
log-likelihood, ``fit_temperature``) is recorded beside it but not served: on a model that is
already nearly calibrated, as our augmented ensemble is, a handful of confident errors on the
hardest kind drive the likelihood, and its T (1.14 for the shipped ensemble) doubled the
calibration error on MNIST and on realistic uploads.

For an ensemble, the log of the members' mean probability stands in for the logits: the mean
is what it answers, so it is what is calibrated.

Fitting only: serving applies the fitted temperature with ``ml.serving.verdicts.tempered``, the same
numpy arithmetic used here to fit and measure it.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from ml.fitting.styles import STYLES, style_set
from ml.fitting.synth import realistic_set
from ml.serving.artifacts import to_model_array
from ml.serving.preprocessing import PreprocessingError, to_model_input
from ml.serving.verdicts import PROBABILITY_FLOOR, tempered

ECE_BINS = 15
# Where the fitted temperature is looked for: far beyond what a trained network needs.
TEMPERATURE_RANGE = (0.05, 20.0)
# The temperatures tried for the least ECE: 0.25 to 4 in steps of 0.5%, 1 among them (the middle).
TEMPERATURE_GRID = np.exp(np.linspace(np.log(0.25), np.log(4.0), 557))


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, *, bins: int = ECE_BINS) -> float:
    """The gap between confidence and accuracy, averaged over ``bins`` equal-width confidence
    bins weighted by how many predictions fall in each (Naeini et al. 2015), as a fraction."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    # Bin i holds confidences in (i/bins, (i+1)/bins]; a confidence of exactly 0 joins bin 0.
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    gap = np.abs(
        np.bincount(which, weights=correct.astype(np.float64), minlength=bins)
        - np.bincount(which, weights=confidence, minlength=bins)
    )
    return float(gap.sum() / max(len(confidence), 1)) if counts.any() else 0.0


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> float:
    picked = np.asarray(probabilities)[np.arange(len(labels)), np.asarray(labels)]
    return float(-np.log(np.clip(picked, PROBABILITY_FLOOR, 1.0)).mean())


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of ``labels``: one number,
    so a few thousand held-out images pin it down; searched on a log scale."""
    low, high = np.log(TEMPERATURE_RANGE)
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(tempered(probabilities, float(np.exp(log_t))), labels),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))


def least_ece_temperature(groups: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """The temperature of ``TEMPERATURE_GRID`` with the least ECE averaged over ``groups``
    ((probabilities, labels) of each kind of input); the one nearest 1 where several tie.
    ECE is a step function of T, so it is searched on a grid rather than by a solver."""
    errors = np.array(
        [
            np.mean([expected_calibration_error(tempered(p, t), labels) for p, labels in groups])
            for t in TEMPERATURE_GRID
        ]
    )
    best = np.flatnonzero(errors <= errors.min() + 1e-12)
    return float(TEMPERATURE_GRID[best[np.argmin(np.abs(np.log(TEMPERATURE_GRID[best])))]])


# --- Fitting a model's calibration on its held-out digits -------------------------------------

# What the temperature is fitted on, all made from the held-out training digits: the digits as
# MNIST has them, the same digits as realistic uploads (photos, scans, canvas...), and as the
# stand-ins for other writers. One temperature serves them all, as it serves every upload.
CALIBRATION_KINDS = ("clean", "realistic", "styles")
# One number is fitted: more held-out digits than this add time, not precision.
CALIBRATION_MAX_DIGITS = 5000


def model_inputs(uploads) -> tuple[np.ndarray, np.ndarray]:
    """The model inputs (n, 28, 28, 1) of the uploads the preprocessing reads, and which
    those are (a boolean per upload): what it refuses gets no confidence at all."""
    arrays, read = [], []
    for upload in uploads:
        try:
            arrays.append(to_model_input(upload.data).array)
            read.append(True)
        except PreprocessingError:
            read.append(False)
    stacked = np.stack(arrays)[..., np.newaxis] if arrays else np.zeros((0, 28, 28, 1), np.float32)
    return stacked, np.array(read, dtype=bool)


def labelled_inputs(uploads) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs and labels of the labelled uploads the preprocessing reads."""
    arrays, read = model_inputs(uploads)
    return arrays, np.array([upload.label for upload in uploads], dtype=np.int64)[read]


def held_out_inputs(images: np.ndarray, labels: np.ndarray, *, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Model inputs and labels of each kind in ``CALIBRATION_KINDS`` made from ``images``: as
    many of each as there are images (the styles share that number); what the preprocessing
    refuses is left out, since it gets no confidence at all."""
    count = len(images)
    styled = [
        upload
        for style in STYLES
        for upload in style_set(images, labels, style=style, count=count // len(STYLES), seed=seed)
    ]
    return {
        "clean": (to_model_array(images), labels.astype(np.int64)),
        "realistic": labelled_inputs(realistic_set(images, labels, count=count, seed=seed)),
        "styles": labelled_inputs(styled),
    }


def fit_calibration(raw_probabilities, inputs: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """Fit one temperature on all of ``inputs`` (kind -> (arrays, labels)) through the model's
    uncalibrated ``raw_probabilities(arrays)``: the least mean ECE over the kinds (the
    likelihood's fit recorded beside it); say what it was fitted on and each kind's ECE and
    accuracy before and after, as plain JSON types for the bundle's metadata."""
    probabilities = {kind: raw_probabilities(arrays) for kind, (arrays, _) in inputs.items()}
    labels = {kind: kind_labels for kind, (_, kind_labels) in inputs.items()}
    # Rounded as the metadata keeps it, so that the figures below are those of the served model.
    temperature = round(least_ece_temperature([(probabilities[kind], labels[kind]) for kind in probabilities]), 4)
    likelihood = fit_temperature(np.concatenate(list(probabilities.values())), np.concatenate(list(labels.values())))
    return {
        "method": "temperature",
        "fitted_by": "least mean ECE over the kinds",
        "temperature": temperature,
        "likelihood_temperature": round(likelihood, 4),
        "fitted_on": {kind: len(kind_labels) for kind, kind_labels in labels.items()},
        "ece_before": {kind: expected_calibration_error(p, labels[kind]) for kind, p in probabilities.items()},
        "ece_after": {
            kind: expected_calibration_error(tempered(p, temperature), labels[kind])
            for kind, p in probabilities.items()
        },
        "accuracy": {kind: float((p.argmax(axis=1) == labels[kind]).mean()) for kind, p in probabilities.items()},
    }
