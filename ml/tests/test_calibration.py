import json

import numpy as np
import pytest

from ml.fitting.calibration import expected_calibration_error, fit_temperature, least_ece_temperature
from ml.serving.artifacts import METADATA_FILE, to_model_array
from ml.serving.verdicts import tempered


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def overconfident_model(n: int = 20_000, true_temperature: float = 2.5, seed: int = 0):
    """Probabilities whose labels were drawn from the same logits at ``true_temperature``: a
    model that says softmax(z) where the truth is softmax(z / T), as networks do."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 4, size=(n, 10))
    truth = softmax(logits / true_temperature)
    labels = np.array([rng.choice(10, p=row) for row in truth])
    return softmax(logits), labels


def test_ece_is_the_weighted_gap_between_confidence_and_accuracy():
    # Two bins: 0.95 confidence right half the time, 0.55 confidence always right.
    probabilities = np.zeros((4, 10))
    probabilities[:2, 0], probabilities[:2, 1] = 0.95, 0.05
    probabilities[2:, 0], probabilities[2:, 1] = 0.55, 0.45
    labels = np.array([0, 1, 0, 0])
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.5 * 0.45 + 0.5 * 0.45)
    # Confidence equal to accuracy in every bin: no error.
    probabilities = softmax(np.array([[2.0, 0.0] + [-50.0] * 8] * 1000))
    labels = (np.arange(1000) >= 1000 * probabilities[0, 0]).astype(int)
    assert expected_calibration_error(probabilities, labels) < 0.002


def test_tempering_keeps_the_answer_and_can_be_undone():
    probabilities, _ = overconfident_model(n=500)
    softer = tempered(probabilities, 2.0)
    assert (softer.argmax(axis=1) == probabilities.argmax(axis=1)).all()
    assert softer.max(axis=1).mean() < probabilities.max(axis=1).mean()
    assert np.allclose(softer.sum(axis=1), 1.0)
    assert np.allclose(tempered(softer, 0.5), probabilities, atol=1e-9)


def test_the_fitted_temperature_is_the_true_one_and_removes_the_error():
    probabilities, labels = overconfident_model(true_temperature=2.5)
    temperature = fit_temperature(probabilities, labels)
    assert temperature == pytest.approx(2.5, rel=0.08)
    before = expected_calibration_error(probabilities, labels)
    after = expected_calibration_error(tempered(probabilities, temperature), labels)
    assert before > 0.1 and after < 0.02


def test_the_served_temperature_has_the_least_ece_and_is_one_for_a_calibrated_model():
    overconfident = overconfident_model(n=6000, true_temperature=2.5, seed=1)
    assert least_ece_temperature([overconfident]) == pytest.approx(2.5, rel=0.1)
    # A calibrated model stays as it is, however a few confident errors pull the likelihood.
    calibrated = overconfident_model(n=6000, true_temperature=1.0, seed=2)
    probabilities, labels = calibrated
    sure = np.flatnonzero(probabilities.max(axis=1) > 0.999)[:6]
    labels = labels.copy()
    labels[sure] = (probabilities[sure].argmax(axis=1) + 1) % 10
    temperature = least_ece_temperature([(probabilities, labels)])
    assert temperature == pytest.approx(1.0, abs=0.05)
    assert fit_temperature(probabilities, labels) > temperature
    after = expected_calibration_error(tempered(probabilities, temperature), labels)
    assert after <= expected_calibration_error(probabilities, labels)


@pytest.mark.slow  # trains: `make test-fast` leaves it out
def test_training_with_a_holdout_calibrates_the_model_it_serves(tiny_rejecting_model_dir, mnist):
    """A small model trained for seconds (``tiny_rejecting_model_dir``: 300 digits held out):
    its temperature is fitted on the held-out digits and lowers the calibration error on the
    MNIST test set, which it was not fitted on; the predictor serves the calibrated confidence
    and can give the model's own back."""
    from ml.serving.inference import Predictor
    from ml.tests.conftest import TRAINING_LOG

    lines = (tiny_rejecting_model_dir / TRAINING_LOG).read_text().splitlines()
    calibration = json.loads((tiny_rejecting_model_dir / METADATA_FILE).read_text())["calibration"]
    assert calibration["fitted_on"]["clean"] == 300 and calibration["fitted_on"]["realistic"] >= 290
    assert calibration["test_ece_after"] < calibration["test_ece_before"]
    assert sum(calibration["ece_after"].values()) < sum(calibration["ece_before"].values())
    assert any(line.startswith("temperature ") for line in lines)

    predictor = Predictor(tiny_rejecting_model_dir)
    assert predictor.temperature == calibration["temperature"] != 1.0
    x = to_model_array(mnist.test.images[:50])
    served, own = predictor.probabilities(x), predictor.probabilities(x, calibrated=False)
    assert (served.argmax(axis=1) == own.argmax(axis=1)).all() and not np.allclose(served, own)
    assert np.allclose(predictor.uncalibrated(served), own, atol=1e-5)
    assert predictor.predict_arrays(x)[0].confidence == pytest.approx(float(served[0].max()))


def test_a_model_without_a_holdout_cannot_be_calibrated(tiny_model_dir, mnist):
    from ml.fitting.evaluation import calibrate_bundle
    from ml.serving.inference import Predictor

    with pytest.raises(ValueError, match="none is left to calibrate it on"):
        calibrate_bundle(tiny_model_dir, mnist, holdout=0, seed=0)
    assert Predictor(tiny_model_dir).temperature == 1.0
