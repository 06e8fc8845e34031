"""The reject option: is this one handwritten digit at all, and if not, what does it look like?

The digit model answers every input with a digit; its confidence, even calibrated, says how
sure it is *which* digit, not whether there is one: it reads an "A" as a 4 at 100%. A second,
small network (the detector) tells digits from what people upload instead: text (letters,
words, symbols), drawings, scribbles, numbers of several digits and photos of things. It is
trained on MNIST digits, the same digits as realistic uploads and in other writers' styles,
against ``ml.fitting.negatives``' families; its answer for the kind names the reason a person is
shown.

Fitting only: the detector, its data and the thresholds; ``ml.serving.verdicts`` applies them when
serving (see there for what each verdict means). Both thresholds are chosen on the model's
held-out training digits (never on the test set): ``reject_below`` is one half (the detector
finds "not a digit" likelier), lowered where that would lose more than 1 - ``KEEP_DIGITS`` of
them; ``unsure_below`` is the lowest confidence at which the digits answered are right
``TARGET_ACCURACY`` of the time.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from ml.fitting.augment import form_scan
from ml.fitting.calibration import held_out_inputs, model_inputs
from ml.fitting.loop import fit
from ml.fitting.negatives import FAMILIES, negative_set
from ml.serving.artifacts import INPUT_SHAPE, to_model_array
from ml.serving.verdicts import KINDS, shares, verdicts

FAMILY_KIND = {
    "printed": "text",
    "drawn": "text",
    "written": "text",
    "crossed": "scribble",
    "shapes": "drawing",
    "scribble": "scribble",
    "number": "number",
    "photo": "photo",
}
# Share of genuine held-out digits the reject threshold keeps, and the accuracy a "digit"
# verdict should reach on them: the product's promise, 99.7%. The held-out digits pool MNIST's
# own, realistic uploads and other writers' styles, so the line is set on harder digits than
# most uploads are; a margin above 99.7% (99.8% until 2026-11-27) cost 1.4 points of realistic
# uploads answered (96.2 -> 94.8%) for 0.15 points of accuracy that were already above it.
KEEP_DIGITS = 0.99
TARGET_ACCURACY = 0.997


def build_detector() -> keras.Model:
    """A small CNN, a few percent of the digit model's cost: one softmax over ``KINDS``."""
    return keras.Sequential(
        [
            keras.Input(shape=INPUT_SHAPE),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dropout(0.3),
            layers.Dense(len(KINDS), activation="softmax"),
        ],
        name="reject",
    )


def detector_data(
    learned: tuple[np.ndarray, np.ndarray], *, count: int, seed: int, log: Callable[[str], None] = print
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and kind indices to train the detector: ``count`` digits of each of three kinds
    (MNIST as it is, realistic uploads, other styles) made from the ``learned`` training digits
    (never the held-out ones), and as many non-digits, spread over ``ml.fitting.negatives``' families."""

    images, labels = learned
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(images), size=min(count, len(images)), replace=False)
    log(
        f"detector data: {len(picks):,} digits three ways, {len(picks) // 2:,} as form scans, "
        f"and {3 * len(picks):,} non-digits"
    )
    digits = held_out_inputs(images[picks], labels[picks], seed=seed)
    # Digits as box-filling form scanners store them (``ml.fitting.augment``): thick bars and blocks
    # that the model reads (a 1 as wide as it is tall) and that no other kind shows; without
    # them the detector took 2-3% of real bold 1s for photos of things.
    tf.random.set_seed(seed)
    scanned = np.asarray(form_scan(to_model_array(images[picks[: len(picks) // 2]])))
    positives = np.concatenate([*(arrays for arrays, _ in digits.values()), scanned])
    uploads = negative_set(images, count=3 * len(picks), seed=seed + 1)
    negatives, read = model_inputs(uploads)
    kinds = np.array([KINDS.index(FAMILY_KIND[upload.scenario]) for upload in uploads])[read]
    x = np.concatenate([positives, negatives]).astype("float32")
    y = np.concatenate([np.zeros(len(positives), dtype="int32"), kinds.astype("int32")])
    return x, y


def train_detector(
    x: np.ndarray, y: np.ndarray, *, epochs: int, seed: int, log: Callable[[str], None] = print
) -> tuple[keras.Model, dict]:
    """Fit the detector, digits and non-digits weighted alike whatever their numbers."""
    keras.utils.set_random_seed(seed)
    model = build_detector()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history, seconds = fit(model, x, y, epochs=epochs, batch_size=128, augment=True, seed=seed, log=log)
    return model, {"history": history, "training_seconds": round(seconds, 1), "samples": len(x)}


def choose_thresholds(digit_share: np.ndarray, confidence: np.ndarray, correct: np.ndarray) -> dict:
    """Thresholds from held-out genuine digits: the detector's ``digit_share`` for each, the
    calibrated ``confidence`` and whether the digit model was right."""
    # Reject what the detector finds more likely not a digit, unless that loses more than
    # 1 - KEEP_DIGITS of the genuine digits: then only as many as that.
    reject_below = min(0.5, float(np.quantile(digit_share, 1 - KEEP_DIGITS)))
    kept = digit_share >= reject_below
    order = np.argsort(-confidence[kept])
    right = np.cumsum(correct[kept][order]) / np.arange(1, kept.sum() + 1)
    # The lowest confidence such that every answer at or above it is right often enough.
    ok = np.flatnonzero(right >= TARGET_ACCURACY)
    last = ok[-1] if len(ok) else 0
    unsure_below = float(confidence[kept][order][last])
    return {"reject_below": reject_below, "unsure_below": unsure_below}


# Detector training: digits of each of three kinds made from this many learned training digits,
# and three times as many non-digits; a few epochs of a small CNN (about a minute on 2 cores).
DETECTOR_DIGITS = 4000
DETECTOR_EPOCHS = 8
# Share of the detector's training samples that are staff corrections (after oversampling).
EXTRA_SHARE = 0.05


def _fitted_detector(
    mnist, *, holdout: int, seed: int, digits: int, epochs: int, extra, log
) -> tuple[keras.Model, dict]:
    x, y = detector_data(mnist.training(holdout), count=digits, seed=seed, log=log)
    if extra is not None and len(extra[0]):
        # Staff corrections (inputs, kinds): few, so shown as a fixed share of every epoch.
        wanted = max(len(extra[0]), int(len(x) * EXTRA_SHARE))
        picks = np.random.default_rng(seed).choice(len(extra[0]), size=wanted, replace=wanted > len(extra[0]))
        x = np.concatenate([x, extra[0][picks].astype("float32")])
        y = np.concatenate([y, extra[1][picks].astype("int32")])
        log(f"detector data: {len(extra[0])} staff corrections, shown {wanted:,} times an epoch")
    return train_detector(x, y, epochs=epochs, seed=seed, log=log)


# Teaching a kept detector staff's "not a digit" lessons (a retrain): warm-started from its
# weights, a few epochs at its own learning rate over the lessons and a replay of what it was
# fitted on, made from this many learned digits; the lessons are this share of each epoch.
TEACH_REPLAY_DIGITS = 200
TEACH_EPOCHS = 5
TEACH_LEARNING_RATE = 1e-3
TEACH_EXTRA_SHARE = 0.2


def has_lessons(extra: tuple[np.ndarray, np.ndarray] | None) -> bool:
    """Whether staff corrections (inputs, kinds) say of any image that it is not a digit."""
    return extra is not None and bool((np.asarray(extra[1]) > 0).any())


def teach_detector(
    detector: keras.Model,
    mnist,
    extra: tuple[np.ndarray, np.ndarray],
    *,
    holdout: int,
    seed: int,
    replay_digits: int = TEACH_REPLAY_DIGITS,
    epochs: int = TEACH_EPOCHS,
    log: Callable[[str], None] = print,
) -> dict:
    """Teach ``detector`` (changed in place) staff's corrections ``extra`` (inputs, kinds): from
    its own weights, ``epochs`` short epochs over the corrections, oversampled to
    ``TEACH_EXTRA_SHARE``, and a replay of its kind of data made from ``replay_digits`` learned
    digits, so that it learns the lessons without forgetting the rest; what was done, for
    the bundle's metadata."""
    keras.utils.set_random_seed(seed)
    x, y = detector_data(mnist.training(holdout), count=replay_digits, seed=seed, log=log)
    wanted = max(len(extra[0]), int(len(x) * TEACH_EXTRA_SHARE / (1 - TEACH_EXTRA_SHARE)))
    # Each kind of lesson gets an equal part of the share: one "not a digit" among forty digit
    # corrections is a lesson too, not a fortieth of one.
    rng = np.random.default_rng(seed)
    lessons = [np.flatnonzero(extra[1] == kind) for kind in np.unique(extra[1])]
    picks = np.concatenate([rng.choice(kind, size=wanted // len(lessons), replace=True) for kind in lessons])
    wanted = len(picks)
    x = np.concatenate([x, extra[0][picks].astype("float32")])
    y = np.concatenate([y, extra[1][picks].astype("int32")])
    log(f"teaching the kept detector {len(extra[0])} staff corrections, shown {wanted:,} times an epoch")
    detector.compile(
        optimizer=keras.optimizers.Adam(TEACH_LEARNING_RATE),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history, seconds = fit(detector, x, y, epochs=epochs, batch_size=128, augment=True, seed=seed, log=log)
    return {
        "corrections": len(extra[0]),
        "replay_samples": len(x) - wanted,
        "epochs": epochs,
        "learning_rate": TEACH_LEARNING_RATE,
        "history": history,
        "training_seconds": round(seconds, 1),
    }


def fit_reject_option(
    predictor,
    mnist,
    held_out: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    holdout: int,
    seed: int,
    digits: int = DETECTOR_DIGITS,
    epochs: int = DETECTOR_EPOCHS,
    extra: tuple[np.ndarray, np.ndarray] | None = None,
    detector: tuple[keras.Model, dict] | None = None,
    non_digits: int | None = None,
    log: Callable[[str], None] = print,
) -> tuple[keras.Model, dict]:
    """Train the detector on learned digits and generated non-digits, choose the thresholds on
    the ``held_out`` digits (kind -> (inputs, labels)) through the calibrated ``predictor``, and
    measure the verdicts on held-out digits and on non-digits made with another seed (numbers
    from held-out digits): what the bundle's metadata records under ``verdict``. With
    ``detector`` (a detector and its record), that detector is kept and only the thresholds
    are chosen again, for this model; where ``extra`` says of some images that they are not
    digits, it is taught them first (``teach_detector``), not fitted anew. ``non_digits``: how
    many non-digits the verdicts are measured on (default: a quarter of ``digits``, at least
    20 a family)."""
    detector, record = _detector_for(
        mnist, detector=detector, extra=extra, holdout=holdout, seed=seed, digits=digits, epochs=epochs, log=log
    )
    arrays = np.concatenate([inputs for inputs, _ in held_out.values()])
    labels = np.concatenate([kind_labels for _, kind_labels in held_out.values()])
    kinds, probabilities, confidence = _judged(detector, predictor, arrays)
    thresholds = choose_thresholds(kinds[:, 0], confidence, probabilities.argmax(axis=1) == labels)
    report = {
        name: _held_out_verdicts(detector, predictor, inputs, kind_labels, thresholds)
        for name, (inputs, kind_labels) in held_out.items()
    }
    images, _ = mnist.held_out(holdout)
    count = non_digits if non_digits is not None else max(len(FAMILIES) * 20, digits // 4)
    by_family = _non_digit_verdicts(detector, predictor, negative_set(images, count=count, seed=seed + 2), thresholds)
    report["non_digits"] = {
        family: {"caught": sum(v != "digit" for v in seen) / len(seen), "samples": len(seen)}
        for family, seen in by_family.items()
    }
    caught = [v != "digit" for seen in by_family.values() for v in seen]
    log(
        f"reject below {thresholds['reject_below']:.3f}, unsure below {thresholds['unsure_below']:.3f}: "
        + ", ".join(f"{name} {100 * report[name]['digit']:.1f}% digit" for name in held_out)
        + f"; non-digits caught {100 * np.mean(caught):.1f}%"
    )
    return detector, thresholds | {"held_out": report, "detector": record}


def _detector_for(
    mnist,
    *,
    detector: tuple[keras.Model, dict] | None,
    extra: tuple[np.ndarray, np.ndarray] | None,
    holdout: int,
    seed: int,
    digits: int,
    epochs: int,
    log: Callable[[str], None],
) -> tuple[keras.Model, dict]:
    """The detector and its record: the one given, kept (taught ``extra``'s lessons first where
    it has any), or else one fitted anew."""
    if detector is None:
        return _fitted_detector(mnist, holdout=holdout, seed=seed, digits=digits, epochs=epochs, extra=extra, log=log)
    detector, record = detector
    if has_lessons(extra):
        record = record | {
            "kept": False,
            "taught": teach_detector(detector, mnist, extra, holdout=holdout, seed=seed, log=log),
        }
    kept = "the detector taught" if has_lessons(extra) else "keeping the detector"
    log(f"{kept}; choosing its thresholds for this model")
    return detector, record


def _judged(detector: keras.Model, predictor, arrays: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The detector's kinds, the digit model's calibrated probabilities and its confidence."""
    kinds = detector.predict(arrays, batch_size=1000, verbose=0)
    probabilities = predictor.probabilities(arrays)
    return kinds, probabilities, probabilities.max(axis=1)


def _held_out_verdicts(
    detector: keras.Model, predictor, inputs: np.ndarray, labels: np.ndarray, thresholds: dict
) -> dict:
    """The verdicts' shares on one kind of held-out digits, and how often a "digit" is right."""
    kinds, probabilities, confidence = _judged(detector, predictor, inputs)
    given = verdicts(kinds[:, 0], kinds, confidence, thresholds)
    answered = np.array([v.verdict == "digit" for v in given])
    right = probabilities.argmax(axis=1) == labels
    return shares(given) | {"digit_accuracy": float(right[answered].mean()) if answered.any() else None}


def _non_digit_verdicts(detector: keras.Model, predictor, uploads: list, thresholds: dict) -> dict[str, list[str]]:
    """Each family's verdicts on generated non-digits, "refused" for those not read at all."""
    inputs, read = model_inputs(uploads)
    kinds, _, confidence = _judged(detector, predictor, inputs)
    given = iter(verdicts(kinds[:, 0], kinds, confidence, thresholds))
    by_family: dict[str, list[str]] = {}
    for upload, was_read in zip(uploads, read, strict=True):
        by_family.setdefault(upload.scenario, []).append(next(given).verdict if was_read else "refused")
    return by_family
