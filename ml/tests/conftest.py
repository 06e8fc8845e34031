import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SHIPPED_MODEL_DIR = REPO / "models" / "deep"


def mnist_dir() -> Path:
    return Path(os.environ.get("MNIST_DATA_DIR") or REPO.parent / "shared" / "data" / "mnist")


@pytest.fixture(scope="session")
def mnist():
    from ml.data import load_mnist

    return load_mnist(mnist_dir())


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, mnist):
    """A small model trained for seconds: enough to test the plumbing, not accuracy."""
    from ml.train import TrainConfig, train_model

    out = tmp_path_factory.mktemp("tiny-model")
    config = TrainConfig.for_arch("basic", epochs=1, train_limit=3000, test_limit=500)
    train_model(mnist=mnist, config=config, out_dir=out, log=lambda line: None)
    return out


@pytest.fixture(scope="session")
def shipped_predictor():
    from ml.inference import Predictor

    return Predictor(SHIPPED_MODEL_DIR)


def encode(array: np.ndarray, fmt: str = "PNG", mode: str | None = None, **save_args) -> bytes:
    image = Image.fromarray(array.astype(np.uint8), mode) if mode else Image.fromarray(array.astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_args)
    return buffer.getvalue()


def upscale(digit: np.ndarray, side: int) -> np.ndarray:
    return np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC))
