"""How good a model is: on the MNIST test set, and on realistic uploads made from it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import partial

import numpy as np

from ml.artifacts import NUM_CLASSES, ModelBundle, confusion_matrix, to_model_array
from ml.calibration import (
    CALIBRATION_MAX_DIGITS,
    expected_calibration_error,
    fit_calibration,
    held_out_inputs,
    tempered,
)
from ml.data import Mnist, Split
from ml.inference import Predictor
from ml.reject import DETECTOR_DIGITS, VERDICTS, fit_reject_option
from ml.styles import STYLES, load_digits_uploads, style_set
from ml.synth import SCENARIOS, Upload, realistic_set


def evaluate_mnist(predictor: Predictor, split: Split, *, batch_size: int = 1000) -> dict:
    """Accuracy, cross-entropy loss and confusion matrix on a split, as plain JSON types."""
    x = to_model_array(split.images)
    labels = split.labels.astype(int)
    predictions = [p for i in range(0, len(x), batch_size) for p in predictor.predict_arrays(x[i : i + batch_size])]
    probabilities = np.array([p.probabilities for p in predictions], dtype=np.float64).reshape(-1, NUM_CLASSES)
    predicted = probabilities.argmax(axis=1)
    picked = probabilities[np.arange(len(labels)), labels]
    return (
        {
            "accuracy": float((predicted == labels).mean()),
            "loss": float(-np.log(np.clip(picked, 1e-7, 1.0)).mean()),
            "samples": len(labels),
            "errors": int((predicted != labels).sum()),
            "confusion_matrix": confusion_matrix(labels, predicted).tolist(),
        }
        | _calibration_errors(predictor, probabilities, labels)
        | _verdict_report(predictions, labels)
    )


def _verdict_report(predictions: list, labels: np.ndarray) -> dict:
    """The share of each verdict, and how often a "digit" verdict is right."""
    given = np.array([p.verdict for p in predictions])
    right = np.array([p.digit for p in predictions]) == np.asarray(labels)
    answered = given == "digit"
    return {
        "verdicts": {name: float((given == name).mean()) if len(given) else 0.0 for name in VERDICTS}
        | {"digit_accuracy": float(right[answered].mean()) if answered.any() else None}
    }


def coverage_accuracy(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Answering only the most confident share of the inputs: for each share (coverage), how
    often those answers are right."""
    order = np.argsort(-np.asarray(confidence), kind="stable")
    counts = np.arange(1, len(order) + 1)
    return counts / len(order), np.cumsum(np.asarray(correct)[order]) / counts


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
    answered, answered_labels, predictions = [], [], []
    for upload, result in zip(uploads, results, strict=True):
        seen[upload.scenario] += 1
        if result.prediction is None:
            refused += 1
            continue
        predictions.append(result.prediction)
        answered.append(result.prediction.probabilities)
        answered_labels.append(upload.label)
        if result.prediction.digit == upload.label:
            right[upload.scenario] += 1
    report = {"accuracy": sum(right.values()) / max(len(uploads), 1), "samples": len(uploads), "refused": refused}
    if answered:
        report |= _calibration_errors(predictor, np.array(answered), np.array(answered_labels))
        report |= _verdict_report(predictions, np.array(answered_labels))
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
    detector_extra: tuple[np.ndarray, np.ndarray] | None = None,
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
            predictor,
            mnist,
            held_out,
            holdout=holdout,
            seed=seed,
            digits=detector_digits,
            extra=detector_extra,
            log=log,
        )
        detector.save(bundle.detector_path)
    bundle.write_metadata(metadata)
    return calibration


def evaluate_non_digits(predictor: Predictor, digits: np.ndarray, *, count: int, seed: int = 0) -> dict:
    """How many of ``count`` generated non-digits (``ml.negatives``, numbers made of ``digits``)
    come back as anything but a confident digit: unsure, not a digit, or refused as blank;
    overall and per family."""
    from ml.negatives import negative_set

    uploads = negative_set(digits, count=count, seed=seed)
    results = predictor.predict_images([upload.data for upload in uploads])
    caught, seen = Counter(), Counter()
    for upload, result in zip(uploads, results, strict=True):
        seen[upload.scenario] += 1
        caught[upload.scenario] += result.prediction is None or result.prediction.verdict != "digit"
    return {
        "caught": sum(caught.values()) / max(len(uploads), 1),
        "samples": len(uploads),
        "by_family": {family: caught[family] / seen[family] for family in seen},
        "seed": seed,
    }


def coverage_curves(predictor: Predictor, split: Split, *, realistic: int, seed: int) -> dict:
    """For the coverage/accuracy plot: the MNIST split and (with ``realistic``) that many
    realistic uploads made from it, each as (coverage, accuracy) by calibrated confidence and
    the point the verdicts reach (share answered "digit", their accuracy)."""
    from ml.calibration import labelled_inputs

    sets = {"MNIST test": (to_model_array(split.images), split.labels.astype(int))}
    if realistic:
        uploads = realistic_set(split.images, split.labels, count=realistic, seed=seed)
        sets[f"realistic uploads ({realistic:,})"] = labelled_inputs(uploads)
    curves = {}
    for name, (x, labels) in sets.items():
        predictions = [p for i in range(0, len(x), 1000) for p in predictor.predict_arrays(x[i : i + 1000])]
        confidence = np.array([p.confidence for p in predictions])
        correct = np.array([p.digit for p in predictions]) == labels
        answered = np.array([p.verdict == "digit" for p in predictions])
        point = (float(answered.mean()), float(correct[answered].mean()) if answered.any() else 1.0)
        curves[name] = (*coverage_accuracy(confidence, correct), point)
    return curves
