"""The worker's life, in one home: work queued for it, and what it records as it lives.

This module is what web processes, tasks and the worker's hooks share: it sends the tasks by
name (it never imports them), records when images reached the broker, queues again the images
a fault stranded, and keeps the workers' claims and heartbeats. ``worker.py`` holds the hooks a
worker runs (warm start, claims as it takes messages, heartbeats, recovery as it connects),
which ``digitsite/celery.py`` installs. They are two modules because the warm start loads the
model through ``classifier.services``, and the services queue their work through this one:
this module imports no service and no task, so nothing here leads back to itself.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from kombu.exceptions import OperationalError

from classifier.models import DigitImage, RequeueRun, TrainerPing, WorkerHeartbeat
from classifier.selectors import images_stranded
from digitsite.celery import app

logger = logging.getLogger(__name__)

# The tasks' names (classifier/tasks.py), which messages carry; CELERY_TASK_ROUTES picks each
# one's queue by its name.
CLASSIFY_IMAGES = "classifier.classify_images"
CLASSIFY_IMAGE = "classifier.classify_image"
PREVIEW_DRAWING = "classifier.preview_drawing"
RETRAIN = "classifier.retrain"
REQUEUE_STALE = "classifier.requeue_stale"
TRAINER_PING = "classifier.trainer_ping"


def _send(name: str, *, args: tuple = (), kwargs: dict | None = None, **options) -> None:
    # ignore_result, as each task has it (CELERY_TASK_IGNORE_RESULT): results live in the database.
    # No time limits in the message: Celery would copy the sender's own (its settings), and
    # the message's win; the worker's settings say how long its tasks may take.
    app.send_task(name, args=args, kwargs=kwargs, ignore_result=True, time_limit=None, soft_time_limit=None, **options)


# --- Sending work to the workers: each takes its task's own arguments, as ``delay`` would ------


def images_enqueue(image_ids: list[int]) -> list[int]:
    """Queue the images' classification in batches of ``CLASSIFY_BATCH_SIZE`` (one model call
    each); return the ids that reached the broker, and record when they did (``queued_at``).

    When the broker cannot be reached the images stay stored and pending with no ``queued_at``:
    that is the record that they were never queued, and recovery queues them as soon as the
    broker is back. The first failure ends the loop: every further try would wait out the same
    connection timeout while the person waits.
    """
    size, queued = settings.CLASSIFY_BATCH_SIZE, []
    for start in range(0, len(image_ids), size):
        try:
            _send(CLASSIFY_IMAGES, args=(image_ids[start : start + size],))
        except Exception:
            logger.exception("the broker is unreachable; %d images stay pending, not queued", len(image_ids) - start)
            break
        queued = image_ids[: start + size]
    if queued:
        DigitImage.objects.filter(pk__in=queued).update(queued_at=timezone.now())
    return queued


def image_enqueue_alone(image_id: int) -> None:
    """Queue one image's classification on its own (one of a batch delivered again)."""
    _send(CLASSIFY_IMAGE, args=(image_id,))


def drawing_preview_enqueue(preview_id: str) -> None:
    """Queue the draw page's live answer (queue ``preview``), dropped unstarted after
    ``DRAW_PREVIEW_EXPIRES_SECONDS``."""
    _send(PREVIEW_DRAWING, args=(preview_id,), expires=settings.DRAW_PREVIEW_EXPIRES_SECONDS)


def retrain_enqueue(run_id: int) -> None:
    """Queue a RetrainRun (queue ``training``)."""
    _send(RETRAIN, kwargs={"run_id": run_id})


def trainer_ping_enqueue() -> None:
    """Beat's ping of the trainers (queue ``training``), dropped unanswered after a beat
    interval: a trainer whose pool cannot take work leaves it unanswered (/healthz). A broker
    out of reach costs one line, not a traceback per beat run: the next run pings again, and
    beat itself says once that it cannot send."""
    try:
        _send(TRAINER_PING, expires=settings.REQUEUE_STALE_INTERVAL_SECONDS)
    except OperationalError as exc:
        logger.warning("could not ping the trainers: %s", exc)


def trainer_ping_record(*, hostname: str, mnist_missing: str = "") -> None:
    """A trainer's pool process answered beat's ping, saying what keeps it from having MNIST
    ("" where nothing does): one row, overwritten by each answer."""
    TrainerPing.objects.update_or_create(
        pk=1, defaults={"answered_at": timezone.now(), "hostname": hostname, "mnist_missing": mnist_missing}
    )


def image_too_long_message() -> str:
    """What a person reads on an image whose reading ran past CLASSIFY_TIME_LIMIT_SECONDS."""
    return (
        f"Reading this image took too long (over {settings.CLASSIFY_TIME_LIMIT_SECONDS:g} s), so we stopped; "
        "try a smaller or simpler picture of the digits."
    )


def images_fail(*, image_ids: list[int], message: str) -> None:
    """The images end failed with ``message`` for people, but none that finished meanwhile: the
    one way an image fails, whether the task's time limit ran out (the worker's hooks, the
    task) or classifying it did (``services.images``, which queues through this module)."""
    DigitImage.objects.filter(pk__in=image_ids).exclude(status=DigitImage.Status.DONE).update(
        status=DigitImage.Status.FAILED, error_message=message
    )


# --- Stranded work ----------------------------------------------------------------------------


def images_requeue_stale(
    *, older_than: timedelta | None = None, connecting: bool = False, broker_lost_at: datetime | None = None
) -> list[int]:
    """Queue again the images stranded by a fault (``selectors.images_stranded``: never
    queued, taken by a worker run that is gone, queued before a broker connection that was
    lost at ``broker_lost_at``) or still waiting after ``older_than``; ``connecting``: a worker
    has just connected to the broker. Returns the ids that reached the broker."""
    if older_than is None:
        older_than = timedelta(seconds=settings.CLASSIFY_STALE_AFTER_SECONDS)
    stranded = images_stranded(older_than=older_than, connecting=connecting, broker_lost_at=broker_lost_at)
    queued = images_enqueue(stranded)
    if queued:
        logger.info("requeued %d stranded images", len(queued))
    return queued


def requeue_run_record(*, requeued: int) -> None:
    """Beat's requeue_stale ran: one row, overwritten by each run, for /healthz."""
    RequeueRun.objects.update_or_create(pk=1, defaults={"ran_at": timezone.now(), "requeued": requeued})


def images_claim(*, image_ids: list[int], run: str) -> None:
    """A worker run took the message of these images: if that run dies, they are stranded."""
    DigitImage.objects.filter(
        pk__in=image_ids, status__in=[DigitImage.Status.PENDING, DigitImage.Status.PROCESSING]
    ).update(claimed_by=run)


# --- The workers' records: heartbeats and readiness, for /healthz and the cards ---------------


def worker_heartbeat_record(*, hostname: str, run: str, started_at: datetime) -> None:
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname, defaults={"seen_at": timezone.now(), "started_at": started_at, "run": run}
    )


def worker_warming_record(*, hostname: str, run: str) -> bool:
    """A worker (re)starts as a new ``run``: until one of its processes has loaded the model it
    is not ready, and whatever its previous run had taken is stranded from now on. Returns
    whether a previous run had not stopped cleanly (it left its heartbeat behind: it was killed,
    or its machine went down)."""
    now = timezone.now()
    _, created = WorkerHeartbeat.objects.update_or_create(
        hostname=hostname,
        defaults={"seen_at": now, "run": run, "ready_at": None},
        create_defaults={"seen_at": now, "started_at": now, "run": run},
    )
    return not created


def worker_ready_record(*, hostname: str) -> None:
    """One of the worker's processes has the model loaded: uploads are classified at once."""
    now = timezone.now()
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname,
        defaults={"seen_at": now, "ready_at": now},
        create_defaults={"seen_at": now, "started_at": now, "ready_at": now},
    )


def worker_heartbeat_clear(*, hostname: str) -> None:
    """A worker that stops cleanly says so at once rather than going stale."""
    WorkerHeartbeat.objects.filter(hostname=hostname).delete()
