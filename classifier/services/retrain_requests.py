"""Retraining asked for, and retrains whose trainer died: what web processes, beat and every
worker's start-up do about retraining, without the trainer's code (``services.retraining``, which
loads fitting, runs in the trainer and in `manage.py retrain` only)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from classifier import queueing
from classifier.models import RetrainRun, WorkerHeartbeat
from classifier.selectors import heartbeat_window, trainer_mnist_missing

logger = logging.getLogger(__name__)

# The four files ``ml.fitting.data`` reads (a test holds the two equal), named here so that a web
# process that says what is missing never loads the fitting code.
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

TRAINER_DIED = (
    "The trainer stopped while retraining (it was killed or crashed); nothing was promoted. "
    "You can start a new retrain."
)


class RetrainError(Exception):
    """Retraining cannot start (nothing to learn from, no active model...)."""


class NothingToLearn(RetrainError):
    """No corrections, and not forced. Where to say how to fine-tune on MNIST alone depends
    on where it was asked for: the command names its option, the admin its own."""

    def __init__(self):
        super().__init__(
            "There are no corrections to learn from yet: flag misread images, or confirm people's feedback, first."
        )


def mnist_refusal(why: str, *, where: str = "here") -> str:
    """What staff read where retraining cannot have MNIST (``why``: ``ml.fitting.data.mnist_missing``'s
    words): what to put where, never an exception's text."""
    names = MNIST_FILES
    return (
        f"Retraining needs MNIST, and it cannot be had {where} ({why}). Put the four MNIST files "
        f"({', '.join(names[:-1])} and {names[-1]}, gzipped or not) in a folder and set MNIST_DATA_DIR to that "
        "folder where the retrain runs (for the admin's button: the trainer's environment, then restart it); "
        "or, with internet access and MNIST_DATA_DIR unset, run `manage.py retrain` once: it downloads them "
        "(11 MB) and keeps them in ~/.keras/datasets."
    )


class MnistUnavailable(RetrainError):
    """Retraining cannot have MNIST; the message says what to put where."""

    def __init__(self, why: str, *, where: str = "here"):
        super().__init__(mnist_refusal(why, where=where))


def retrains_fail_orphaned(*, hostname: str | None = None) -> int:
    """Fail the running retrains whose trainer died: its heartbeat stopped (beyond
    ``heartbeat_window``), or it started again as another run (``hostname``: the trainer
    starting, whatever its heartbeat's age). Beat's requeue_stale, each trainer as it starts
    and each retrain asked for call it, so a killed retrain fails within a minute and a new one
    can start. Returns how many failed."""
    running = RetrainRun.objects.filter(status=RetrainRun.Status.RUNNING, in_progress=True).exclude(trainer="")
    alive = WorkerHeartbeat.objects.filter(seen_at__gte=timezone.now() - timedelta(seconds=heartbeat_window()))
    if hostname is not None:
        running = running.filter(trainer=hostname)
        alive = WorkerHeartbeat.objects.filter(hostname=hostname)
    runs = dict(alive.values_list("hostname", "run"))
    orphans = [
        run.pk
        for run in running
        if run.trainer not in runs or (run.trainer_run and runs[run.trainer] != run.trainer_run)
    ]
    failed = RetrainRun.objects.filter(pk__in=orphans, status=RetrainRun.Status.RUNNING).update(
        status=RetrainRun.Status.FAILED, in_progress=False, finished_at=timezone.now(), reason=TRAINER_DIED
    )
    if failed:
        logger.warning("%d retrains failed: their trainer stopped while retraining", failed)
    return failed


def retrain_too_long(*, hard: bool) -> str:
    """Why a retrain that outlasted its time limit failed: at the soft limit
    (``RETRAIN_TIME_LIMIT_SECONDS``) the trainer stopped it; at the hard one (``hard``: the
    soft one and ``TASK_HARD_LIMIT_GRACE_SECONDS``) its process was killed."""
    seconds = settings.RETRAIN_TIME_LIMIT_SECONDS + (settings.TASK_HARD_LIMIT_GRACE_SECONDS if hard else 0)
    return (
        f"The retrain took too long (over {seconds / 3600:g} h), so the trainer stopped it; nothing was promoted. "
        "You can start a new retrain."
    )


def retrain_fail(*, run_id: int | None, timed_out: bool) -> None:
    """The trainer's process was killed under a running retrain: at its hard time limit
    (``timed_out``), or by something else (the OOM killer). It fails with the reason, at once."""
    reason = retrain_too_long(hard=True) if timed_out else TRAINER_DIED
    RetrainRun.objects.filter(pk=run_id, in_progress=True).update(
        status=RetrainRun.Status.FAILED, in_progress=False, finished_at=timezone.now(), reason=reason
    )


def retrain_request(*, epochs: int | None, force: bool, requested_by=None) -> RetrainRun:
    """Queue a retrain on the training queue, recorded as a RetrainRun; RetrainError, saying
    which, when one is already queued or running, or the trainer said it has no MNIST
    (``trainer_ping``: MnistUnavailable). One whose trainer died no longer counts
    (``retrains_fail_orphaned``), nor one with no word for ``RETRAIN_STALE_AFTER_SECONDS``
    (never taken by a trainer)."""
    retrains_fail_orphaned()
    if why := trainer_mnist_missing():
        raise MnistUnavailable(why, where="on the trainer")
    stale = timezone.now() - timedelta(seconds=settings.RETRAIN_STALE_AFTER_SECONDS)
    RetrainRun.objects.filter(in_progress=True, requested_at__lt=stale).update(
        in_progress=False,
        status=RetrainRun.Status.FAILED,
        finished_at=timezone.now(),
        reason="no word from the trainer for too long: it stopped or never took the task",
    )
    try:
        with transaction.atomic():
            run = RetrainRun.objects.create(epochs=epochs, force=force, requested_by=requested_by)
            transaction.on_commit(lambda: queueing.retrain_enqueue(run.pk))
    except IntegrityError:
        current = RetrainRun.objects.filter(in_progress=True).select_related("requested_by").first()
        who = f" by {current.requested_by}" if current and current.requested_by else ""
        when = f" since {timezone.localtime(current.requested_at):%H:%M}" if current else ""
        state = current.get_status_display().lower() if current else "in progress"
        raise RetrainError(f"A retrain is already {state} (asked for{who}{when}): one at a time.") from None
    return run
