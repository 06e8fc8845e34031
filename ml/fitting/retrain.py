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

The gate (``judge``) is a plain function: a candidate is promoted when it reads none of the
fixed judging sets worse than the active version beyond that set's noise (``ml.fitting.judging``), loses
at most ``max_mnist_drop`` of MNIST test accuracy, its calibration error on MNIST test grows by
at most ``MAX_ECE_RISE``, it is better on the corrections it is judged on, and those were held
out: with too few corrections to keep a fifth apart, a candidate is stored, never promoted on
its own.

The training digits the parent held out stay out of fine-tuning too: the candidate's
confidence is calibrated on them again, as training calibrated the parent's.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from ml.fitting.choosing import Reading, read_predictions, reading_of
from ml.fitting.data import Mnist, Split
from ml.fitting.evaluation import calibrate_bundle, evaluate_mnist
from ml.fitting.judging import JudgingPlan, SetRow, judge_on_sets
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
# How much worse a candidate's calibration error on MNIST test may be (0.5 points).
MAX_ECE_RISE = 0.005
HELD_OUT = "held-out"
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


# --- The gate ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scores:
    mnist_accuracy: float
    mnist_loss: float
    corrections_accuracy: float | None  # None: no corrections to judge on
    mnist_ece: float = 0.0  # expected calibration error of the confidence served
    rejects_caught: float | None = None  # share of staff's "not a digit" images it says so of


@dataclass(frozen=True)
class Decision:
    parent: Scores
    candidate: Scores
    promoted: bool
    reason: str
    sets: tuple[SetRow, ...] = ()  # the fixed judging sets, each compared (``ml.fitting.judging``)

    @property
    def worse_on(self) -> tuple[SetRow, ...]:
        return tuple(row for row in self.sets if row.worse)


def judge(
    *,
    parent: Scores,
    candidate: Scores,
    max_mnist_drop: float,
    force: bool = False,
    sets: Sequence[SetRow] = (),
    unseen: bool = True,
) -> Decision:
    """Promote a candidate that reads none of the judging ``sets`` worse than its parent beyond
    the set's noise, is no worse on MNIST than its parent (within ``max_mnist_drop``), as
    honest about its confidence, and better at what staff corrected: better on at least one
    of the digit corrections and the images staff said are not digits, and worse on neither;
    and only where the corrections it is judged on are ``unseen`` (held out), else it shows
    only that it learnt them. ``force`` promotes it anyway, saying what it failed."""
    worse = [row for row in sets if row.worse]
    mnist_ok = candidate.mnist_accuracy >= parent.mnist_accuracy - max_mnist_drop
    ece_ok = candidate.mnist_ece <= parent.mnist_ece + MAX_ECE_RISE
    judged = [
        (name, old, new)
        for name, old, new in (
            ("the corrections", parent.corrections_accuracy, candidate.corrections_accuracy),
            ("the images staff said are not digits", parent.rejects_caught, candidate.rejects_caught),
        )
        if old is not None
    ]
    learnt_ok = not judged or (
        all(new is not None and new >= old for _, old, new in judged)
        and any(new is not None and new > old for _, old, new in judged)
    )
    passed = not worse and mnist_ok and ece_ok and learnt_ok and unseen
    if passed:
        reason = "better on the corrections, within the MNIST tolerance and as honest about its confidence"
        if sets:
            reason += ", and no judging set reads worse"
    elif worse:
        reason = "it reads " + "; ".join(row.describe() for row in worse)
    elif not mnist_ok:
        reason = (
            f"its MNIST test accuracy {candidate.mnist_accuracy:.2%} is below the active model's "
            f"{parent.mnist_accuracy:.2%} minus the {100 * max_mnist_drop:.2f}-point tolerance"
        )
    elif not ece_ok:
        reason = (
            f"its calibration error on MNIST test {100 * candidate.mnist_ece:.2f}% is more than "
            f"{100 * MAX_ECE_RISE:.1f} points above the active model's {100 * parent.mnist_ece:.2f}%"
        )
    elif not learnt_ok:
        reason = "not better on " + " nor on ".join(
            f"{name} ({_share(new)} vs {_share(old)})" for name, old, new in judged
        )
    else:
        reason = "too few corrections to hold any out: it was judged only on what it trained on"
    if force and not passed:
        reason = f"forced, although {reason}"
    return Decision(parent=parent, candidate=candidate, promoted=force or passed, reason=reason, sets=tuple(sets))


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def gate_caveat(decision: Decision, split: CorrectionSplit, *, min_for_holdout: int, parent: str) -> str:
    """What the comparison on staff's corrections can and cannot show where they are too few
    to hold any out, why the candidate was then stored and not promoted, and how many more
    corrections it takes; "" where a fifth was held out."""
    if len(split.judged) and split.kind == HELD_OUT:
        return ""
    count = len(split.trained)
    stored = (
        f"Below {min_for_holdout} digit corrections a candidate is stored, never promoted on its own: with "
        f"{min_for_holdout - count} more, a fifth is held out and it is judged on images it never saw. "
        "Staff may still activate it."
    )
    if count == 0:
        said = "There were no digit corrections to judge on"
        if decision.parent.rejects_caught is not None:
            said += ", only the images staff said are not digits, which it also trained on"
        said += ": beyond those, the gate could only check that it reads the judging sets no worse."
        return said if decision.promoted else f"{said} {stored}"
    parts = [
        f"With {count} digit correction{'s' if count != 1 else ''}, fewer than the {min_for_holdout} it takes to "
        "hold a fifth out, the candidate was judged on the same corrections it trained on: that shows it learnt "
        "them, not that it reads new images better."
    ]
    if not decision.promoted:
        if decision.parent.corrections_accuracy == 1.0:
            parts.append(f"{parent} already read every one of them right, so no candidate could be better there.")
        parts.append(stored)
    return " ".join(parts)


@dataclass(frozen=True)
class CorrectionSplit:
    """Which corrections the candidate trains on and which it is judged on."""

    train: np.ndarray  # indices of the examples (rows of the corrections' arrays)
    judged: np.ndarray
    kind: str  # "held-out", or "all (too few to hold out)"
    trained: np.ndarray  # indices of the corrections whose examples are ``train``


def split_corrections(
    count: int, *, seed: int, min_for_holdout: int, sizes: Sequence[int] | None = None
) -> CorrectionSplit:
    """With enough corrections a fifth is held out, so that "better on the corrections" is
    measured on images the candidate never saw; with few, all are used for both.

    ``sizes``: how many examples each correction gives, one after another (a number's
    digits; one each by default). A correction goes whole to one side: the candidate is never
    judged on a digit of a number it was trained on."""
    order = np.random.default_rng(seed).permutation(count)
    held = order[: count // 5] if count >= min_for_holdout else order[:0]
    sizes = np.ones(count, dtype=int) if sizes is None else np.asarray(sizes, dtype=int)
    starts = np.cumsum(sizes) - sizes

    def rows(corrections: np.ndarray) -> np.ndarray:
        return np.concatenate([np.arange(starts[c], starts[c] + sizes[c]) for c in corrections] or [np.zeros(0, int)])

    if len(held):
        trained = np.setdiff1d(order, held)
        return CorrectionSplit(train=rows(trained), judged=rows(held), kind=HELD_OUT, trained=trained)
    trained = np.sort(order)
    return CorrectionSplit(train=rows(trained), judged=rows(order), kind="all (too few to hold out)", trained=trained)


# --- A whole retraining run ---------------------------------------------------------------


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


@dataclass(frozen=True)
class RetrainResult:
    bundle: ModelBundle
    decision: Decision
    split: CorrectionSplit
    test_samples: int

    @property
    def metrics(self) -> dict:
        """The candidate's figures, with its parent's to compare."""
        parent, candidate = self.decision.parent, self.decision.candidate
        return {
            "test_accuracy": candidate.mnist_accuracy,
            "test_loss": candidate.mnist_loss,
            "test_ece": candidate.mnist_ece,
            "parent_test_ece": parent.mnist_ece,
            "test_samples": self.test_samples,
            "flag_accuracy": candidate.corrections_accuracy,
            "parent_test_accuracy": parent.mnist_accuracy,
            "parent_flag_accuracy": parent.corrections_accuracy,
            "flag_eval": self.split.kind,
            "flag_eval_samples": len(self.split.judged),
            "rejects_caught": candidate.rejects_caught,
            "parent_rejects_caught": parent.rejects_caught,
            "judging": [row.as_dict() for row in self.decision.sets],
        }

    def rows(self, *, parent: str, candidate: str) -> list[tuple[str, str, str]]:
        """(metric, parent, candidate): the report table, the models named as given."""

        old, new, promoted = self.decision.parent, self.decision.candidate, self.decision.promoted
        return [
            ("version", parent, candidate),
            ("MNIST test accuracy", _share(old.mnist_accuracy), _share(new.mnist_accuracy)),
            ("MNIST test loss", f"{old.mnist_loss:.4f}", f"{new.mnist_loss:.4f}"),
            ("MNIST test calibration error", f"{100 * old.mnist_ece:.2f}%", f"{100 * new.mnist_ece:.2f}%"),
            (
                f"corrections ({self.split.kind}, {len(self.split.judged)})",
                _share(old.corrections_accuracy),
                _share(new.corrections_accuracy),
            ),
            ("said not a digit, of staff's", _share(old.rejects_caught), _share(new.rejects_caught)),
            *(
                (
                    f"{row.set} ({row.samples:,}, {row.measure})",
                    _share(row.parent),
                    f"{_share(row.candidate)} {row.verdict} ({100 * row.difference:+.2f}, noise {100 * row.noise:.2f})",
                )
                for row in self.decision.sets
            ),
            ("active", "no" if promoted else "yes", "yes" if promoted else "no"),
        ]


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
    corrections_x: np.ndarray,
    corrections_y: np.ndarray,
    split: CorrectionSplit,
    epochs: int,
    seed: int,
    max_mnist_drop: float,
    force: bool = False,
    train_limit: int | None = None,
    test_limit: int | None = None,
    rejects_x: np.ndarray | None = None,
    judging: JudgingPlan | None = None,
    replay_digits: int = REPLAY_DIGITS,
    log: Callable[[str], None] = print,
    stage: Callable[[str], None] = lambda name: None,
) -> RetrainResult:
    """Fine-tune ``parent`` on ``replay_digits`` of the MNIST digits it learnt plus the
    corrections ``split.train``, write the candidate's bundle to ``out`` (model, metadata,
    plots, as training does) and judge it against its parent on MNIST test and the corrections
    ``split.judged``. The candidate keeps the parent's detector with thresholds chosen again;
    where staff said of images that they are not digits (``rejects_x``), the detector is taught
    those and the corrections trained on (a parent without a detector gets one fitted).
    ``judging``: the fixed sets both also read, each compared (``ml.fitting.judging``); None: none.
    ``stage`` hears each stage's name as it begins (``FINE_TUNING``, ``CALIBRATING``,
    ``JUDGING``)."""
    stage(FINE_TUNING)
    holdout = int(parent.metadata().get("holdout", 0))
    learned_images, learned_labels = mnist.training(holdout)
    learned_images, learned_labels = learned_images[:train_limit], learned_labels[:train_limit]
    replay = replay_sample(learned_images, learned_labels, count=replay_digits, seed=seed)
    result = fine_tune(
        model_path=parent.directory,
        mnist_x=to_model_array(learned_images[replay]),
        mnist_y=learned_labels[replay].astype("int32"),
        extra_x=corrections_x[split.train],
        extra_y=corrections_y[split.train],
        epochs=epochs,
        seed=seed,
        # Fine-tuning keeps the parent's augmentation: what it learnt of other writers stays.
        writers=bool(parent.metadata().get("writers")),
        log=log,
    )
    out.directory.mkdir(parents=True, exist_ok=True)
    result.model.save(out.model_path)
    # The line reader reads whole numbers apart from the digit model: the candidate keeps it.
    for kept in (parent.line_reader_path, parent.line_reader_metadata_path):
        if kept.is_file():
            shutil.copyfile(kept, out.directory / kept.name)
    if holdout:
        # Calibrated before it is judged: the gate compares the confidence each would serve.
        stage(CALIBRATING)
        detector_digits = int(parent.metadata().get("detector_digits", 0))
        keep = parent.detector_path.is_file() and "verdict" in parent.metadata()
        if keep:
            shutil.copyfile(parent.detector_path, out.detector_path)
        out.write_metadata(
            {"holdout": holdout, "seed": seed} | ({"verdict": parent.metadata()["verdict"]} if keep else {})
        )
        lessons = _detector_corrections(parent, corrections_x[split.train], rejects_x)
        calibrate_bundle(
            out.directory,
            mnist,
            holdout=holdout,
            seed=seed,
            detector_digits=detector_digits,
            detector_extra=lessons if not keep or has_lessons(lessons) else None,
            keep_detector=keep,
            calibration_digits=CALIBRATION_DIGITS,
            non_digits=VERDICT_NON_DIGITS,
            log=log,
        )
        honesty = {key: out.metadata()[key] for key in ("calibration", "verdict") if key in out.metadata()}

    stage(JUDGING)
    test = Split(images=mnist.test.images[:test_limit], labels=mnist.test.labels[:test_limit], sha256=mnist.test.sha256)
    judged_x, judged_y = corrections_x[split.judged], corrections_y[split.judged]
    parent_reader, candidate_reader = Predictor(parent.directory), Predictor(out.directory)
    parent_scores, _, parent_mnist = _scores(parent_reader, test, judged_x, judged_y, rejects_x)
    candidate_scores, report, candidate_mnist = _scores(candidate_reader, test, judged_x, judged_y, rejects_x)
    sets = ()
    if judging is not None:
        log("judging: building the judging sets")
        sets = judge_on_sets(
            parent_reader, candidate_reader, judging.sets(test), mnist=(parent_mnist, candidate_mnist), log=log
        )
    decision = judge(
        parent=parent_scores,
        candidate=candidate_scores,
        max_mnist_drop=max_mnist_drop,
        force=force,
        sets=sets,
        unseen=split.kind == HELD_OUT,
    )

    recipe = {
        "epochs": epochs,
        "batch_size": FINE_TUNE_BATCH_SIZE,
        "learning_rate": FINE_TUNE_LEARNING_RATE,
        "schedule": "cosine",
        "augment": True,
        "writers": bool(parent.metadata().get("writers")),
        "members": max(len(members_of(result.model)), 1),
        "seed": seed,
        "holdout": holdout,
        **({"detector_digits": detector_digits} if holdout else {}),
        "parent_version": parent_version,
        "corrections": len(split.trained),
        "correction_examples": len(split.train),
        "correction_share": CORRECTION_SHARE,
        "replay_digits": len(replay),
    }
    out.write_metadata(
        bundle_metadata(
            architecture=parent.metadata().get("architecture", "unknown"),
            model=result.model,
            recipe=recipe,
            mnist=mnist,
            train_count=len(replay),
            test_count=report["samples"],
            training_seconds=result.seconds,
            test_loss=report["loss"],
            test_accuracy=report["accuracy"],
            matrix=np.array(report["confusion_matrix"]),
            history=result.history,
        )
        | (honesty if holdout else {})
    )
    name = out.directory.name
    write_bundle_plots(
        out,
        history=result.history,
        matrix=report["confusion_matrix"],
        title=f"{name}: fine-tuned from v{parent_version}",
        name=name,
    )
    return RetrainResult(bundle=out, decision=decision, split=split, test_samples=report["samples"])
