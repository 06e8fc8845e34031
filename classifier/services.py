"""The only bridge between Django and ``ml``: typed, keyword-only services.

Web processes import this module too, so TensorFlow is imported lazily, inside the
functions that run in the worker or in commands.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone

from classifier.models import DigitImage, Flag, ModelVersion, Prediction
from ml.data import Mnist, load_mnist
from ml.preprocessing import PreprocessingError, inspect_image

logger = logging.getLogger(__name__)


# --- MNIST and offline models (commands) --------------------------------------------------


def mnist_load() -> Mnist:
    return load_mnist(settings.MNIST_DATA_DIR)


def model_train(
    *,
    arch: str,
    out_dir: Path | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    train_limit: int | None = None,
    log: Callable[[str], None] = print,
):
    from ml.train import TrainConfig, train_model

    config = TrainConfig.for_arch(arch, epochs=epochs, seed=seed, train_limit=train_limit)
    out = Path(out_dir) if out_dir else settings.TRAINED_MODELS_DIR / arch
    return train_model(mnist=mnist_load(), config=config, out_dir=out, log=log)


def model_path_default() -> Path:
    """The model that serves predictions: the active version's, else the shipped one."""
    try:
        active = ModelVersion.objects.filter(is_active=True).first()
    except DatabaseError:  # not migrated yet: the shipped model is the only one there is
        active = None
    return active.directory if active else settings.SHIPPED_MODEL_DIR


def model_evaluate(*, model_path: Path | None = None, realistic: int = 0, seed: int = 0) -> dict:
    """Accuracy and loss on the MNIST test set; with ``realistic``, also on that many
    realistic uploads rendered from the test set."""
    from ml.evaluation import evaluate_mnist, evaluate_realistic
    from ml.inference import Predictor

    predictor = Predictor(model_path or model_path_default())
    test = mnist_load().test
    report = {"model": str(predictor.model_path)} | evaluate_mnist(predictor, test)
    if realistic:
        report["realistic"] = evaluate_realistic(predictor, test, count=realistic, seed=seed)
    return report


def image_files_predict(*, paths: list[Path], model_path: Path | None = None) -> list[dict]:
    """Classify image files: one dict per file, in order, with the prediction or an error."""
    from ml.inference import Predictor

    blobs, read_errors = [], {}
    for index, path in enumerate(paths):
        try:
            blobs.append(Path(path).read_bytes())
        except OSError as exc:
            blobs.append(b"")
            read_errors[index] = f"cannot read the file: {exc.strerror or exc}"
    predictor = Predictor(model_path or model_path_default())
    results = predictor.predict_images(blobs)
    report = []
    for index, (path, result) in enumerate(zip(paths, results, strict=True)):
        if index in read_errors:
            report.append({"file": str(path), "error": read_errors[index]})
        elif result.prediction is None:
            report.append({"file": str(path), "error": result.error})
        else:
            report.append({"file": str(path)} | result.prediction.as_dict())
    return report


# --- Model versions -----------------------------------------------------------------------


def _relative_to_base(path: Path) -> str:
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path(settings.BASE_DIR).resolve()))
    except ValueError:
        return str(path)


def model_version_ensure_initial() -> ModelVersion:
    """The first ModelVersion, registered from the shipped model; the active one if any exists."""
    active = ModelVersion.objects.filter(is_active=True).first()
    if active:
        return active
    import json

    from ml.train import METADATA_FILE

    directory = Path(settings.SHIPPED_MODEL_DIR)
    metadata = json.loads((directory / METADATA_FILE).read_text())
    with transaction.atomic():
        version, _ = ModelVersion.objects.get_or_create(
            number=1,
            defaults={
                "architecture": metadata["architecture"],
                "path": _relative_to_base(directory),
                "metrics": {"test_accuracy": metadata["test_accuracy"], "test_loss": metadata["test_loss"]},
                "notes": "the shipped model, trained by `manage.py train --arch deep`",
            },
        )
        if not ModelVersion.objects.filter(is_active=True).exists():
            ModelVersion.objects.filter(pk=version.pk).update(is_active=True)
            version.is_active = True
    return version


def model_version_activate(*, number: int) -> ModelVersion:
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(number=number)
        ModelVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(is_active=False)
        if not version.is_active:
            version.is_active = True
            version.save(update_fields=["is_active"])
    return version


# --- Uploads ------------------------------------------------------------------------------


@dataclass
class UploadOutcome:
    created: list[DigitImage] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason for people)


def _enqueue_classification(image_id: int) -> None:
    from classifier.tasks import classify_image

    try:
        classify_image.delay(image_id)
    except Exception:
        # The image is stored and stays pending; requeue_stale picks it up once the broker is back.
        logger.exception("could not queue image %s for classification", image_id)


def image_upload_create(*, owner, files: Iterable[UploadedFile]) -> UploadOutcome:
    """Store each acceptable file as a pending DigitImage and queue its classification.

    A refused file (too large, not an image we read, too many pixels) gets a reason;
    the others in the same upload go through.
    """
    outcome = UploadOutcome()
    limit = settings.UPLOAD_MAX_BYTES
    for upload in files:
        name = Path(upload.name or "upload").name[:255]
        if upload.size is not None and upload.size > limit:
            outcome.refused.append((name, f"The file is larger than {limit // 1_000_000} MB."))
            continue
        data = upload.read()
        try:
            info = inspect_image(data)
        except PreprocessingError as exc:
            outcome.refused.append((name, str(exc)))
            continue
        image = DigitImage(
            owner=owner,
            original_name=name,
            image_format=info.format,
            content_type=info.mime,
            sha256=hashlib.sha256(data).hexdigest(),
            size_bytes=len(data),
            width=info.width,
            height=info.height,
        )
        with transaction.atomic():
            image.file.save("upload", ContentFile(data), save=False)
            image.save()
            transaction.on_commit(partial(_enqueue_classification, image.pk))
        outcome.created.append(image)
    return outcome


# --- Prediction (worker) ------------------------------------------------------------------

_predictor_cache: dict[int, object] = {}


def _predictor_for(version: ModelVersion):
    """The Predictor of a model version, loaded once per process and replaced on change."""
    from ml.inference import Predictor

    predictor = _predictor_cache.get(version.pk)
    if predictor is None:
        _predictor_cache.clear()
        predictor = _predictor_cache[version.pk] = Predictor(version.directory)
    return predictor


def _image_fail(image_id: int, message: str) -> None:
    DigitImage.objects.filter(pk=image_id).update(status=DigitImage.Status.FAILED, error_message=message)


def prediction_run(*, image_id: int) -> Prediction | None:
    """Classify one stored image with the active model and store its Prediction.

    Idempotent: an image that already has a prediction is left as it is (the one-to-one
    column backs this). An image that cannot be classified ends ``failed`` with the reason.
    """
    image = DigitImage.objects.filter(pk=image_id).first()
    if image is None:
        logger.info("image %s is gone; nothing to classify", image_id)
        return None
    existing = Prediction.objects.filter(image_id=image_id).first()
    if existing is not None:
        if image.status != DigitImage.Status.DONE:
            DigitImage.objects.filter(pk=image_id).update(status=DigitImage.Status.DONE, error_message="")
        return existing

    if image.status == DigitImage.Status.FAILED:
        return None
    if image.attempts >= settings.CLASSIFY_MAX_ATTEMPTS:
        # Every earlier delivery ended without a result: its worker died on this image.
        # Stop here instead of letting it kill workers forever.
        _image_fail(image_id, f"This image could not be classified after {image.attempts} attempts.")
        return None
    DigitImage.objects.filter(pk=image_id).update(status=DigitImage.Status.PROCESSING, attempts=F("attempts") + 1)
    try:
        with image.file.open("rb") as fh:
            data = fh.read()
    except OSError:
        _image_fail(image_id, "The stored file could not be read.")
        return None

    version = model_version_ensure_initial()
    predictor = _predictor_for(version)
    started = time.perf_counter()
    result = predictor.predict_images([data])[0]
    inference_ms = (time.perf_counter() - started) * 1000
    if result.prediction is None:
        _image_fail(image_id, result.error)
        return None

    with transaction.atomic():
        prediction, _ = Prediction.objects.get_or_create(
            image_id=image_id,
            defaults={
                "digit": result.prediction.digit,
                "confidence": result.prediction.confidence,
                "probabilities": list(result.prediction.probabilities),
                "model_version": version,
                "model_input": result.model_input.display.tobytes(),
                "inference_ms": inference_ms,
            },
        )
        DigitImage.objects.filter(pk=image_id).update(status=DigitImage.Status.DONE, error_message="")
    return prediction


def images_requeue_stale(*, older_than: timedelta | None = None) -> list[int]:
    """Queue again the images still waiting after ``older_than`` (the broker was down when
    they were uploaded, or lost its queue): pending ones, and processing ones whose worker
    is long gone. Returns their ids."""
    older_than = older_than or timedelta(seconds=settings.CLASSIFY_STALE_AFTER_SECONDS)
    cutoff = timezone.now() - older_than
    stale = list(
        DigitImage.objects.filter(
            status__in=[DigitImage.Status.PENDING, DigitImage.Status.PROCESSING], uploaded_at__lt=cutoff
        ).values_list("pk", flat=True)
    )
    for image_id in stale:
        _enqueue_classification(image_id)
    if stale:
        logger.info("requeued %d stale images", len(stale))
    return stale


# --- Flags --------------------------------------------------------------------------------


def image_flag(*, image: DigitImage, correct_digit: int, flagged_by, note: str = "") -> Flag:
    """Record (or correct) the digit an image really shows."""
    if not 0 <= int(correct_digit) <= 9:
        raise ValueError("The correct digit must be between 0 and 9.")
    flag, _ = Flag.objects.update_or_create(
        image=image,
        defaults={
            "correct_digit": int(correct_digit),
            "flagged_by": flagged_by,
            "note": note,
            "flagged_at": timezone.now(),
        },
    )
    return flag


# --- Retraining ---------------------------------------------------------------------------


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
    import json

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
            path=_relative_to_base(out),
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
