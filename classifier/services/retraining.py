"""Retraining: fine-tune the active model on MNIST plus staff corrections, promote if better.

The training and the candidate's bundle live in ``ml.fitting.retrain``, the gate in ``ml.fitting.gate``;
this module adds what needs the database and the settings: the corrections, the retrain's options
(``RetrainOptions``, from ``RETRAIN_*``), the version numbers, and the promotion.

A correction is a Flag on a stored image, or a TrainingExample: a flag whose image its owner
deleted, kept (with their consent) as the very input the model took."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from billiard.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from classifier.models import Flag, ModelVersion, RetrainRun, TrainingExample, WorkerHeartbeat
from classifier.selectors import (
    flags_for_training,
    training_examples_for_training,
)
from classifier.services.images import correction_training_refusal
from classifier.services.modelling import mnist_load, mnist_missing_here
from classifier.services.retrain_progress import StageProgress, run_recorder
from classifier.services.retrain_requests import MnistUnavailable, NothingToLearn, RetrainError, retrain_too_long
from classifier.services.versions import (
    model_version_activate,
    model_version_archive_save,
    model_version_directory,
    model_version_ensure_initial,
    relative_to_base,
)
from ml.fitting.data import Mnist, MnistDataError
from ml.serving.artifacts import INPUT_SHAPE, ModelBundle
from ml.serving.preprocessing import PreprocessingError, to_model_input
from ml.serving.segment import page_of, read_whole, whole_segment

if TYPE_CHECKING:
    from ml.fitting.gate import RetrainResult
    from ml.fitting.retrain import Corrections, RetrainOptions

logger = logging.getLogger(__name__)


def _mnist_for_retraining() -> Mnist:
    """MNIST, before anything else starts; MnistUnavailable, saying what to do, where it
    cannot be had (the raw error goes to the log)."""
    try:
        return mnist_load()
    except MnistDataError as exc:
        logger.warning("MNIST could not be loaded: %s", exc)
        why = mnist_missing_here() or str(exc)
    except Exception as exc:  # Keras says a failed download with a bare Exception
        if settings.MNIST_DATA_DIR:
            raise
        logger.warning("MNIST could not be downloaded: %s", exc)
        why = "no MNIST_DATA_DIR, no earlier download, and the download failed"
    raise MnistUnavailable(why)


@dataclass
class RetrainReport:
    active: ModelVersion
    candidate: ModelVersion | None
    promoted: bool
    reason: str
    rows: list[tuple[str, str, str]]  # (metric, active, candidate) for the report table
    corrections: int  # digit corrections learnt from (trained on or judged on)
    examples: int  # their examples: a number gives one per digit
    not_trained: int  # corrections left out: their digit count differs from the digits found
    caveat: str = ""  # what the gate's comparison could and could not show (``ml.fitting.gate.gate_caveat``)


Correction = Flag | TrainingExample


@dataclass
class CorrectionArrays:
    """What retraining learns from: each usable correction gives ``sizes`` examples (a number
    one per digit, not a digit one per input the reader judges), one after another in ``x``
    and ``y`` (the digit; -1: not a digit)."""

    corrections: list[Correction]
    sizes: list[int]
    x: np.ndarray
    y: np.ndarray
    not_trained: int  # corrections whose digit count differs from the digits found


def _flag_inputs(flag: Flag) -> tuple[np.ndarray, list[int]]:
    """The model inputs of a corrected image and their digits. A number's digits are the inputs
    the worker stored for each box: their float32 originals where the owner let them be kept,
    else the 8-bit ones (what a person saw, within 1/255). One digit is the file preprocessed
    again, as before numbers were read. Not a digit is every input the reader judges of it:
    the image read whole, and each group of strokes it would read as a number's digits."""
    prediction = flag.image.prediction_or_none
    if prediction is not None and prediction.is_number and not flag.not_a_digit:
        inputs = prediction.exact_inputs()
        if inputs is None:
            inputs = prediction.digit_input_pixels().astype("float32") / 255
        return inputs, [int(digit) for digit in flag.correct_number]
    with flag.image.file.open("rb") as fh:
        data = fh.read()
    if not flag.not_a_digit:
        return to_model_input(data).array[None], [flag.correct_digit]
    # Decoded once: the page read whole is the single-digit input, its groups the pieces.
    whole = read_whole(data)
    array = whole_segment(whole).model_input.array
    try:
        groups = [model_input.array for model_input in page_of(whole).inputs]
    except PreprocessingError:  # several lines, too many groups: the whole is lesson enough
        groups = []
    unique = {a.tobytes(): a for a in [array, *groups]}
    return np.stack(list(unique.values())), [-1] * len(unique)


def _correction_arrays(flags: list[Flag], examples: list[TrainingExample]) -> CorrectionArrays:
    """The examples of the flagged images that can be learnt from, then of the kept examples.
    A flag whose digit count differs from the digits found is left out (nothing says which
    digit is which box) and counted; one whose file no longer preprocesses is left out."""
    usable: list[Correction] = []
    sizes, arrays, labels = [], [], []
    not_trained = 0
    for flag in flags:
        if refusal := correction_training_refusal(
            correct_number=flag.correct_number, prediction=flag.image.prediction_or_none
        ):
            logger.info("flag on image %s not trained on: %s", flag.image_id, refusal)
            not_trained += 1
            continue
        try:
            inputs, digits = _flag_inputs(flag)
        except (OSError, PreprocessingError) as exc:
            logger.warning("flag on image %s skipped: %s", flag.image_id, exc)
            continue
        usable.append(flag)
        sizes.append(len(digits))
        arrays.extend(inputs)
        labels.extend(digits)
    for example in examples:
        usable.append(example)
        sizes.append(1)
        arrays.append(example.array())
        labels.append(-1 if example.not_a_digit else example.correct_digit)
    x = np.stack(arrays)[..., None] if arrays else np.zeros((0, *INPUT_SHAPE), dtype="float32")
    return CorrectionArrays(usable, sizes, x.astype("float32"), np.array(labels, dtype="int32"), not_trained)


def _next_number() -> int:
    return (ModelVersion.objects.order_by("-number").values_list("number", flat=True).first() or 0) + 1


def _fresh_bundle(number: int) -> ModelBundle:
    directory = Path(settings.MODEL_VERSIONS_DIR) / f"v{number}"
    if directory.exists():  # left by a run that died before its version was recorded
        shutil.rmtree(directory)
    return ModelBundle(directory)


@dataclass
class _Plan:
    """What a retrain learns from: the corrections as ``ml.fitting.retrain`` takes them, and
    the rows they came from."""

    flags: list[Correction]  # digit corrections: they train and judge the digit model
    rejects: list[Correction]  # "not a digit" ones: they teach the reject option
    corrections: Corrections
    counts: dict


def _retrain_options(*, epochs: int, force: bool) -> RetrainOptions:
    """The retrain's options, from the ``RETRAIN_*`` settings."""
    from ml.fitting.judging import JudgingPlan
    from ml.fitting.retrain import RetrainOptions

    return RetrainOptions(
        epochs=epochs,
        seed=settings.RETRAIN_SEED,
        max_mnist_drop=settings.RETRAIN_MAX_MNIST_DROP,
        force=force,
        train_limit=settings.RETRAIN_TRAIN_LIMIT,
        test_limit=settings.RETRAIN_TEST_LIMIT,
        judging=JudgingPlan(
            real_dir=settings.REAL_DIGITS_DIR,
            per_set=settings.RETRAIN_JUDGING_PER_SET,
            cache_dir=settings.RETRAIN_CACHE_DIR or Path(settings.MODEL_VERSIONS_DIR).parent / "retrain-cache",
        ),
    )


def _retrain_plan(
    arrays: CorrectionArrays, *, active: ModelVersion, options: RetrainOptions, log: Callable[[str], None]
) -> _Plan:
    """Split the corrections into digit ones (trained on, and judged on a share of them) and
    "not a digit" ones, and say so. A correction's examples are all digits or all not
    digits, so the rows stay in step."""
    from ml.fitting.gate import split_corrections
    from ml.fitting.retrain import Corrections

    usable = arrays.corrections
    flags = [flag for flag in usable if not flag.not_a_digit]
    sizes = [size for item, size in zip(usable, arrays.sizes, strict=True) if not item.not_a_digit]
    flag_x, flag_y = arrays.x[arrays.y >= 0], arrays.y[arrays.y >= 0]
    rejects_x = arrays.x[arrays.y < 0]
    rejects = [item for item in usable if item.not_a_digit]
    split = split_corrections(
        len(flags), seed=options.seed, min_for_holdout=settings.RETRAIN_MIN_FLAGS_FOR_HOLDOUT, sizes=sizes
    )
    log(
        f"active model v{active.number}; {len(flags)} corrections, {len(flag_y)} examples ({len(split.train)} to "
        f"train on, {len(split.judged)} to judge: {split.kind}), {len(rejects)} images that are not digits "
        f"({len(rejects_x)} inputs); {options.epochs} epochs"
    )
    if arrays.not_trained:
        log(f"{arrays.not_trained} corrections not trained on: digit count differs")
    if kept := sum(isinstance(item, TrainingExample) for item in usable):
        log(f"{kept} of these corrections are kept examples of deleted images")
    counts = {"corrections": len(flags), "examples": len(flag_y), "not_trained": arrays.not_trained}
    return _Plan(flags, rejects, Corrections(x=flag_x, y=flag_y, split=split, rejects_x=rejects_x), counts)


def model_retrain(
    *,
    epochs: int | None = None,
    dry_run: bool = False,
    force: bool = False,
    log: Callable[[str], None] = print,
    stage: Callable[[str], None] = lambda name: None,
) -> RetrainReport:
    """Fine-tune the active model on MNIST plus staff corrections; keep the result as a new
    ModelVersion and activate it only if the gate (``ml.fitting.gate.judge``) says so, or ``force``.
    ``stage`` hears each of ``RetrainRun.STAGES`` as it begins; MNIST is loaded before the
    first (MnistUnavailable, saying what to do, where it cannot be)."""
    mnist = None if dry_run else _mnist_for_retraining()
    stage("gathering")
    active = model_version_ensure_initial()
    options = _retrain_options(epochs=epochs or settings.RETRAIN_EPOCHS, force=force)
    arrays = _correction_arrays(list(flags_for_training()), list(training_examples_for_training()))
    if not arrays.corrections and not force:
        raise NothingToLearn()
    plan = _retrain_plan(arrays, active=active, options=options, log=log)
    if dry_run:
        return RetrainReport(
            active=active, candidate=None, promoted=False, reason="dry run: nothing trained", rows=[], **plan.counts
        )
    return _retrained(active=active, mnist=mnist, plan=plan, options=options, log=log, stage=stage)


def _retrained(
    *,
    active: ModelVersion,
    mnist: Mnist,
    plan: _Plan,
    options: RetrainOptions,
    log: Callable[[str], None],
    stage: Callable[[str], None],
) -> RetrainReport:
    """The candidate fine-tuned from ``active`` and judged, stored as the next version, and
    promoted where the gate says so."""
    from ml.fitting.gate import gate_caveat
    from ml.fitting.retrain import retrain

    number = _next_number()
    result = retrain(
        parent=ModelBundle(model_version_directory(active)),
        parent_version=active.number,
        out=_fresh_bundle(number),
        mnist=mnist,
        corrections=plan.corrections,
        options=options,
        log=log,
        stage=stage,
    )
    caveat = gate_caveat(
        result.decision,
        result.split,
        min_for_holdout=settings.RETRAIN_MIN_FLAGS_FOR_HOLDOUT,
        parent=f"v{active.number}",
    )
    stage("storing")
    candidate = _candidate_record(
        active=active, number=number, flags=plan.flags, rejects=plan.rejects, result=result, caveat=caveat
    )
    rows = result.rows(parent=f"v{active.number}", candidate=f"v{number}")
    return RetrainReport(
        active=active,
        candidate=candidate,
        promoted=result.decision.promoted,
        reason=result.decision.reason,
        rows=rows,
        caveat=caveat,
        **plan.counts,
    )


def _candidate_record(
    *,
    active: ModelVersion,
    number: int,
    flags: list[Correction],
    rejects: list[Correction],
    result: RetrainResult,
    caveat: str = "",
) -> ModelVersion:
    """The candidate as a ModelVersion, its files in storage for every machine; if promoted,
    active, with its corrections marked as learnt."""
    archive, checksum = model_version_archive_save(number=number, directory=result.bundle.directory)
    with transaction.atomic():
        candidate = ModelVersion.objects.create(
            number=number,
            architecture=active.architecture,
            path=relative_to_base(result.bundle.directory),
            archive=archive,
            checksum=checksum,
            # How many images staff said are not digits taught its reject option (none where
            # the model has no reject option to teach).
            metrics=result.metrics | {"rejects_taught": len(rejects) if result.bundle.detector_path.is_file() else 0},
            parent=active,
            flags_used=len(result.split.trained),
            notes=" ".join(filter(None, [f"{result.decision.reason}.", caveat])),
        )
        if result.decision.promoted:
            model_version_activate(number=number)
            candidate.is_active = True
            learnt = [flags[i] for i in result.split.trained]
            if result.bundle.detector_path.is_file():  # only a reject option learns "not a digit"
                learnt += rejects
            for model in (Flag, TrainingExample):
                model.objects.filter(pk__in=[c.pk for c in learnt if isinstance(c, model)]).update(trained_in=candidate)
    return candidate


# --- Retraining in the background, on the trainer ------------------------------------------


def retrain_run(*, run_id: int, trainer: str = "", log: Callable[[str], None] = logger.info) -> RetrainRun:
    """Carry out a queued RetrainRun in the trainer (hostname ``trainer``, whose run it
    records): running, each stage recorded with its progress as it goes, then promoted, kept
    or failed with the reason."""
    run = RetrainRun.objects.get(pk=run_id)
    trainer_run = WorkerHeartbeat.objects.filter(hostname=trainer).values_list("run", flat=True).first() or ""
    RetrainRun.objects.filter(pk=run_id).update(
        status=RetrainRun.Status.RUNNING, started_at=timezone.now(), trainer=trainer, trainer_run=trainer_run
    )
    stages = run_recorder(run_id, every=settings.RETRAIN_PROGRESS_SECONDS)
    # Inside a transaction (a test's) the row is not another connection's to write: no ticker.
    if not transaction.get_connection().in_atomic_block:
        stages.ticking()
    try:
        outcome = _retrain_outcome(run, stages=stages, log=log)
    finally:
        stages.stop()
    RetrainRun.objects.filter(pk=run_id).update(in_progress=False, finished_at=timezone.now(), **outcome)
    run.refresh_from_db()
    return run


def _retrain_outcome(run: RetrainRun, *, stages: StageProgress, log: Callable[[str], None]) -> dict:
    """The retrain carried out, each line and stage recorded: how it ended (promoted or kept,
    with the reason, the gate's caveat and the candidate), or failed, and why, in a sentence."""

    def progress(line: str) -> None:
        log(line)
        stages.line(line)

    try:
        report = model_retrain(epochs=run.epochs, force=run.force, log=progress, stage=stages.begin)
    except NothingToLearn as exc:
        reason = f'{exc} To fine-tune on MNIST alone, retrain with "{RetrainRun.FORCE_LABEL}" ticked.'
    except SoftTimeLimitExceeded:
        reason = retrain_too_long(hard=False)
    except RetrainError as exc:
        reason = str(exc)
    except Exception:
        logger.exception("retraining failed")
        where = RetrainRun.STAGES.get(stages.stages[-1]["name"], "") if stages.stages else ""
        reason = (
            f"The trainer met an unexpected error{f' while {where.lower()}' if where else ''}; nothing "
            "was promoted. The trainer's log has the details."
        )
    else:
        stages.end()  # a failed run's stage stays open: where it stopped
        return {
            "status": RetrainRun.Status.PROMOTED if report.promoted else RetrainRun.Status.KEPT,
            "reason": report.reason,
            "explanation": report.caveat,
            "candidate": report.candidate,
        }
    return {"status": RetrainRun.Status.FAILED, "reason": reason}
