import fcntl
import hashlib
import io
import json
import os
import shutil
import sys
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SHIPPED_MODEL_DIR = REPO / "models" / "deep"
SHARED_MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"
REAL_DIGITS_DIR = REPO.parent / "shared" / "data" / "real-digits"


def unavailable(reason: str) -> NoReturn:
    """Skip a test that needs what this machine lacks; CI must have it, so there it fails."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def mnist_dir() -> Path | None:
    """MNIST_DATA_DIR, else the copy beside the checkout (CI, this workspace), else None: the Keras download."""
    if configured := os.environ.get("MNIST_DATA_DIR"):
        return Path(configured)
    return SHARED_MNIST_DIR if SHARED_MNIST_DIR.is_dir() else None


@pytest.fixture(scope="session")
def mnist():
    from ml.fitting.data import load_mnist

    directory = mnist_dir()
    if directory is not None:
        return load_mnist(directory)
    try:
        return load_mnist(None)
    # Keras reports a failed download as a bare Exception; anything else is a real error.
    except Exception as exc:
        if not str(exc).startswith("URL fetch failure"):
            raise
        unavailable(f"MNIST: no MNIST_DATA_DIR, no {SHARED_MNIST_DIR}, and the Keras download failed ({exc})")


# Trained test models, kept between runs (``trained_once``); ``make clean`` removes them.
TRAINED_CACHE_DIR = REPO / "var" / "test-models"
# What a trained model is made of besides its configuration and MNIST: the code under ml/ (tests
# aside) and the libraries that run it.
TRAINING_LIBRARIES = ("keras", "tensorflow-cpu", "tensorflow", "numpy", "opencv-python-headless", "pillow")


def _training_key(config, mnist) -> str:
    from dataclasses import asdict
    from importlib import metadata

    digest = hashlib.sha256()
    for path in sorted((REPO / "ml").rglob("*.py")):
        if "tests" not in path.relative_to(REPO / "ml").parts:
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    versions = {}
    for name in TRAINING_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    described = [asdict(config), mnist.train.sha256, mnist.test.sha256, versions, sys.version_info[:2]]
    digest.update(json.dumps(described, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def trained_once(name: str, config, mnist, *, keep_log: bool = False) -> Path:
    """The bundle ``train_model`` makes of ``config``, trained once per code, data and libraries
    and kept in ``TRAINED_CACHE_DIR``: one training for every process of a run (pytest-xdist's
    included) and for the runs after, until ml/ changes. With ``keep_log`` its training log is
    ``TRAINING_LOG`` in the bundle. Tests read it, never change it."""
    from ml.fitting.train import train_model

    out = TRAINED_CACHE_DIR / f"{name}-{_training_key(config, mnist)}"
    TRAINED_CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(TRAINED_CACHE_DIR / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other processes wait for the one that trains
        if not out.is_dir():
            partial = out.with_name(f"{out.name}.{os.getpid()}.partial")
            shutil.rmtree(partial, ignore_errors=True)
            lines: list[str] = []
            train_model(mnist=mnist, config=config, out_dir=partial, log=lines.append)
            if keep_log:
                (partial / TRAINING_LOG).write_text("\n".join(lines))
            shutil.rmtree(out, ignore_errors=True)
            partial.rename(out)  # whole or not at all
            for stale in TRAINED_CACHE_DIR.glob(f"{name}-*"):
                if stale != out:
                    shutil.rmtree(stale, ignore_errors=True)
    return out


# The training log of a bundle made by ``trained_once``, kept beside it.
TRAINING_LOG = "training.log"


@pytest.fixture(scope="session")
def tiny_model_dir(mnist):
    """A small model trained for seconds: enough to test the plumbing, not accuracy."""
    from ml.fitting.train import TrainConfig

    return trained_once("tiny", TrainConfig.for_arch("basic", epochs=1, train_limit=3000, test_limit=500), mnist)


@pytest.fixture(scope="session")
def tiny_rejecting_model_dir(mnist):
    """A small model with a reject option, trained for seconds: 300 training digits held out
    to calibrate it and choose its thresholds on, a detector fitted on 150 digits and the
    non-digit families. Enough to test verdicts and what teaches the detector, not accuracy.
    Its training log is ``TRAINING_LOG`` in the bundle. Tests read it, never change it."""
    from ml.fitting.train import TrainConfig

    config = TrainConfig.for_arch("basic", epochs=1, train_limit=3000, holdout=300, detector_digits=150, test_limit=500)
    return trained_once("tiny-rejecting", config, mnist, keep_log=True)


@pytest.fixture(scope="session")
def shipped_predictor():
    from ml.serving.inference import Predictor

    return Predictor(SHIPPED_MODEL_DIR)


@pytest.fixture
def without_line_reader(shipped_predictor):
    """Switch the shipped predictor's line reader off (``use(False)``) and on again, for the
    length of a test: what the segmenter's cuts read alone."""
    line_reader = shipped_predictor.line_reader
    assert line_reader is not None, "the shipped bundle has a line reader (lines.keras)"

    def use(on: bool) -> None:
        shipped_predictor.line_reader = line_reader if on else None

    yield use
    shipped_predictor.line_reader = line_reader


def encode(array: np.ndarray, fmt: str = "PNG", mode: str | None = None, **save_args) -> bytes:
    image = Image.fromarray(array.astype(np.uint8), mode) if mode else Image.fromarray(array.astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_args)
    return buffer.getvalue()


def upscale(digit: np.ndarray, side: int) -> np.ndarray:
    return np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC))


def swapped(source, out, first: int = 1, second: int = 7):
    """A copy of the bundle at ``source`` whose model reads every ``first`` as ``second`` and
    back: its output layer's two columns swapped. A deliberately harmed candidate."""
    import keras

    from ml.serving.artifacts import ModelBundle

    shutil.copytree(source, out)
    bundle = ModelBundle(out)
    model = keras.saving.load_model(bundle.model_path, compile=False)
    kernel, bias = model.layers[-1].get_weights()
    order = np.arange(kernel.shape[-1])
    order[[first, second]] = order[[second, first]]
    model.layers[-1].set_weights([kernel[:, order], bias[order]])
    model.save(bundle.model_path)
    return out
