"""Fitting the line reader (``ml.serving.lines``): whole numbers rendered from MNIST's training digits as
people send them, found and normalised by the serving path itself, read with CTC loss.

Each training line is a rendered upload (``ml.fitting.synth.render_number``: photos, scans, canvas,
screenshots, pencil; plain, ruled and squared paper; askew; digits touching at many rates) read
back through ``ml.serving.segment`` and ``ml.serving.lines.line_input``, exactly as the worker reads it, so the
reader learns the inputs it will meet. Some numbers are written with digits of low resolution
(drawn small, grown back), as form scanners and old photos give them. Never from the digits of
MNIST's test set, nor from any set we judge on.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops
from PIL import Image

from ml.fitting.plots import plot_training_curves
from ml.fitting.synth import NUMBER_SCENARIOS, PAPER_RULINGS, RULED_SCENARIOS, render_number
from ml.serving.lines import BLANK, COLUMNS_PER_STEP, LINE_SHAPE, NUM_CLASSES, decode, line_input
from ml.serving.preprocessing import PreprocessingError
from ml.serving.segment import MAX_DIGITS, page_of, read_whole

# Lengths of the training numbers: 1 to MAX_DIGITS, most of them 2 to 8 as people write them.
LENGTH_WEIGHTS = np.array([2, 6, 6, 6, 6, 5, 5, 4, 4, 2, 1, 1], dtype=float)[:MAX_DIGITS]
LOW_RESOLUTION_SHARE = 0.25
LOW_RESOLUTION_SIDES = (8, 16)  # pixels a digit is drawn in before it is grown back to 28
ASKEW_SHARE = 0.15


@dataclass(frozen=True)
class Lines:
    """Lines for the reader: (n, *LINE_SHAPE) uint8 strips and their digits, padded with -1."""

    strips: np.ndarray
    labels: np.ndarray

    def save(self, path: Path) -> None:
        np.savez_compressed(path, strips=self.strips, labels=self.labels)

    @classmethod
    def load(cls, path: Path) -> Lines:
        with np.load(path) as data:
            return cls(data["strips"], data["labels"])


def _low_resolution(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    side = int(rng.integers(*LOW_RESOLUTION_SIDES, endpoint=True))
    small = Image.fromarray(digit).resize((side, side), Image.Resampling.BOX)
    return np.asarray(small.resize((28, 28), Image.Resampling.BICUBIC))


def render_lines(
    images: np.ndarray, labels: np.ndarray, *, count: int, seed: int, progress: Callable[[int], None] | None = None
) -> Lines:
    """``count`` numbers rendered from ``images`` and read back to strips as the worker reads
    them; a number the serving path refuses (a blank, several lines) is drawn again."""
    rng = np.random.default_rng(seed)
    lengths = np.arange(1, len(LENGTH_WEIGHTS) + 1)
    strips = np.zeros((count, *LINE_SHAPE), dtype=np.uint8)
    padded = np.full((count, MAX_DIGITS), -1, dtype=np.int8)
    made = 0
    while made < count:
        length = int(rng.choice(lengths, p=LENGTH_WEIGHTS / LENGTH_WEIGHTS.sum()))
        picks = rng.choice(len(images), size=length, replace=False)
        digits = images[picks]
        if rng.random() < LOW_RESOLUTION_SHARE:
            digits = np.stack([_low_resolution(digit, rng) for digit in digits])
        scenario = str(rng.choice(NUMBER_SCENARIOS))
        paper = str(rng.choice(PAPER_RULINGS)) if scenario in RULED_SCENARIOS else "plain"
        turn = float(rng.uniform(-30, 30)) if rng.random() < ASKEW_SHARE else 0.0
        number = "".join(str(int(labels[i])) for i in picks)
        touch_rate = float(rng.uniform(0, 0.6))
        upload = render_number(
            digits, scenario=scenario, rng=rng, number=number, touch_rate=touch_rate, paper=paper, turn=turn
        )
        try:
            page = page_of(read_whole(upload.data))
            strip = line_input(page.ink, np.logical_or.reduce(page.groups))
        except PreprocessingError:
            continue
        strips[made] = np.round(strip.array * 255)
        padded[made, :length] = labels[picks]
        made += 1
        if progress and made % 1000 == 0:
            progress(made)
    return Lines(strips, padded)


def build_line_reader() -> keras.Model:
    """A small CNN over the strip (its height folded away, its width halved twice: a step per
    COLUMNS_PER_STEP columns), a bidirectional GRU along the line, a class per step (the ten
    digits and CTC's blank) as logits."""
    height, width = LINE_SHAPE
    inputs = keras.Input(shape=(height, width, 1))
    x = inputs
    for filters, pool in ((16, 2), (32, 2), (64, 1), (64, 1)):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        if pool > 1:
            x = layers.MaxPooling2D(pool)(x)
    steps = width // COLUMNS_PER_STEP
    x = layers.Permute((2, 1, 3))(x)
    x = layers.Reshape((steps, -1))(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.2)(x)
    x = layers.Bidirectional(layers.GRU(64, return_sequences=True))(x)
    outputs = layers.Dense(NUM_CLASSES + 1)(x)
    return keras.Model(inputs, outputs, name="line_reader")


def ctc_loss(y_true, y_pred):
    """CTC loss of logits ``y_pred`` against digits ``y_true`` padded with -1."""
    y_true = ops.cast(y_true, "int32")
    lengths = ops.sum(ops.cast(y_true >= 0, "int32"), axis=1)
    batch, steps = ops.shape(y_pred)[0], ops.shape(y_pred)[1]
    return ops.ctc_loss(
        ops.maximum(y_true, 0), y_pred, lengths, ops.full((batch,), steps, dtype="int32"), mask_index=BLANK
    )


def _shifted(strips: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A little jitter the renderer does not give: a pixel or two up or down, strokes a touch
    fainter or stronger."""
    moved = np.roll(strips, int(rng.integers(-2, 3)), axis=1)
    return np.clip(moved * rng.uniform(0.8, 1.2), 0.0, 1.0)


def exact_share(model: keras.Model, lines: Lines, batch: int = 256) -> float:
    """The share of ``lines`` the reader reads exactly (best path)."""
    right = 0
    for start in range(0, len(lines.strips), batch):
        strips = lines.strips[start : start + batch, ..., None].astype(np.float32) / 255
        probabilities = ops.convert_to_numpy(ops.softmax(model(strips, training=False), axis=-1))
        for p, label in zip(probabilities, lines.labels[start : start + batch], strict=True):
            right += decode(p).digits == tuple(int(d) for d in label if d >= 0)
    return right / len(lines.strips)


def train_line_reader(
    train: Lines, validation: Lines, out: Path, *, epochs: int, seed: int, batch: int = 64, log: Callable = print
) -> dict:
    """Fit the reader on ``train`` and keep the epoch that reads most of ``validation`` exactly;
    writes ``line_reader.keras`` and its metadata to ``out``."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_line_reader()
    steps_per_epoch = int(np.ceil(len(train.strips) / batch))
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, decay_steps=epochs * steps_per_epoch, alpha=0.02)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=ctc_loss)
    out.mkdir(parents=True, exist_ok=True)
    best, history, started = -1.0, [], time.monotonic()
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(train.strips))
        losses = []
        for step in range(steps_per_epoch):
            picked = order[step * batch : (step + 1) * batch]
            strips = _shifted(train.strips[picked].astype(np.float32) / 255, rng)[..., None]
            losses.append(float(model.train_on_batch(strips, train.labels[picked].astype(np.int32))))
            if step % 200 == 0:
                log(f"epoch {epoch}/{epochs} step {step}/{steps_per_epoch} loss {np.mean(losses[-200:]):.3f}")
        exact = exact_share(model, validation)
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "validation_exact": exact})
        log(f"epoch {epoch}/{epochs}: loss {np.mean(losses):.3f}, validation exact {exact:.4f}")
        if exact > best:
            best = exact
            model.save(out / "line_reader.keras")
    # Served, not trained further: saved again without the optimizer's state (a third the size).
    best_model = keras.saving.load_model(out / "line_reader.keras", compile=False)
    best_model.save(out / "line_reader.keras")
    digest = hashlib.sha256(train.strips.tobytes() + train.labels.tobytes()).hexdigest()
    metadata = {
        "architecture": "line_reader (CNN + BiGRU, CTC)",
        "input_shape": list(LINE_SHAPE),
        "epochs": epochs,
        "seed": seed,
        "train_lines": len(train.strips),
        "data_sha256": digest,
        "training_seconds": round(time.monotonic() - started, 1),
        "validation_exact": best,
        "history": history,
    }
    (out / "line_reader.json").write_text(json.dumps(metadata, indent=2))
    plot_line_reader_curves(metadata, out / "line_reader_curves.png")
    return metadata


def plot_line_reader_curves(metadata: dict, path: Path) -> None:
    """The training loss and the validation lines read exactly, per epoch."""
    history = {
        "loss": [epoch["loss"] for epoch in metadata["history"]],
        "val_accuracy": [epoch["validation_exact"] for epoch in metadata["history"]],
    }
    plot_training_curves(history, path, title="Line reader: CTC loss, and validation lines read exactly")


# Training lines come from MNIST's training digits but its last VALIDATION_DIGITS, which draw
# the lines that choose the epoch kept.
VALIDATION_DIGITS = 5000


def _render_part(args: tuple) -> Lines:
    images, labels, count, seed = args
    return render_lines(images, labels, count=count, seed=seed)


def _cached(cache: Path | None, name: str, count: int, seed: int) -> Lines | None:
    path = cache / f"{name}-{seed}-{count}.npz" if cache else None
    return Lines.load(path) if path and path.is_file() else None


def line_reader_fit(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    *,
    out: Path,
    lines: int,
    validation: int,
    epochs: int,
    seed: int,
    workers: int = 1,
    cache: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Render ``lines`` training lines (in ``workers`` processes, part k from seed ``seed + k``,
    k = 1..workers) and ``validation`` lines (seed ``seed + workers + 1``) from MNIST's
    training digits, kept in ``cache`` for the next run, and fit the reader on them."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    fitting, held = slice(0, len(train_images) - VALIDATION_DIGITS), slice(len(train_images) - VALIDATION_DIGITS, None)
    per_part = int(np.ceil(lines / workers))
    jobs = [("train", train_images[fitting], train_labels[fitting], per_part, seed + k) for k in range(1, workers + 1)]
    jobs.append(("validation", train_images[held], train_labels[held], validation, seed + workers + 1))
    found = [_cached(cache, name, count, part_seed) for name, _, _, count, part_seed in jobs]
    missing = [job for job, lines_found in zip(jobs, found, strict=True) if lines_found is None]
    if missing:
        log(f"rendering {sum(job[3] for job in missing)} lines in {min(workers, len(missing))} processes ...")
        started = time.monotonic()
        with ProcessPoolExecutor(min(workers, len(missing)), mp_context=get_context("spawn")) as pool:
            made = list(pool.map(_render_part, [job[1:] for job in missing]))
        log(f"rendered in {time.monotonic() - started:.0f} s")
        for job, rendered in zip(missing, made, strict=True):
            if cache:
                cache.mkdir(parents=True, exist_ok=True)
                rendered.save(cache / f"{job[0]}-{job[4]}-{job[3]}.npz")
        made_iter = iter(made)
        found = [lines_found if lines_found is not None else next(made_iter) for lines_found in found]
    parts, held_lines = found[:-1], found[-1]
    train = Lines(np.concatenate([p.strips for p in parts]), np.concatenate([p.labels for p in parts]))
    log(f"{len(train.strips)} training lines, {len(held_lines.strips)} validation lines")
    return train_line_reader(train, held_lines, out, epochs=epochs, seed=seed, log=log)
