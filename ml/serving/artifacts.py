"""The one definition of a model version on disk, and the constants every model shares.

A model bundle is a directory that training and fine-tuning write and serving reads:
    model.keras            the Keras model
    metadata.json          how it was made and how good it is
    training_curves.png    loss and accuracy per epoch
    confusion_matrix.png   on the MNIST test set
    reject.keras           the reject option's detector (``ml.fitting.reject``), where it was fitted
    lines.keras            the line reader (``ml.serving.lines``) that reads a whole number at once, where
                           the bundle has one (fitted apart, by ``train_lines``, and kept by retraining)
    lines.json             how the line reader was made (recipe, data hash, validation per epoch)
    numbers.json           how sure a whole number's reading is (``ml.serving.sureness``), where fitted
                           (``calibrate_numbers``; kept by retraining with the line reader)

No Keras or TensorFlow here: the web process reads these names and files too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NUM_CLASSES = 10
INPUT_SIDE = 28  # MNIST's images, and so every model's input
INPUT_SHAPE = (INPUT_SIDE, INPUT_SIDE, 1)

MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"
CURVES_FILE = "training_curves.png"
CONFUSION_FILE = "confusion_matrix.png"
DETECTOR_FILE = "reject.keras"
LINE_READER_FILE = "lines.keras"
LINE_READER_METADATA_FILE = "lines.json"
# How sure a whole number's reading is (``ml.serving.sureness``), fitted on the digit model and
# the line reader together: kept with the line reader.
SURENESS_FILE = "numbers.json"


@dataclass(frozen=True)
class ModelBundle:
    """A model version's directory: its files, and its metadata read and written as JSON."""

    directory: Path

    @classmethod
    def at(cls, path: str | Path) -> ModelBundle:
        """The bundle of a directory, or of the directory holding the given ``model.keras``."""
        path = Path(path)
        return cls(path.parent if path.suffix == ".keras" else path)

    @property
    def model_path(self) -> Path:
        return self.directory / MODEL_FILE

    @property
    def metadata_path(self) -> Path:
        return self.directory / METADATA_FILE

    @property
    def curves_path(self) -> Path:
        return self.directory / CURVES_FILE

    @property
    def confusion_path(self) -> Path:
        return self.directory / CONFUSION_FILE

    @property
    def detector_path(self) -> Path:
        return self.directory / DETECTOR_FILE

    @property
    def line_reader_path(self) -> Path:
        return self.directory / LINE_READER_FILE

    @property
    def sureness_path(self) -> Path:
        return self.directory / SURENESS_FILE

    @property
    def line_reader_metadata_path(self) -> Path:
        return self.directory / LINE_READER_METADATA_FILE

    def files(self) -> list[Path]:
        """The bundle's files that exist, model first."""
        paths = [
            self.model_path,
            self.metadata_path,
            self.curves_path,
            self.confusion_path,
            self.detector_path,
            self.line_reader_path,
            self.line_reader_metadata_path,
            self.sureness_path,
        ]
        return [path for path in paths if path.is_file()]

    def metadata(self) -> dict:
        """The metadata, or an empty dict for a bundle written without it."""
        return json.loads(self.metadata_path.read_text()) if self.metadata_path.is_file() else {}

    def write_metadata(self, metadata: dict) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.metadata_path.write_text(json.dumps(metadata, indent=2) + "\n")


def to_model_array(images: np.ndarray) -> np.ndarray:
    """uint8 (n, 28, 28) -> float32 (n, 28, 28, 1) in [0, 1]: what every model takes."""
    return (images.astype("float32") / 255.0)[..., np.newaxis]


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Rows are true digits, columns predicted ones."""
    matrix = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(matrix, (labels.astype(int), predicted.astype(int)), 1)
    return matrix
