"""MNIST loading: the canonical IDX files from a directory, or the Keras download.

The IDX format (http://yann.lecun.com/exdb/mnist/) is a big-endian header
(magic number, dimension sizes) followed by raw unsigned bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml.serving.artifacts import INPUT_SIDE, NUM_CLASSES

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60_000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10_000),
}


class MnistDataError(Exception):
    """The MNIST files are missing, corrupt or not what they claim to be."""


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (n, 28, 28) uint8, 0 = background
    labels: np.ndarray  # (n,) uint8
    sha256: str  # of the uncompressed image bytes, header included


@dataclass(frozen=True)
class Mnist:
    train: Split
    test: Split

    def training(self, holdout: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The training images and labels a model may learn from: all but the last
        ``holdout``, which stay unseen (``held_out``)."""
        end = len(self.train.images) - holdout
        if not 0 <= holdout < len(self.train.images):
            raise ValueError(f"cannot hold out {holdout:,} of {len(self.train.images):,} training images")
        return self.train.images[:end], self.train.labels[:end]

    def held_out(self, holdout: int) -> tuple[np.ndarray, np.ndarray]:
        """The last ``holdout`` training images and labels, which a model trained with that
        holdout never saw: for calibrating its confidence and choosing its thresholds, so
        that the test set stays for measuring alone (as MNIST's classic 55,000/5,000 split)."""
        start = len(self.train.images) - holdout
        return self.train.images[start:], self.train.labels[start:]


def _find(directory: Path, stem: str) -> Path:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise MnistDataError(f"{stem}(.gz) not found in {directory}")


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise MnistDataError(f"{path}: cannot read ({exc})") from exc


def parse_idx(raw: bytes, *, expected_magic: int, name: str = "IDX data") -> np.ndarray:
    """Parse one IDX file's bytes into an array, checking the header against the payload."""
    if len(raw) < 8:
        raise MnistDataError(f"{name}: {len(raw)} bytes is too short for an IDX header")
    magic = int.from_bytes(raw[0:4], "big")
    if magic != expected_magic:
        raise MnistDataError(f"{name}: magic number {magic}, expected {expected_magic}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise MnistDataError(f"{name}: header truncated")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    payload = len(raw) - header
    if payload != expected:
        raise MnistDataError(f"{name}: header says shape {shape} ({expected} bytes) but file holds {payload} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_split(directory: Path, split: str) -> Split:
    images_stem, labels_stem, count = FILES[split]
    images_raw = _read_bytes(_find(directory, images_stem))
    labels_raw = _read_bytes(_find(directory, labels_stem))
    images = parse_idx(images_raw, expected_magic=IMAGES_MAGIC, name=images_stem)
    labels = parse_idx(labels_raw, expected_magic=LABELS_MAGIC, name=labels_stem)
    if images.shape[1:] != (INPUT_SIDE, INPUT_SIDE):
        raise MnistDataError(f"{images_stem}: images are {images.shape[1:]}, expected 28x28")
    if len(images) != count or len(labels) != count:
        raise MnistDataError(f"{split}: {len(images)} images and {len(labels)} labels, expected {count} of each")
    if labels.max(initial=0) >= NUM_CLASSES:
        raise MnistDataError(f"{labels_stem}: label {labels.max()} is not a digit")
    return Split(images=images, labels=labels, sha256=hashlib.sha256(images_raw).hexdigest())


def keras_download_path() -> Path:
    """Where ``keras.datasets.mnist.load_data`` keeps its download, as ``keras.utils.get_file``
    finds it: under ``KERAS_HOME``, else ``~/.keras``, else ``/tmp/.keras`` where that cannot be
    written."""
    base = Path(os.environ.get("KERAS_HOME") or Path("~/.keras").expanduser())
    if not os.access(base, os.W_OK):
        base = Path("/tmp/.keras")
    return base / "datasets" / "mnist.npz"


def mnist_missing(data_dir: str | Path | None) -> str:
    """What keeps ``load_mnist(data_dir)`` from loading MNIST without a download, in a few
    words ("" where nothing does): a file ``data_dir`` lacks, or, with no ``data_dir``, that
    there is no earlier download. Looks for the files only: cheap enough to ask often."""
    if not data_dir:
        path = keras_download_path()
        return "" if path.is_file() else f"no MNIST_DATA_DIR, and no earlier download in {path.parent}"
    directory = Path(data_dir)
    if not directory.is_dir():
        return f"MNIST_DATA_DIR {directory} does not exist"
    stems = [stem for images, labels, _ in FILES.values() for stem in (images, labels)]
    absent = [stem for stem in stems if not any((directory / name).is_file() for name in (stem, f"{stem}.gz"))]
    return f"MNIST_DATA_DIR {directory} lacks {', '.join(absent)}" if absent else ""


def load_mnist(data_dir: str | Path | None = None) -> Mnist:
    """MNIST from ``data_dir`` (IDX files, gzipped or not), or from the Keras download."""
    if data_dir:
        directory = Path(data_dir)
        if not directory.is_dir():
            raise MnistDataError(f"MNIST directory {directory} does not exist")
        return Mnist(train=load_split(directory, "train"), test=load_split(directory, "test"))

    import keras

    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()

    def split(images: np.ndarray, labels: np.ndarray) -> Split:
        digest = hashlib.sha256(idx_bytes(images, magic=IMAGES_MAGIC)).hexdigest()
        return Split(images=images, labels=labels, sha256=digest)

    return Mnist(train=split(x_train, y_train), test=split(x_test, y_test))


def idx_bytes(array: np.ndarray, *, magic: int) -> bytes:
    """Serialise a uint8 array as IDX, so hashes match the canonical files."""
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
