"""Retraining: fine-tune a model bundle on a replay of MNIST plus corrected real uploads, write
the candidate's own bundle, and judge it against its parent.

A retrain is a fine-tuning from the parent, not a training: a few thousand MNIST training
digits the parent learnt (``REPLAY_DIGITS``, as many of each digit, drawn with the seed) are
replayed so that it does not forget them, and the corrections (a handful to a few hundred) are
oversampled to a fixed share of that mix and augmented like the rest, for a couple of short
epochs at a small learning rate: minutes on two cores, not the better part of an hour.

The parent's reject option travels with it: its detector is kept and only the thresholds are
chosen again for the candidate, unless staff said some images are not digits; then the
parent's detector is taught those (``ml.fitting.reject.teach_detector``: warm-started, a few steps,
with a replay of what it was fitted on), never fitted anew, so that a retrain does not re-roll
what it refuses.

The candidate is then judged against its parent (``ml.fitting.judging``: the fixed sets) and the
gate decides (``ml.fitting.gate``). How a retrain runs is declared once, in ``RetrainOptions``.

The training digits the parent held out stay out of fine-tuning too: the candidate's
confidence is calibrated on them again, as training calibrated the parent's.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from ml.fitting.choosing import Reading, read_predictions, reading_of
from ml.fitting.data import Mnist, Split
from ml.fitting.evaluation import calibrate_bundle, evaluate_mnist
from ml.fitting.gate import HELD_OUT, CorrectionSplit, Decision, RetrainResult, Scores, judge
from ml.fitting.judging import JudgingPlan, judge_on_sets
from ml.fitting.loop import fit
from ml.fitting.plots import write_bundle_plots
from ml.fitting.reject import has_lessons
from ml.fitting.train import bundle_metadata
from ml.serving.architectures import members_of
from ml.serving.artifacts import ModelBundle, to_model_array
from ml.serving.inference import Predictor
from ml.serving.verdicts import KINDS, OTHER_KINDS

# MNIST training digits replayed beside the corrections (as many of each digit): enough that
# the fine-tuning keeps what the parent learnt, few enough to take a minute on two cores.
REPLAY_DIGITS = 15_000
# Share of each epoch's samples that are corrections (after oversampling): the share a full
# fine-tuning gave them, so each step weighs them as it did. A fifth (tried 2026-12-07) let
# 50 corrections that contradict MNIST cost 1.4 points of MNIST test and make it unsure.
CORRECTION_SHARE = 0.05
FINE_TUNE_LEARNING_RATE = 1.5e-4
FINE_TUNE_BATCH_SIZE = 256
# Calibrating a candidate: its temperature and thresholds on this many of the parent's held-out
# digits (each made three ways: ~40 s for 1,500 on two busy cores; one number is fitted), its
# verdicts measured on this many generated non-digits (~30 ms each to make).
CALIBRATION_DIGITS = 1500
VERDICT_NON_DIGITS = 240
# What a retrain goes through, in order, each announced to ``retrain``'s ``stage`` callback
# (the service adds its own first and last: gathering the corrections, storing the version).
FINE_TUNING, CALIBRATING, JUDGING = "fine-tuning", "calibrating", "judging"
# The kinds "not a digit" can be: staff who say it is not a digit say it is no number either.
_NOT_DIGITS = [KINDS.index(kind) for kind in OTHER_KINDS]


@dataclass(frozen=True)
class FineTuneResult:
    model: object  # keras.Model
    history: dict[str, list[float]]
    seconds: float


def replay_sample(images: np.ndarray, labels: np.ndarray, *, count: int, seed: int) -> np.ndarray:
    """Indices of at most ``count`` of the training digits, as many of each label as there
    are (the rarest may give fewer), drawn with ``seed``: the same replay at every retrain."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    each = count // max(len(classes), 1)
    picks = [rng.permutation(np.flatnonzero(labels == label))[:each] for label in classes]
    return np.sort(np.concatenate(picks or [np.zeros(0, int)]))


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
    batch_size: int = FINE_TUNE_BATCH_SIZE,
    writers: bool = False,
    log: Callable[[str], None] = print,
) -> FineTuneResult:
    """Continue training the model at ``model_path`` on the mix (``mnist_x``: the replayed
    digits), with augmentation and a cosine-decayed small learning rate; an ensemble trains
    every member through the mean of their probabilities. Inputs are float (n, 28, 28, 1) in [0, 1]."""
    keras.utils.set_random_seed(seed)
    model = keras.saving.load_model(ModelBundle.at(model_path).model_path, compile=False)
    x, y = mix_corrections(mnist_x, mnist_y, extra_x, extra_y, seed=seed)
    steps = math.ceil(len(x) / batch_size) * epochs
    model.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(FINE_TUNE_LEARNING_RATE, steps)),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    log(
        f"fine-tuning on {len(mnist_x):,} replayed MNIST images and {len(extra_x)} corrections "
        f"(shown {len(x) - len(mnist_x):,} times an epoch), {epochs} epochs"
    )
    history, seconds = fit(
        model, x, y, epochs=epochs, batch_size=batch_size, augment=True, writers=writers, seed=seed, log=log
    )
    return FineTuneResult(model=model, history=history, seconds=seconds)


# --- A whole retraining run ---------------------------------------------------------------


@dataclass(frozen=True)
class RetrainOptions:
    """How a retrain runs, declared once: the trainer's service fills it from the ``RETRAIN_*``
    settings, tests with their small sizes. ``max_mnist_drop`` and ``force`` are the gate's
    (``ml.fitting.gate.judge``); ``train_limit`` and ``test_limit``: at most this many MNIST
    training digits to replay from and test digits to judge on (None: all); ``judging``: the
    fixed sets both models also read (``ml.fitting.judging``; None: none)."""

    epochs: int
    seed: int
    max_mnist_drop: float
    force: bool = False
    train_limit: int | None = None
    test_limit: int | None = None
    replay_digits: int = REPLAY_DIGITS
    judging: JudgingPlan | None = None


@dataclass(frozen=True)
class Corrections:
    """Staff's corrections as a retrain takes them: the digit ones' examples (``x``, ``y``),
    which of those it trains on and is judged on (``split``), and the inputs staff said are
    not digits (``rejects_x``; None: none)."""

    x: np.ndarray
    y: np.ndarray
    split: CorrectionSplit
    rejects_x: np.ndarray | None = None


def _detector_corrections(
    parent: ModelBundle, digits_x: np.ndarray, rejects_x: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """The detector's lessons from staff: corrected digits are digits; an image that is not a
    digit is of the kind the parent's detector finds likeliest among those that are neither a
    digit nor a number (staff say "not a digit", not whether it is a word or a drawing)."""
    rejects_x = np.zeros((0, *digits_x.shape[1:]), "float32") if rejects_x is None else rejects_x
    kinds = np.full(len(rejects_x), KINDS.index("drawing"), dtype="int32")
    if len(rejects_x) and ModelBundle(parent.directory).detector_path.is_file():
        others = Predictor(parent.directory).kinds(rejects_x)[:, _NOT_DIGITS]
        kinds = np.array(_NOT_DIGITS)[others.argmax(axis=1)]
    return (
        np.concatenate([digits_x, rejects_x]).astype("float32"),
        np.concatenate([np.zeros(len(digits_x), dtype="int32"), kinds.astype("int32")]),
    )


def _scores(
    predictor: Predictor, test: Split, x: np.ndarray, y: np.ndarray, rejects_x: np.ndarray | None
) -> tuple[Scores, dict, Reading]:
    """The gate's figures, the report on MNIST test, and the reading of it the judging reuses."""
    predictions = read_predictions(predictor, test)
    report = evaluate_mnist(predictor, test, predictions=predictions)
    corrections = float((predictor.probabilities(x).argmax(axis=1) == y).mean()) if len(x) else None
    caught = None
    if rejects_x is not None and len(rejects_x) and predictor.detector is not None:
        caught = float(np.mean([p.verdict == "not_a_digit" for p in predictor.predict_arrays(rejects_x)]))
    return (
        Scores(
            mnist_accuracy=report["accuracy"],
            mnist_loss=report["loss"],
            corrections_accuracy=corrections,
            mnist_ece=report["ece"],
            rejects_caught=caught,
        ),
        report,
        reading_of(predictions, test),
    )


def retrain(
    *,
    parent: ModelBundle,
    parent_version: int,
    out: ModelBundle,
    mnist: Mnist,
    corrections: Corrections,
    options: RetrainOptions,
    log: Callable[[str], None] = print,
    stage: Callable[[str], None] = lambda name: None,
) -> RetrainResult:
    """Fine-tune ``parent`` on ``options.replay_digits`` of the MNIST digits it learnt plus the
    corrections it trains on, write the candidate's bundle to ``out`` (model, metadata, plots,
    as training does) and judge it against its parent (``ml.fitting.gate``). The candidate keeps
    the parent's detector with thresholds chosen again; where staff said of images that they
    are not digits (``corrections.rejects_x``), the detector is taught those and the
    corrections trained on (a parent without one gets one fitted). ``stage`` hears each
    stage's name as it begins (``FINE_TUNING``, ``CALIBRATING``, ``JUDGING``)."""
    stage(FINE_TUNING)
    metadata = parent.metadata()
    tuned, replayed = _fine_tuned(parent, mnist, corrections, options, log)
    _save_model(tuned.model, parent=parent, out=out)
    honesty = {}
    if int(metadata.get("holdout", 0)):
        # Calibrated before it is judged: the gate compares the confidence each would serve.
        stage(CALIBRATING)
        honesty = _calibrated(parent, out, mnist, corrections, seed=options.seed, log=log)
    stage(JUDGING)
    decision, report = _judged(parent, out, mnist, corrections, options, log)
    out.write_metadata(
        bundle_metadata(
            architecture=metadata.get("architecture", "unknown"),
            model=tuned.model,
            recipe=_recipe(metadata, tuned, corrections, options, parent_version=parent_version, replayed=replayed),
            mnist=mnist,
            train_count=replayed,
            test_count=report["samples"],
            training_seconds=tuned.seconds,
            test_loss=report["loss"],
            test_accuracy=report["accuracy"],
            matrix=np.array(report["confusion_matrix"]),
            history=tuned.history,
        )
        | honesty
    )
    title = f"{out.directory.name}: fine-tuned from v{parent_version}"
    write_bundle_plots(
        out, history=tuned.history, matrix=report["confusion_matrix"], title=title, name=out.directory.name
    )
    return RetrainResult(bundle=out, decision=decision, split=corrections.split, test_samples=report["samples"])


def _save_model(model: keras.Model, *, parent: ModelBundle, out: ModelBundle) -> None:
    """The candidate's model in ``out``, beside the parent's line reader and how sure its
    numbers are: they read whole numbers apart from the digit model, so the candidate keeps them."""
    out.directory.mkdir(parents=True, exist_ok=True)
    model.save(out.model_path)
    for kept in (parent.line_reader_path, parent.line_reader_metadata_path, parent.sureness_path):
        if kept.is_file():
            shutil.copyfile(kept, out.directory / kept.name)


def _fine_tuned(
    parent: ModelBundle, mnist: Mnist, corrections: Corrections, options: RetrainOptions, log: Callable[[str], None]
) -> tuple[FineTuneResult, int]:
    """The parent fine-tuned on its replay of MNIST, without the digits it held out, plus the
    corrections it trains on; and how many digits were replayed."""
    metadata = parent.metadata()
    learned_images, learned_labels = mnist.training(int(metadata.get("holdout", 0)))
    learned_images, learned_labels = learned_images[: options.train_limit], learned_labels[: options.train_limit]
    replay = replay_sample(learned_images, learned_labels, count=options.replay_digits, seed=options.seed)
    train = corrections.split.train
    tuned = fine_tune(
        model_path=parent.directory,
        mnist_x=to_model_array(learned_images[replay]),
        mnist_y=learned_labels[replay].astype("int32"),
        extra_x=corrections.x[train],
        extra_y=corrections.y[train],
        epochs=options.epochs,
        seed=options.seed,
        # Fine-tuning keeps the parent's augmentation: what it learnt of other writers stays.
        writers=bool(metadata.get("writers")),
        log=log,
    )
    return tuned, len(replay)


def _calibrated(
    parent: ModelBundle,
    out: ModelBundle,
    mnist: Mnist,
    corrections: Corrections,
    *,
    seed: int,
    log: Callable[[str], None],
) -> dict:
    """The candidate's temperature and verdicts fitted again on the parent's held-out digits,
    with the parent's detector kept (taught staff's lessons, where there are any); its
    metadata's ``calibration`` and ``verdict``."""
    metadata = parent.metadata()
    holdout = int(metadata["holdout"])
    keep = parent.detector_path.is_file() and "verdict" in metadata
    if keep:
        shutil.copyfile(parent.detector_path, out.detector_path)
    out.write_metadata({"holdout": holdout, "seed": seed} | ({"verdict": metadata["verdict"]} if keep else {}))
    lessons = _detector_corrections(parent, corrections.x[corrections.split.train], corrections.rejects_x)
    calibrate_bundle(
        out.directory,
        mnist,
        holdout=holdout,
        seed=seed,
        detector_digits=int(metadata.get("detector_digits", 0)),
        detector_extra=lessons if not keep or has_lessons(lessons) else None,
        keep_detector=keep,
        calibration_digits=CALIBRATION_DIGITS,
        non_digits=VERDICT_NON_DIGITS,
        log=log,
    )
    return {key: out.metadata()[key] for key in ("calibration", "verdict") if key in out.metadata()}


def _judged(
    parent: ModelBundle,
    out: ModelBundle,
    mnist: Mnist,
    corrections: Corrections,
    options: RetrainOptions,
    log: Callable[[str], None],
) -> tuple[Decision, dict]:
    """The candidate and its parent read MNIST test (the first ``test_limit`` digits), the
    corrections judged on, staff's non-digits and the judging sets; the gate's decision, and
    the candidate's report on MNIST test."""
    test = Split(
        images=mnist.test.images[: options.test_limit],
        labels=mnist.test.labels[: options.test_limit],
        sha256=mnist.test.sha256,
    )
    split, rejects_x = corrections.split, corrections.rejects_x
    judged_x, judged_y = corrections.x[split.judged], corrections.y[split.judged]
    parent_reader, candidate_reader = Predictor(parent.directory), Predictor(out.directory)
    parent_scores, _, parent_mnist = _scores(parent_reader, test, judged_x, judged_y, rejects_x)
    candidate_scores, report, candidate_mnist = _scores(candidate_reader, test, judged_x, judged_y, rejects_x)
    sets = ()
    if options.judging is not None:
        log("judging: building the judging sets")
        sets = judge_on_sets(
            parent_reader, candidate_reader, options.judging.sets(test), mnist=(parent_mnist, candidate_mnist), log=log
        )
    decision = judge(
        parent=parent_scores,
        candidate=candidate_scores,
        max_mnist_drop=options.max_mnist_drop,
        force=options.force,
        sets=sets,
        unseen=split.kind == HELD_OUT,
    )
    return decision, report


def _recipe(
    metadata: dict,
    tuned: FineTuneResult,
    corrections: Corrections,
    options: RetrainOptions,
    *,
    parent_version: int,
    replayed: int,
) -> dict:
    """How the candidate was made, for its metadata: the fine-tuning's settings, its parent
    (``metadata``: the parent's) and what it learnt from."""
    holdout = int(metadata.get("holdout", 0))
    return {
        "epochs": options.epochs,
        "batch_size": FINE_TUNE_BATCH_SIZE,
        "learning_rate": FINE_TUNE_LEARNING_RATE,
        "schedule": "cosine",
        "augment": True,
        "writers": bool(metadata.get("writers")),
        "members": max(len(members_of(tuned.model)), 1),
        "seed": options.seed,
        "holdout": holdout,
        **({"detector_digits": int(metadata.get("detector_digits", 0))} if holdout else {}),
        "parent_version": parent_version,
        "corrections": len(corrections.split.trained),
        "correction_examples": len(corrections.split.train),
        "correction_share": CORRECTION_SHARE,
        "replay_digits": replayed,
    }
