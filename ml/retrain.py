"""Fine-tuning a trained model on MNIST plus corrected real uploads.

Corrections are few (a handful to a few hundred) against 60,000 MNIST digits, so they are
oversampled to a fixed share of every epoch and augmented like the rest, which makes a
handful of them matter without letting the model forget MNIST.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml.inference import resolve_model_path
from ml.train import fit

# Share of each epoch's samples that are corrections (after oversampling).
CORRECTION_SHARE = 0.05
FINE_TUNE_LEARNING_RATE = 3e-4


@dataclass(frozen=True)
class FineTuneResult:
    model: object  # keras.Model
    history: dict[str, list[float]]
    seconds: float


def mix_corrections(
    mnist_x: np.ndarray, mnist_y: np.ndarray, extra_x: np.ndarray, extra_y: np.ndarray, *, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """MNIST plus the corrections repeated until they are ``CORRECTION_SHARE`` of the mix."""
    if len(extra_x) == 0:
        return mnist_x, mnist_y
    wanted = max(len(extra_x), int(len(mnist_x) * CORRECTION_SHARE / (1 - CORRECTION_SHARE)))
    picks = np.random.default_rng(seed).choice(len(extra_x), size=wanted, replace=wanted > len(extra_x))
    return (
        np.concatenate([mnist_x, extra_x[picks]]).astype("float32"),
        np.concatenate([mnist_y, extra_y[picks]]).astype("int32"),
    )


def fine_tune(
    *,
    model_path: str | Path,
    mnist_x: np.ndarray,
    mnist_y: np.ndarray,
    extra_x: np.ndarray,
    extra_y: np.ndarray,
    epochs: int,
    seed: int = 42,
    batch_size: int = 256,
    log: Callable[[str], None] = print,
) -> FineTuneResult:
    """Continue training the model at ``model_path`` on the mix, with augmentation and a
    cosine-decayed small learning rate. Inputs are float (n, 28, 28, 1) in [0, 1]."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.saving.load_model(resolve_model_path(model_path), compile=False)
    x, y = mix_corrections(mnist_x, mnist_y, extra_x, extra_y, seed=seed)
    steps = math.ceil(len(x) / batch_size) * epochs
    model.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(FINE_TUNE_LEARNING_RATE, steps)),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    log(
        f"fine-tuning on {len(mnist_x):,} MNIST images and {len(extra_x)} corrections "
        f"(shown {len(x) - len(mnist_x):,} times an epoch), {epochs} epochs"
    )
    history, seconds = fit(model, x, y, epochs=epochs, batch_size=batch_size, augment=True, seed=seed, log=log)
    return FineTuneResult(model=model, history=history, seconds=seconds)
