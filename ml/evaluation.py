"""How good a model is: on the MNIST test set, and on realistic uploads made from it."""

from __future__ import annotations

from collections import Counter

import numpy as np

from ml.artifacts import confusion_matrix, to_model_array
from ml.data import Split
from ml.inference import Predictor
from ml.styles import STYLES, load_digits_uploads, style_set
from ml.synth import SCENARIOS, Upload, realistic_set


def evaluate_mnist(predictor: Predictor, split: Split, *, batch_size: int = 1000) -> dict:
    """Accuracy, cross-entropy loss and confusion matrix on a split, as plain JSON types."""
    x = to_model_array(split.images)
    labels = split.labels.astype(int)
    probabilities = np.concatenate(
        [predictor.probabilities(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    )
    predicted = probabilities.argmax(axis=1)
    picked = probabilities[np.arange(len(labels)), labels]
    return {
        "accuracy": float((predicted == labels).mean()),
        "loss": float(-np.log(np.clip(picked, 1e-7, 1.0)).mean()),
        "samples": len(labels),
        "errors": int((predicted != labels).sum()),
        "confusion_matrix": confusion_matrix(labels, predicted).tolist(),
    }


def _uploads_accuracy(predictor: Predictor, uploads: list[Upload], *, by_scenario: bool = True) -> dict:
    """Accuracy on labelled uploads, overall and per scenario; a refused file counts as wrong."""
    results = predictor.predict_images([upload.data for upload in uploads])
    right, seen = Counter(), Counter()
    refused = 0
    for upload, result in zip(uploads, results, strict=True):
        seen[upload.scenario] += 1
        if result.prediction is None:
            refused += 1
        elif result.prediction.digit == upload.label:
            right[upload.scenario] += 1
    report = {"accuracy": sum(right.values()) / max(len(uploads), 1), "samples": len(uploads), "refused": refused}
    if by_scenario:
        report["by_scenario"] = {name: right[name] / seen[name] for name in seen}
    return report


def evaluate_realistic(predictor: Predictor, split: Split, *, count: int, seed: int = 0, scenarios=SCENARIOS) -> dict:
    """Accuracy on ``count`` realistic uploads rendered from ``split``, overall and per scenario.

    A file the preprocessing refuses counts as wrong.
    """
    uploads = realistic_set(split.images, split.labels, count=count, seed=seed, scenarios=scenarios)
    return _uploads_accuracy(predictor, uploads) | {"seed": seed}


def evaluate_styles(predictor: Predictor, split: Split, *, count: int, seed: int = 0) -> dict:
    """Accuracy on the stand-ins for other writers and scanners (``ml.styles``): ``count``
    uploads per style, and scikit-learn's 1,797 digits by 43 writers."""
    sets = {style: style_set(split.images, split.labels, style=style, count=count, seed=seed) for style in STYLES}
    sets["load_digits"] = load_digits_uploads()
    # One scenario per set: its breakdown would repeat the overall figure.
    report = {name: _uploads_accuracy(predictor, uploads, by_scenario=False) for name, uploads in sets.items()}
    return report | {"seed": seed}
