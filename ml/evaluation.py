"""How good a model is: on the MNIST test set, and on realistic uploads made from it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import partial

import numpy as np

from ml.artifacts import ModelBundle, confusion_matrix, to_model_array
from ml.calibration import (
    CALIBRATION_MAX_DIGITS,
    expected_calibration_error,
    fit_calibration,
    held_out_inputs,
    tempered,
)
from ml.data import Mnist, Split
from ml.inference import Predictor
from ml.reject import DETECTOR_DIGITS, fit_reject_option
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
    } | _calibration_errors(predictor, probabilities, labels)


def _calibration_errors(predictor: Predictor, probabilities: np.ndarray, labels: np.ndarray) -> dict:
    """ECE (15 bins) of the confidence served, and of the model's own before calibration."""
    return {
        "ece": expected_calibration_error(probabilities, labels),
        "ece_uncalibrated": expected_calibration_error(predictor.uncalibrated(probabilities), labels),
    }


def _uploads_accuracy(predictor: Predictor, uploads: list[Upload], *, by_scenario: bool = True) -> dict:
    """Accuracy on labelled uploads, overall and per scenario; a refused file counts as wrong."""
    results = predictor.predict_images([upload.data for upload in uploads])
    right, seen = Counter(), Counter()
    refused = 0
    answered, answered_labels = [], []
    for upload, result in zip(uploads, results, strict=True):
        seen[upload.scenario] += 1
        if result.prediction is None:
            refused += 1
            continue
        answered.append(result.prediction.probabilities)
        answered_labels.append(upload.label)
        if result.prediction.digit == upload.label:
            right[upload.scenario] += 1
    report = {"accuracy": sum(right.values()) / max(len(uploads), 1), "samples": len(uploads), "refused": refused}
    if answered:
        report |= _calibration_errors(predictor, np.array(answered), np.array(answered_labels))
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


def calibrate_bundle(
    directory,
    mnist: Mnist,
    *,
    holdout: int,
    seed: int,
    detector_digits: int = DETECTOR_DIGITS,
    log: Callable[[str], None] = print,
) -> dict:
    """Make the model in bundle ``directory`` honest, on the ``holdout`` training digits it
    never trained on: fit its calibration (``ml.calibration``) and, with ``detector_digits``,
    its reject option (``ml.reject``: the detector, saved in the bundle, and the verdict
    thresholds). Record both in the bundle's metadata; return the calibration, with the
    MNIST test set's ECE before and after (measured, not fitted on)."""
    if holdout <= 0:
        raise ValueError(
            "this model was trained on every training image, so none is left to calibrate it on "
            "without touching the test set: train it with a holdout (train --holdout N)"
        )
    bundle = ModelBundle.at(directory)
    images, labels = (part[:CALIBRATION_MAX_DIGITS] for part in mnist.held_out(holdout))
    log(f"calibrating on {len(images):,} held-out training digits: clean, as realistic uploads, in other styles")
    predictor = Predictor(bundle.directory)
    raw = partial(predictor.probabilities, calibrated=False)
    held_out = held_out_inputs(images, labels, seed=seed)
    calibration = fit_calibration(raw, held_out)
    test = raw(to_model_array(mnist.test.images))
    test_labels = mnist.test.labels.astype(int)
    calibration["test_ece_before"] = expected_calibration_error(test, test_labels)
    calibration["test_ece_after"] = expected_calibration_error(tempered(test, calibration["temperature"]), test_labels)
    log(
        f"temperature {calibration['temperature']:.3f}; ECE on the held-out digits "
        + ", ".join(
            f"{kind} {100 * calibration['ece_before'][kind]:.2f} -> {100 * calibration['ece_after'][kind]:.2f}%"
            for kind in calibration["ece_before"]
        )
        + f"; MNIST test {100 * calibration['test_ece_before']:.2f} -> {100 * calibration['test_ece_after']:.2f}%"
    )
    metadata = bundle.metadata() | {"calibration": calibration}
    metadata.pop("verdict", None)
    bundle.detector_path.unlink(missing_ok=True)
    if detector_digits:
        predictor.temperature = calibration["temperature"]
        detector, metadata["verdict"] = fit_reject_option(
            predictor, mnist, held_out, holdout=holdout, seed=seed, digits=detector_digits, log=log
        )
        detector.save(bundle.detector_path)
    bundle.write_metadata(metadata)
    return calibration
