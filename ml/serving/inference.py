"""Inference: load a model once, classify batches of images.

``Predictor`` calls the model through one traced ``tf.function`` with a fixed input
signature; ``model.predict`` on a single image costs about ten times as much.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ml.serving.artifacts import INPUT_SHAPE, NUM_CLASSES, ModelBundle
from ml.serving.explain import GradCam
from ml.serving.lines import LINE_SHAPE, LineReading, decode
from ml.serving.preprocessing import ModelInput, PreprocessingError, to_model_input
from ml.serving.sureness import NumberSureness
from ml.serving.verdicts import KINDS, Verdict, tempered, verdicts

logger = logging.getLogger(__name__)

# What a person is told when preprocessing broke on their file in a way we did not foresee.
UNEXPECTED_ERROR = "This image could not be read: saving it again as PNG or JPEG usually helps."


@dataclass(frozen=True)
class Prediction:
    digit: int
    confidence: float  # calibrated, where the model was
    probabilities: tuple[float, ...]  # NUM_CLASSES values that sum to 1
    verdict: str = "digit"  # ml.serving.verdicts.VERDICTS
    reason: str = ""  # for not_a_digit: what it looks like instead

    def as_dict(self) -> dict:
        return {
            "digit": self.digit,
            "confidence": self.confidence,
            "probabilities": list(self.probabilities),
            "verdict": self.verdict,
        }


@dataclass(frozen=True)
class ImageResult:
    """The outcome for one uploaded image: a prediction with its model input, or an error."""

    prediction: Prediction | None = None
    model_input: ModelInput | None = None
    error: str | None = None


class Predictor:
    """A loaded model that classifies batches of 28x28 inputs or raw image bytes."""

    def __init__(self, model_path: str | Path):
        """``model_path``: a model bundle's directory, or a .keras file (its metadata beside it)."""
        path = Path(model_path)
        self.bundle = ModelBundle.at(path)
        self.model_path = path if path.suffix == ".keras" else self.bundle.model_path
        if not self.model_path.is_file():
            raise FileNotFoundError(f"no model at {self.model_path}")
        self.model = keras.saving.load_model(self.model_path, compile=False)
        self.metadata = self.bundle.metadata()
        # Calibrated confidence (ml.fitting.calibration): fitted when the model was trained on digits
        # it never saw; a model without it answers with its raw probabilities.
        self.temperature = float((self.metadata.get("calibration") or {}).get("temperature", 1.0))
        model = self.model
        self._forward = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec(shape=(None, *INPUT_SHAPE), dtype=tf.float32)],
            reduce_retracing=True,
        )
        self._grad_cam: GradCam | None = None  # built on the first explain(): most workers never need it
        # The reject option (ml.fitting.reject): its detector where the bundle has one, and the
        # thresholds chosen on held-out digits; without them every prediction is a "digit".
        self.thresholds = self.metadata.get("verdict") or None
        self.detector = None
        if self.bundle.detector_path.is_file() and self.thresholds:
            self.detector = keras.saving.load_model(self.bundle.detector_path, compile=False)
            detector = self.detector
            signature = [tf.TensorSpec(shape=(None, *INPUT_SHAPE), dtype=tf.float32)]
            self._detect = tf.function(
                lambda x: detector(x, training=False), input_signature=signature, reduce_retracing=True
            )
            # Serving asks both at once: one call into TensorFlow a batch, not two.
            self._forward_both = tf.function(
                lambda x: (model(x, training=False), detector(x, training=False)),
                input_signature=signature,
                reduce_retracing=True,
            )

        # How sure a whole number's reading is (``ml.serving.sureness``), where the bundle says.
        self.sureness = NumberSureness.load(self.bundle.directory)
        # The line reader (``ml.serving.lines``) where the bundle has one: whole numbers read at once.
        self.line_reader = None
        if self.bundle.line_reader_path.is_file():
            self.line_reader = keras.saving.load_model(self.bundle.line_reader_path, compile=False)
            line_reader = self.line_reader
            self._read_lines = tf.function(
                lambda x: tf.nn.softmax(line_reader(x, training=False), axis=-1),
                input_signature=[tf.TensorSpec(shape=(None, *LINE_SHAPE, 1), dtype=tf.float32)],
                reduce_retracing=True,
            )

    def read_lines(self, strips: np.ndarray) -> list[LineReading]:
        """The line reader's answer for each of (n, *LINE_SHAPE) strips (``ml.serving.lines.line_input``)."""
        if self.line_reader is None:
            raise ValueError("this model has no line reader")
        if len(strips) == 0:
            return []
        probabilities = self._read_lines(np.asarray(strips, dtype=np.float32)[..., None]).numpy()
        return [decode(p) for p in probabilities]

    def probabilities(self, arrays: np.ndarray, *, calibrated: bool = True) -> np.ndarray:
        """(n, 28, 28) or (n, 28, 28, 1) floats in [0, 1] -> (n, 10) probabilities, calibrated
        unless asked for the model's own."""
        batch = np.asarray(arrays, dtype=np.float32).reshape((-1, *INPUT_SHAPE))
        if len(batch) == 0:
            return np.zeros((0, NUM_CLASSES), dtype=np.float32)
        raw = self._forward(batch).numpy()
        if not calibrated or self.temperature == 1.0:
            return raw
        return tempered(raw, self.temperature).astype(np.float32)

    def uncalibrated(self, probabilities: np.ndarray) -> np.ndarray:
        """The model's own probabilities back from calibrated ones (tempering is invertible)."""
        if self.temperature == 1.0:
            return np.asarray(probabilities)
        return tempered(probabilities, 1.0 / self.temperature).astype(np.float32)

    def kinds(self, arrays: np.ndarray) -> np.ndarray:
        """The detector's (n, len(KINDS)) probabilities of what each input is (digit first)."""
        batch = np.asarray(arrays, dtype=np.float32).reshape((-1, *INPUT_SHAPE))
        if self.detector is None or len(batch) == 0:
            return np.tile(np.eye(len(KINDS), dtype=np.float32)[0], (len(batch), 1))
        return self._detect(batch).numpy()

    def predict_arrays(self, arrays: np.ndarray) -> list[Prediction]:
        return self.assess(arrays)[0]

    def assess(self, arrays: np.ndarray) -> tuple[list[Prediction], np.ndarray]:
        """Predictions with their verdicts, and the detector's (n, len(KINDS)) probabilities of
        what each input is (digit first): one call into TensorFlow for both."""
        batch = np.asarray(arrays, dtype=np.float32).reshape((-1, *INPUT_SHAPE))
        if self.detector is None or len(batch) == 0:
            probabilities, kinds = self.probabilities(batch), self.kinds(batch)
        else:
            raw, kinds = (part.numpy() for part in self._forward_both(batch))
            probabilities = raw if self.temperature == 1.0 else tempered(raw, self.temperature).astype(np.float32)
        if not self.thresholds:
            return [_prediction(row) for row in probabilities], kinds
        judged = verdicts(kinds[:, 0], kinds, probabilities.max(axis=1), self.thresholds)
        return [_prediction(row, verdict) for row, verdict in zip(probabilities, judged, strict=True)], kinds

    def explain(self, arrays: np.ndarray, class_indices: np.ndarray | None = None) -> np.ndarray:
        """Grad-CAM heat maps, (n, 28, 28) float32 in [0, 1], for the predicted or the given classes."""
        if self._grad_cam is None:
            self._grad_cam = GradCam(self.model)
        return self._grad_cam(arrays, class_indices)

    def predict_images(self, blobs: list[bytes]) -> list[ImageResult]:
        """Preprocess each image and classify all that survive in one batch. Whatever goes
        wrong with one image is that image's error: its neighbours are classified all the same."""
        inputs: list[ModelInput | None] = []
        errors: list[str | None] = []
        for blob in blobs:
            try:
                inputs.append(to_model_input(blob))
                errors.append(None)
            except PreprocessingError as exc:
                inputs.append(None)
                errors.append(str(exc))
            except Exception:
                logger.exception("preprocessing failed on an image of %d bytes", len(blob))
                inputs.append(None)
                errors.append(UNEXPECTED_ERROR)
        good = [i for i, item in enumerate(inputs) if item is not None]
        predictions = self.predict_arrays(np.stack([inputs[i].array for i in good])) if good else []
        by_index = dict(zip(good, predictions, strict=True))
        return [
            ImageResult(prediction=by_index[i], model_input=inputs[i])
            if i in by_index
            else ImageResult(error=errors[i])
            for i in range(len(blobs))
        ]


def _prediction(probabilities: np.ndarray, verdict: Verdict | None = None) -> Prediction:
    digit = int(np.argmax(probabilities))
    return Prediction(
        digit=digit,
        confidence=float(probabilities[digit]),
        probabilities=tuple(float(p) for p in probabilities),
        verdict=verdict.verdict if verdict else "digit",
        reason=verdict.reason if verdict else "",
    )
