"""Retraining: fine-tune the active model on MNIST plus staff corrections, promote if better."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from classifier.models import Flag, ModelVersion
from classifier.services.modelling import (
    mnist_load,
    model_version_activate,
    model_version_ensure_initial,
    relative_to_base,
)
from ml.preprocessing import PreprocessingError

logger = logging.getLogger(__name__)


class RetrainError(Exception):
    """Retraining cannot start (nothing to learn from, no active model...)."""


@dataclass
class RetrainReport:
    active: ModelVersion
    candidate: ModelVersion | None
    promoted: bool
    reason: str
    rows: list[tuple[str, str, str]]  # (metric, active, candidate) for the report table


def _flag_arrays(flags: list[Flag]) -> tuple[list[Flag], np.ndarray, np.ndarray]:
    """Model inputs and correct digits of the flagged images that still preprocess."""
    from ml.preprocessing import to_model_input

    usable, arrays = [], []
    for flag in flags:
        try:
            with flag.image.file.open("rb") as fh:
                arrays.append(to_model_input(fh.read()).array)
        except (OSError, PreprocessingError) as exc:
            logger.warning("flag on image %s skipped: %s", flag.image_id, exc)
            continue
        usable.append(flag)
    x = np.stack(arrays)[..., None] if arrays else np.zeros((0, 28, 28, 1), dtype="float32")
    y = np.array([flag.correct_digit for flag in usable], dtype="int32")
    return usable, x, y


def _accuracy(predictor, x, y) -> float | None:
    if len(x) == 0:
        return None
    return float((predictor.probabilities(x).argmax(axis=1) == y).mean())


def model_retrain(
    *, epochs: int | None = None, dry_run: bool = False, force: bool = False, log: Callable[[str], None] = print
) -> RetrainReport:
    """Fine-tune the active model on MNIST plus staff corrections; keep the result as a new
    ModelVersion and activate it only if it is no worse on MNIST (within a setting) and
    better on the corrections, unless ``force``."""

    from classifier.selectors import flags_for_training
    from ml.evaluation import evaluate_mnist
    from ml.inference import Predictor
    from ml.plots import plot_confusion_matrix, plot_training_curves
    from ml.retrain import fine_tune
    from ml.train import CONFUSION_FILE, CURVES_FILE, METADATA_FILE, MODEL_FILE, to_model_array

    active = model_version_ensure_initial()
    epochs = epochs or settings.RETRAIN_EPOCHS
    flags, flag_x, flag_y = _flag_arrays(list(flags_for_training()))
    if not flags and not force:
        raise RetrainError("There are no flagged images to learn from (use --force to fine-tune on MNIST alone).")

    # With enough corrections, a fifth is held out so that "better on the corrections" is
    # measured on images the candidate never saw; with few, all are used for both.
    rng = np.random.default_rng(settings.RETRAIN_SEED)
    order = rng.permutation(len(flags))
    held = order[: len(flags) // 5] if len(flags) >= settings.RETRAIN_MIN_FLAGS_FOR_HOLDOUT else order[:0]
    train_idx = np.setdiff1d(order, held)
    eval_idx = held if len(held) else order
    eval_kind = "held-out" if len(held) else "all (too few to hold out)"

    mnist = mnist_load()
    limit = settings.RETRAIN_TRAIN_LIMIT
    test_limit = settings.RETRAIN_TEST_LIMIT
    log(
        f"active model v{active.number}; {len(flags)} corrections ({len(train_idx)} to train on, "
        f"{len(eval_idx)} to judge: {eval_kind}); {epochs} epochs"
    )
    if dry_run:
        return RetrainReport(active=active, candidate=None, promoted=False, reason="dry run: nothing trained", rows=[])

    result = fine_tune(
        model_path=active.directory,
        mnist_x=to_model_array(mnist.train.images[:limit]),
        mnist_y=mnist.train.labels[:limit].astype("int32"),
        extra_x=flag_x[train_idx],
        extra_y=flag_y[train_idx],
        epochs=epochs,
        seed=settings.RETRAIN_SEED,
        log=log,
    )

    number = (ModelVersion.objects.order_by("-number").values_list("number", flat=True).first() or 0) + 1
    out = Path(settings.MODEL_VERSIONS_DIR) / f"v{number}"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    result.model.save(out / MODEL_FILE)

    test = mnist.test
    if test_limit:
        from ml.data import Split

        test = Split(images=test.images[:test_limit], labels=test.labels[:test_limit], sha256=test.sha256)
    old, new = Predictor(active.directory), Predictor(out)
    old_mnist, new_mnist = evaluate_mnist(old, test), evaluate_mnist(new, test)
    old_flags = _accuracy(old, flag_x[eval_idx], flag_y[eval_idx])
    new_flags = _accuracy(new, flag_x[eval_idx], flag_y[eval_idx])

    max_drop = settings.RETRAIN_MAX_MNIST_DROP
    mnist_ok = new_mnist["accuracy"] >= old_mnist["accuracy"] - max_drop
    flags_ok = old_flags is None or new_flags > old_flags
    if mnist_ok and flags_ok:
        reason = "better on the corrections and within the MNIST tolerance"
    elif not mnist_ok:
        reason = (
            f"its MNIST test accuracy {new_mnist['accuracy']:.2%} is below the active model's "
            f"{old_mnist['accuracy']:.2%} minus the {100 * max_drop:.2f}-point tolerance"
        )
    else:
        reason = f"not better on the corrections ({new_flags:.2%} vs {old_flags:.2%})"
    promote = (mnist_ok and flags_ok) or force
    if force and not (mnist_ok and flags_ok):
        reason = f"forced, although {reason}"

    metrics = {
        "test_accuracy": new_mnist["accuracy"],
        "test_loss": new_mnist["loss"],
        "test_samples": new_mnist["samples"],
        "flag_accuracy": new_flags,
        "parent_test_accuracy": old_mnist["accuracy"],
        "parent_flag_accuracy": old_flags,
        "flag_eval": eval_kind,
        "flag_eval_samples": len(eval_idx),
    }
    metadata = (
        json.loads((active.directory / METADATA_FILE).read_text())
        if (active.directory / METADATA_FILE).is_file()
        else {}
    )
    metadata |= {
        "parent_version": active.number,
        "epochs": epochs,
        "fine_tune_epochs": epochs,
        "seed": settings.RETRAIN_SEED,
        "train_samples": len(mnist.train.images[:limit]),
        "corrections": len(train_idx),
        "training_seconds": round(result.seconds, 1),
        "test_accuracy": new_mnist["accuracy"],
        "test_loss": new_mnist["loss"],
        "confusion_matrix": new_mnist["confusion_matrix"],
        "history": result.history,
        "created": timezone.now().isoformat(),
    }
    (out / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    plot_training_curves(result.history, out / CURVES_FILE, title=f"v{number}: fine-tuned from v{active.number}")
    plot_confusion_matrix(
        np.array(new_mnist["confusion_matrix"]), out / CONFUSION_FILE, title=f"v{number}: MNIST test set"
    )

    with transaction.atomic():
        candidate = ModelVersion.objects.create(
            number=number,
            architecture=active.architecture,
            path=relative_to_base(out),
            metrics=metrics,
            parent=active,
            flags_used=len(train_idx),
            notes=reason,
        )
        if promote:
            model_version_activate(number=number)
            candidate.is_active = True
            Flag.objects.filter(pk__in=[flags[i].pk for i in train_idx]).update(trained_in=candidate)

    def pct(value):
        return "-" if value is None else f"{value:.2%}"

    rows = [
        ("version", f"v{active.number}", f"v{number}"),
        ("MNIST test accuracy", pct(old_mnist["accuracy"]), pct(new_mnist["accuracy"])),
        ("MNIST test loss", f"{old_mnist['loss']:.4f}", f"{new_mnist['loss']:.4f}"),
        (f"corrections ({eval_kind}, {len(eval_idx)})", pct(old_flags), pct(new_flags)),
        ("active", "no" if promote else "yes", "yes" if promote else "no"),
    ]
    return RetrainReport(active=active, candidate=candidate, promoted=promote, reason=reason, rows=rows)
