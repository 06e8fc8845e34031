"""The fitting loop every network here is trained with: shuffled, optionally augmented
batches (``ml.fitting.augment``) and a line of progress a quarter epoch, and at least every
``PROGRESS_SECONDS`` (fitting only)."""

from __future__ import annotations

import time
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from ml.fitting.augment import augment_batch

# Between quarter epochs, a progress line at least this often: a quarter of a big epoch on a
# busy machine takes minutes, and a terminal or a status page silent that long looks stuck.
PROGRESS_SECONDS = 5.0


def _dataset(x, y, *, batch_size: int, augment: bool, writers: bool, scanners: bool, seed: int):
    images, labels = tf.constant(x), tf.constant(y)
    # Shuffle indices, not images: a 60,000-image shuffle buffer costs ~40 s an epoch to fill.
    ds = tf.data.Dataset.range(len(x)).shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda idx: (tf.gather(images, idx), tf.gather(labels, idx)))
    if augment:
        ds = ds.map(
            lambda batch, batch_labels: (augment_batch(batch, writers=writers, scanners=scanners), batch_labels),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return ds.prefetch(tf.data.AUTOTUNE)


def _progress_callback(log: Callable[[str], None], epochs: int):
    class Progress(keras.callbacks.Callback):
        """One line a quarter epoch (and every ``PROGRESS_SECONDS`` between) and a summary per
        epoch, for logs as well as terminals."""

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            self.started = self.said = time.monotonic()

        def on_train_batch_end(self, batch, logs=None):
            steps = self.params.get("steps") or 0
            quarter = max(steps // 4, 1)
            now = time.monotonic()
            due = (batch + 1) % quarter == 0 or now - self.said >= PROGRESS_SECONDS
            if steps and due and batch + 1 < steps:
                self.said = now
                done = (batch + 1) / steps
                log(
                    f"  epoch {self.epoch + 1}/{epochs} {done:4.0%}  "
                    f"loss {logs['loss']:.4f}  acc {logs['accuracy']:.4f}  "
                    f"{now - self.started:.0f}s"
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
    with ``writers``, the last ``clean_epochs`` epochs go without the writer augmentation (the
    box-filling form scans stay through them).

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
            _dataset(x, y, batch_size=batch_size, augment=augment, writers=writer_phase, scanners=writers, seed=seed),
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


# Distillation (Hinton et al. 2015): the student learns the teacher's probabilities softened by
# DISTIL_TEMPERATURE beside the labels, DISTIL_WEIGHT of the loss on the teacher's side; the
# teacher (an ensemble, too costly to serve) reads each augmented batch as the student sees it.
DISTIL_TEMPERATURE = 2.0
DISTIL_WEIGHT = 0.7


class Distiller(keras.Model):
    """Trains ``student`` on labels and on a frozen ``teacher``'s softened answers; both take
    and give probabilities (softmax outputs), as every model here does. Save the student."""

    def __init__(self, student: keras.Model, teacher: keras.Model, *, temperature: float, weight: float):
        super().__init__()
        self.student, self.teacher = student, teacher
        self.teacher.trainable = False
        self.temperature, self.weight = temperature, weight

    def call(self, x, training=False):
        return self.student(x, training=training)

    def _softened(self, probabilities):
        logs = keras.ops.log(keras.ops.clip(probabilities, 1e-7, 1.0)) / self.temperature
        return keras.ops.softmax(logs, axis=-1)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        hard = keras.losses.sparse_categorical_crossentropy(y, y_pred)
        taught = self._softened(self.teacher(x, training=False))
        learnt = self._softened(y_pred)
        soft = keras.losses.kl_divergence(taught, learnt) * self.temperature**2
        return keras.ops.mean((1 - self.weight) * hard + self.weight * soft)
