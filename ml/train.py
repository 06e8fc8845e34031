"""Training: recipes per architecture, augmentation that mirrors real uploads, metrics, plots.

``train_model`` writes a model bundle (``ml.artifacts.ModelBundle``): the model, its
metadata (see ``bundle_metadata``), training curves and the MNIST test confusion matrix.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw

from ml.architectures import build, ensemble
from ml.artifacts import INPUT_SIDE, ModelBundle, confusion_matrix, to_model_array
from ml.data import Mnist
from ml.evaluation import calibrate_bundle
from ml.reject import DETECTOR_DIGITS


@dataclass(frozen=True)
class Recipe:
    """How one architecture is trained by default."""

    epochs: int
    batch_size: int
    learning_rate: float
    augment: bool
    schedule: str  # "constant" or "cosine" (one warm-up epoch, then cosine decay)
    # Also the ways other writers and scanners differ from MNIST's (``writer_variants`` and
    # ``augment_batch``): elastic distortion, low resolution, flagged 1s and crossed 7s.
    writers: bool = False
    # More than one: that many models, seeds ``seed``, ``seed + 1``, ..., served as their mean.
    members: int = 1
    # The last N epochs without the writer augmentation (the writer variants stay in the data):
    # the cosine tail's small steps fit MNIST's own distribution again.
    clean_epochs: int = 0
    # The last N training images are never trained on: they calibrate the confidence.
    holdout: int = 0


# The first three follow the original study (plain Adam, no augmentation); ``deep`` is ours.
RECIPES = {
    "dense": Recipe(epochs=10, batch_size=128, learning_rate=1e-3, augment=False, schedule="constant"),
    "basic": Recipe(epochs=10, batch_size=128, learning_rate=1e-3, augment=False, schedule="constant"),
    "deeper": Recipe(epochs=15, batch_size=128, learning_rate=1e-3, augment=False, schedule="constant"),
    # models/deep: two members of 16 epochs, each 15-27 minutes on 2 cores as machines vary (30
    # is the budget); the last 5 epochs without the writer augmentation; the last 5,000
    # training images held out.
    "deep": Recipe(
        epochs=16,
        batch_size=256,
        learning_rate=3e-3,
        augment=True,
        schedule="cosine",
        writers=True,
        members=2,
        clean_epochs=5,
        holdout=5000,
    ),
}


@dataclass(frozen=True)
class TrainConfig:
    arch: str
    epochs: int
    batch_size: int
    learning_rate: float
    augment: bool
    schedule: str
    writers: bool = False
    members: int = 1
    clean_epochs: int = 0
    holdout: int = 0
    # With a holdout: the reject option's detector learns from this many training digits.
    detector_digits: int = DETECTOR_DIGITS
    seed: int = 42
    # Train on the first N training images only (tests and quick experiments).
    train_limit: int | None = None
    test_limit: int | None = None

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"the epochs must be at least 1, not {self.epochs}")
        if self.members < 1:
            raise ValueError(f"an ensemble needs at least 1 member, not {self.members}")
        if self.detector_digits < 0:
            raise ValueError(f"the detector's digits cannot be fewer than 0, not {self.detector_digits}")
        if self.holdout < 0:
            raise ValueError(f"the held-out images cannot be fewer than 0, not {self.holdout}")
        if not 0 <= self.clean_epochs <= self.epochs:
            raise ValueError(
                f"the clean epochs must be between 0 and the number of epochs ({self.epochs}), not {self.clean_epochs}"
            )

    @classmethod
    def for_arch(cls, arch: str, **overrides) -> TrainConfig:
        if arch not in RECIPES:
            raise ValueError(f"unknown architecture {arch!r}; choose from {sorted(RECIPES)}")
        given = {k: v for k, v in overrides.items() if v is not None}
        values = asdict(RECIPES[arch]) | given
        if "clean_epochs" not in given:
            # Fewer epochs than the recipe's clean finish (a quick run): all of them clean-finish.
            values["clean_epochs"] = min(values["clean_epochs"], values["epochs"])
        return cls(arch=arch, **values)


@dataclass
class TrainResult:
    out_dir: Path
    test_accuracy: float
    test_loss: float
    training_seconds: float
    metadata: dict = field(repr=False)


# --- Augmentation -------------------------------------------------------------------------
# Real uploads reach the model after ml.preprocessing has cropped, scaled and centred them,
# so what is left to learn is the residue: slight rotation and slant, a scale a little off,
# a pixel or two of shift, and strokes thinner or thicker than MNIST's.

MAX_ROTATION_DEG = 12.0
MAX_SHEAR = 0.2
SCALE_RANGE = (0.85, 1.12)
MAX_SHIFT_PX = 2.5


def _random_affine(images):
    n = tf.shape(images)[0]
    angle = tf.random.uniform([n], -1.0, 1.0) * (MAX_ROTATION_DEG * math.pi / 180.0)
    shear = tf.random.uniform([n], -MAX_SHEAR, MAX_SHEAR)
    scale = tf.random.uniform([n], *SCALE_RANGE)
    shift = tf.random.uniform([n, 2], -MAX_SHIFT_PX, MAX_SHIFT_PX)
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    # Output pixel (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2), about the centre.
    a0, a1 = cos, -sin + shear * cos
    b0, b1 = sin, cos + shear * sin
    c = 13.5
    a2 = c - a0 * c - a1 * c + shift[:, 0]
    b2 = c - b0 * c - b1 * c + shift[:, 1]
    zeros = tf.zeros([n])
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )


def _random_thickness(images):
    n = tf.shape(images)[0]
    thicker = tf.nn.max_pool2d(images, ksize=2, strides=1, padding="SAME")
    much_thicker = tf.nn.max_pool2d(images, ksize=3, strides=1, padding="SAME")
    thinner = -tf.nn.max_pool2d(-images, ksize=2, strides=1, padding="SAME")
    choice = tf.random.uniform([n, 1, 1, 1])
    # Half unchanged; the rest thicker (pens, markers, fingers) or thinner (fine pens).
    return tf.where(
        choice < 0.5,
        images,
        tf.where(choice < 0.7, thicker, tf.where(choice < 0.8, much_thicker, thinner)),
    )


# Elastic distortion (Simard et al. 2003): every pixel moved by a uniform random field smoothed
# with a Gaussian, the wobble of one hand against another; their MNIST values.
ELASTIC_ALPHA = 34.0
ELASTIC_SIGMA = 4.0
ELASTIC_SHARE = 0.5
# Low-resolution scans: the digit through 10-16 pixels and back, blurred and thick.
LOW_RES_SIDES = (10, 16)
LOW_RES_SHARE = 0.15


def _gaussian_kernel(sigma: float) -> np.ndarray:
    offsets = np.arange(-round(3 * sigma), round(3 * sigma) + 1, dtype=np.float32)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def _bilinear(images, rows, cols):
    """Sample (n, h, w, 1) images at fractional (n, h, w) positions; outside is background."""
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]])  # a frame of background to fall on
    top, left = tf.floor(rows), tf.floor(cols)
    down, right = (rows - top)[..., None], (cols - left)[..., None]
    top, left = tf.cast(top, tf.int32), tf.cast(left, tf.int32)

    def at(row, col):
        row = tf.clip_by_value(row + 1, 0, height + 1)
        col = tf.clip_by_value(col + 1, 0, width + 1)
        return tf.gather_nd(padded, tf.stack([row, col], axis=-1), batch_dims=1)

    upper = at(top, left) * (1 - right) + at(top, left + 1) * right
    lower = at(top + 1, left) * (1 - right) + at(top + 1, left + 1) * right
    return upper * (1 - down) + lower * down


def _random_elastic(images):
    shape = tf.shape(images)
    noise = tf.random.uniform(tf.stack([shape[0], shape[1], shape[2], 2]), -1.0, 1.0)
    kernel = _gaussian_kernel(ELASTIC_SIGMA)
    along_rows = tf.constant(np.tile(kernel[None, :, None, None], (1, 1, 2, 1)))
    along_cols = tf.constant(np.tile(kernel[:, None, None, None], (1, 1, 2, 1)))
    smooth = tf.nn.depthwise_conv2d(noise, along_rows, [1, 1, 1, 1], "SAME")
    field = tf.nn.depthwise_conv2d(smooth, along_cols, [1, 1, 1, 1], "SAME") * ELASTIC_ALPHA
    rows, cols = tf.meshgrid(tf.range(shape[1]), tf.range(shape[2]), indexing="ij")
    rows, cols = tf.cast(rows, tf.float32)[None], tf.cast(cols, tf.float32)[None]
    return _bilinear(images, rows + field[..., 0], cols + field[..., 1])


def _some(images, changed, share: float):
    """``changed`` for a random ``share`` of the batch, ``images`` for the rest."""
    pick = tf.random.uniform([tf.shape(images)[0], 1, 1, 1]) < share
    return tf.where(pick, changed, images)


def _random_writer(images):
    # Written out rather than keras.ops.image.elastic_transform, which returns one image for
    # the whole batch inside tf.data (Keras 3.15, batch size unknown when traced).
    images = _some(images, _random_elastic(images), ELASTIC_SHARE)
    side = tf.random.uniform([], *LOW_RES_SIDES, dtype=tf.int32)
    blurred = tf.image.resize(tf.image.resize(images, [side, side], method="area"), tf.shape(images)[1:3])
    return _some(images, blurred, LOW_RES_SHARE)


def augment_batch(images, *, writers: bool = False):
    """Augment a float batch (n, 28, 28, 1) the way real uploads vary (``writers``: and the
    way other writers and scanners do)."""
    if writers:
        images = _random_writer(images)
    images = _random_affine(_random_thickness(images))
    # ml.preprocessing scales every input to a peak of 1; thinned strokes must match that.
    peak = tf.reduce_max(images, axis=[1, 2, 3], keepdims=True)
    return images / tf.maximum(peak, 1e-3)


# Forms MNIST's American writers rarely use: 1 with a long up-stroke, 7 crossed at the middle.
WRITER_VARIANT_SHARE = 0.3  # of the 1s and of the 7s, added as extra training images
_WORK = 4  # drawn at four times the size, then reduced, for anti-aliased strokes


def _with_stroke(digit: np.ndarray, start: tuple[float, float], end: tuple[float, float]) -> np.ndarray:
    big = Image.fromarray(digit).resize((INPUT_SIDE * _WORK, INPUT_SIDE * _WORK), Image.Resampling.BICUBIC)
    mask = np.asarray(big) > 127
    width = max(4, round(2 * mask.sum() / max((mask ^ np.roll(mask, 1, axis=1)).sum(), 1)))
    ImageDraw.Draw(big).line([(start[0] * _WORK, start[1] * _WORK), (end[0] * _WORK, end[1] * _WORK)], 255, width)
    return np.asarray(big.resize((INPUT_SIDE, INPUT_SIDE), Image.Resampling.BOX))


def writer_variants(images: np.ndarray, labels: np.ndarray, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Flagged 1s and crossed 7s made from a share of MNIST's own, as extra training images."""
    rng = np.random.default_rng(seed)
    made, made_labels = [], []
    for label in (1, 7):
        chosen = np.flatnonzero(labels == label)
        for index in rng.choice(chosen, int(len(chosen) * WRITER_VARIANT_SHARE), replace=False):
            digit = images[index]
            rows, cols = np.nonzero(digit > 127)
            if not len(rows):
                continue
            top, height = rows.min(), rows.max() - rows.min()
            if label == 1:
                x, length = cols[rows == top].mean(), height * rng.uniform(0.25, 0.5)
                end = (x - length * rng.uniform(0.6, 1.0), top + length * rng.uniform(0.4, 0.9))
                made.append(_with_stroke(digit, (x, top), end))
            else:
                y = top + height * rng.uniform(0.4, 0.6)
                near = np.abs(rows - y) < 1.5
                x, half = (cols[near].mean() if near.any() else cols.mean()), height * rng.uniform(0.15, 0.3)
                made.append(_with_stroke(digit, (x - half, y), (x + half, y + rng.uniform(-1, 1))))
            made_labels.append(label)
    return np.array(made, dtype=np.uint8).reshape(-1, INPUT_SIDE, INPUT_SIDE), np.array(made_labels, dtype=labels.dtype)


def _dataset(x, y, *, batch_size: int, augment: bool, writers: bool, seed: int):
    images, labels = tf.constant(x), tf.constant(y)
    # Shuffle indices, not images: a 60,000-image shuffle buffer costs ~40 s an epoch to fill.
    ds = tf.data.Dataset.range(len(x)).shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda idx: (tf.gather(images, idx), tf.gather(labels, idx)))
    if augment:
        ds = ds.map(
            lambda batch, batch_labels: (augment_batch(batch, writers=writers), batch_labels),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return ds.prefetch(tf.data.AUTOTUNE)


# --- Progress -----------------------------------------------------------------------------


def _progress_callback(log: Callable[[str], None], epochs: int):
    class Progress(keras.callbacks.Callback):
        """One line a quarter epoch and a summary per epoch, for logs as well as terminals."""

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            self.started = time.monotonic()

        def on_train_batch_end(self, batch, logs=None):
            steps = self.params.get("steps") or 0
            quarter = max(steps // 4, 1)
            if steps and (batch + 1) % quarter == 0 and batch + 1 < steps:
                done = (batch + 1) / steps
                log(
                    f"  epoch {self.epoch + 1}/{epochs} {done:4.0%}  "
                    f"loss {logs['loss']:.4f}  acc {logs['accuracy']:.4f}  "
                    f"{time.monotonic() - self.started:.0f}s"
                )

        def on_epoch_end(self, epoch, logs=None):
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            test = (
                f"test_loss {logs['val_loss']:.4f}  test_acc {logs['val_accuracy']:.4f}  " if "val_loss" in logs else ""
            )
            log(
                f"epoch {epoch + 1}/{epochs}  loss {logs['loss']:.4f}  acc {logs['accuracy']:.4f}  "
                f"{test}lr {lr:.2e}  {time.monotonic() - self.started:.0f}s"
            )

    return Progress()


# --- Training -----------------------------------------------------------------------------


def _optimizer(config: TrainConfig, steps_per_epoch: int):
    if config.schedule == "cosine":
        total = steps_per_epoch * config.epochs
        warmup = min(steps_per_epoch, total // 2)
        learning_rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=config.learning_rate / 10,
            decay_steps=max(total - warmup, 1),
            alpha=1e-3,
            warmup_target=config.learning_rate,
            warmup_steps=warmup,
        )
    else:
        learning_rate = config.learning_rate
    return keras.optimizers.Adam(learning_rate=learning_rate)


def fit(
    model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    augment: bool,
    seed: int,
    log: Callable[[str], None],
    writers: bool = False,
    clean_epochs: int = 0,
    validation_data: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[dict[str, list[float]], float]:
    """Fit a compiled model on shuffled (optionally augmented) batches, logging progress;
    with ``writers``, the last ``clean_epochs`` epochs go without the writer augmentation.

    Returns the history as plain floats and the seconds it took.
    """
    started = time.monotonic()
    clean_from = epochs - clean_epochs if writers else epochs
    history: dict[str, list[float]] = {}
    # The optimizer and its schedule carry on from one phase to the next: they count steps.
    for first, last, writer_phase in ((0, clean_from, writers), (clean_from, epochs, False)):
        if first >= last:
            continue
        phase = model.fit(
            _dataset(x, y, batch_size=batch_size, augment=augment, writers=writer_phase, seed=seed),
            initial_epoch=first,
            epochs=last,
            validation_data=validation_data,
            validation_batch_size=1000,
            callbacks=[_progress_callback(log, epochs)],
            shuffle=False,  # the dataset shuffles itself, seeded
            verbose=0,
        )
        for key, values in phase.history.items():
            history.setdefault(key, []).extend(float(v) for v in values)
    return history, time.monotonic() - started


def train_model(
    *,
    mnist: Mnist,
    config: TrainConfig,
    out_dir: str | Path,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train the model ``config`` describes (an ensemble when it has several members) and write
    its bundle to ``out_dir``; with a holdout, calibrate its confidence on those digits."""
    if config.members > 1:
        result = _train_ensemble(mnist=mnist, config=config, out=Path(out_dir), log=log)
    else:
        result = _train_one(mnist=mnist, config=config, out_dir=out_dir, log=log)
    if config.holdout:
        calibrate_bundle(
            result.out_dir,
            mnist,
            holdout=config.holdout,
            seed=config.seed,
            detector_digits=config.detector_digits,
            log=log,
        )
        result.metadata = ModelBundle(result.out_dir).metadata()
    return result


def _scores(model, x_test: np.ndarray, y_test: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Test accuracy, cross-entropy loss and confusion matrix: one pass, one way for a model
    and an ensemble alike."""
    probabilities = model.predict(x_test, batch_size=1000, verbose=0)
    picked = probabilities[np.arange(len(y_test)), y_test]
    predicted = probabilities.argmax(axis=1)
    loss = float(-np.log(np.clip(picked, 1e-7, 1.0)).mean())
    return float((predicted == y_test).mean()), loss, confusion_matrix(y_test, predicted)


def _recipe(config: TrainConfig) -> dict:
    return {k: v for k, v in asdict(config).items() if k not in ("arch", "test_limit")}


MEMBERS_DIR = "members"


def _train_ensemble(*, mnist: Mnist, config: TrainConfig, out: Path, log: Callable[[str], None]) -> TrainResult:
    """Each member trained on its own (its own seed, model, curves and confusion matrix under
    ``members/seed-N``), then one model that averages them. A member already trained to the
    same recipe and data (by a run that was stopped, or for an ensemble with fewer members) is
    taken as it is. The members' own model files stay for that; the ensemble's file holds all
    their weights, so only it is needed to serve."""
    results = []
    for number in range(1, config.members + 1):
        member = replace(config, members=1, seed=config.seed + number - 1)
        member_out = out / MEMBERS_DIR / f"seed-{member.seed}"
        log(f"ensemble member {number}/{config.members} (seed {member.seed}) -> {member_out}")
        results.append(
            _trained_before(member, member_out, mnist, log)
            or _train_one(mnist=mnist, config=member, out_dir=member_out, log=log)
        )
    model = ensemble(
        [keras.saving.load_model(ModelBundle(result.out_dir).model_path, compile=False) for result in results],
        name=config.arch,
    )
    x_test = to_model_array(mnist.test.images[: config.test_limit])
    y_test = mnist.test.labels[: config.test_limit].astype("int32")
    test_accuracy, test_loss, matrix = _scores(model, x_test, y_test)

    bundle = ModelBundle(out)
    model.save(bundle.model_path)
    training_seconds = sum(result.training_seconds for result in results)
    metadata = bundle_metadata(
        architecture=config.arch,
        model=model,
        recipe=_recipe(config),
        mnist=mnist,
        train_count=results[0].metadata["train_samples"],
        test_count=len(x_test),
        training_seconds=training_seconds,
        test_loss=test_loss,
        test_accuracy=test_accuracy,
        matrix=matrix,
        history={},
    )
    metadata["member_models"] = [
        {key: result.metadata[key] for key in ("seed", "training_seconds", "test_accuracy", "test_loss", "history")}
        | {"path": str(result.out_dir.relative_to(out))}
        for result in results
    ]
    bundle.write_metadata(metadata)
    bundle.write_plots(
        history={f"seed {result.metadata['seed']}": result.metadata["history"] for result in results},
        matrix=matrix,
        title=f"{config.arch} CNN ensemble of {config.members} on MNIST (each member)",
        name=f"{config.arch} ensemble",
    )
    log(
        f"ensemble of {config.members}: test accuracy {test_accuracy:.4%}  test loss {test_loss:.4f}  "
        f"members trained in {training_seconds:.0f}s  -> {out}"
    )
    return TrainResult(
        out_dir=out,
        test_accuracy=test_accuracy,
        test_loss=test_loss,
        training_seconds=training_seconds,
        metadata=metadata,
    )


def _trained_before(config: TrainConfig, out: Path, mnist: Mnist, log: Callable[[str], None]) -> TrainResult | None:
    bundle = ModelBundle(out)
    metadata = bundle.metadata()
    if not bundle.model_path.is_file() or not metadata:
        return None
    # A field the bundle does not record did not exist when it was trained: it had the default.
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    recorded = {key: metadata.get(key, defaults.get(key)) for key in _recipe(config)}
    same = recorded == _recipe(config) and (
        metadata.get("architecture") == config.arch
        and metadata.get("train_data_sha256") == mnist.train.sha256
        and metadata.get("test_samples") == len(mnist.test.images[: config.test_limit])
    )
    if not same:
        return None
    log(f"  trained before to the same recipe: test accuracy {metadata['test_accuracy']:.4%}, kept")
    return TrainResult(
        out_dir=out,
        test_accuracy=metadata["test_accuracy"],
        test_loss=metadata["test_loss"],
        training_seconds=metadata["training_seconds"],
        metadata=metadata,
    )


def _train_one(
    *,
    mnist: Mnist,
    config: TrainConfig,
    out_dir: str | Path,
    log: Callable[[str], None],
) -> TrainResult:
    out = Path(out_dir)
    if out.exists() and (out / MEMBERS_DIR).is_dir():
        shutil.rmtree(out / MEMBERS_DIR)  # an ensemble's leftovers do not describe this model
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)

    train_images, train_labels = mnist.training(config.holdout)
    train_images, train_labels = train_images[: config.train_limit], train_labels[: config.train_limit]
    if config.writers:
        extra_images, extra_labels = writer_variants(train_images, train_labels, seed=config.seed)
        train_images = np.concatenate([train_images, extra_images])
        train_labels = np.concatenate([train_labels, extra_labels])
    x_train = to_model_array(train_images)
    y_train = train_labels.astype("int32")
    x_test = to_model_array(mnist.test.images[: config.test_limit])
    y_test = mnist.test.labels[: config.test_limit].astype("int32")

    model = build(config.arch)
    steps_per_epoch = math.ceil(len(x_train) / config.batch_size)
    model.compile(
        optimizer=_optimizer(config, steps_per_epoch),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    log(
        f"training {config.arch}: {model.count_params():,} parameters, {len(x_train):,} images"
        + (f" ({config.holdout:,} more held out)" if config.holdout else "")
        + ", "
        f"{config.epochs} epochs of {steps_per_epoch} steps, augment={config.augment}"
        + (
            f", the last {config.clean_epochs} without the writer augmentation"
            if config.writers and config.clean_epochs
            else ""
        )
    )
    # The test set is only watched (curves), never used to choose anything during training.
    history, training_seconds = fit(
        model,
        x_train,
        y_train,
        epochs=config.epochs,
        batch_size=config.batch_size,
        augment=config.augment,
        seed=config.seed,
        log=log,
        writers=config.writers,
        clean_epochs=config.clean_epochs,
        validation_data=(x_test, y_test),
    )

    test_accuracy, test_loss, matrix = _scores(model, x_test, y_test)

    bundle = ModelBundle(out)
    model.save(bundle.model_path)
    metadata = bundle_metadata(
        architecture=config.arch,
        model=model,
        recipe=_recipe(config),
        mnist=mnist,
        train_count=len(x_train),
        test_count=len(x_test),
        training_seconds=training_seconds,
        test_loss=test_loss,
        test_accuracy=test_accuracy,
        matrix=matrix,
        history=history,
    )
    bundle.write_metadata(metadata)
    bundle.write_plots(history=history, matrix=matrix, title=f"{config.arch} CNN on MNIST", name=config.arch)
    log(f"test accuracy {test_accuracy:.4%}  test loss {test_loss:.4f}  trained in {training_seconds:.0f}s  -> {out}")
    return TrainResult(
        out_dir=out,
        test_accuracy=test_accuracy,
        test_loss=test_loss,
        training_seconds=training_seconds,
        metadata=metadata,
    )


def bundle_metadata(
    *,
    architecture: str,
    model: keras.Model,
    recipe: dict,
    mnist: Mnist,
    train_count: int,
    test_count: int,
    training_seconds: float,
    test_loss: float,
    test_accuracy: float,
    matrix: np.ndarray,
    history: dict[str, list[float]],
) -> dict:
    """What a bundle's metadata.json records, for training and fine-tuning alike: how it was
    made (``recipe``: epochs, batch size, learning rate, schedule, augmentation, seed, and
    whatever else the run adds), on what data, and how good it is."""
    return {
        "architecture": architecture,
        "parameters": int(model.count_params()),
        **recipe,
        "train_samples": train_count,
        "test_samples": test_count,
        "train_data_sha256": mnist.train.sha256,
        "test_data_sha256": mnist.test.sha256,
        "training_seconds": round(training_seconds, 1),
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        "confusion_matrix": np.asarray(matrix).tolist(),
        "history": history,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
        },
    }
