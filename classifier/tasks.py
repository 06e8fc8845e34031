"""Celery tasks: thin, idempotent, taking primary keys. They are sent by name
(``classifier.queueing``); the worker's own hooks are in ``classifier/queueing/worker.py``.

Every worker imports this module, the classifying ones too, which never load fitting code: the
trainer's two tasks import their services (``services.modelling``, ``services.retraining``)
when they run, in the trainer (``classifier/tests/test_web_process.py`` holds it)."""

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, InterfaceError

from classifier.queueing import (
    CLASSIFY_IMAGE,
    CLASSIFY_IMAGES,
    PREVIEW_DRAWING,
    REQUEUE_STALE,
    RETRAIN,
    TRAINER_PING,
    image_too_long_message,
    images_fail,
    images_requeue_stale,
    requeue_run_record,
    trainer_ping_enqueue,
    trainer_ping_record,
)
from classifier.services import drawing_preview_run, predictions_run
from classifier.services.retrain_requests import retrains_fail_orphaned

logger = logging.getLogger(__name__)

# Acknowledged after the work (a dying worker's task is delivered again), retried only on
# database errors and a bounded number of times; the services make a repeat harmless.
RELIABLE = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (DatabaseError, InterfaceError),
    "max_retries": 3,
    "retry_backoff": True,
}
# The last line (reading is bounded by design): told to stop at the soft limit, killed at the
# hard one (``classifier.queueing.worker`` then fails what it was doing).
CLASSIFY_LIMITS = {
    "soft_time_limit": settings.CLASSIFY_TIME_LIMIT_SECONDS,
    "time_limit": settings.CLASSIFY_TIME_LIMIT_SECONDS + settings.TASK_HARD_LIMIT_GRACE_SECONDS,
}


def _classify(image_ids: list[int]) -> None:
    try:
        predictions_run(image_ids=image_ids)
    except SoftTimeLimitExceeded:
        logger.warning("classifying images %s took too long: they failed", image_ids)
        images_fail(image_ids=image_ids, message=image_too_long_message())


@shared_task(name=CLASSIFY_IMAGE, **RELIABLE, **CLASSIFY_LIMITS)
def classify_image(image_id: int) -> None:
    _classify([image_id])


@shared_task(name=CLASSIFY_IMAGES, **RELIABLE, **CLASSIFY_LIMITS)
def classify_images(image_ids: list[int]) -> None:
    """One upload's images (up to CLASSIFY_BATCH_SIZE): one model call for all of them."""
    _classify(image_ids)


@shared_task(name=PREVIEW_DRAWING, acks_late=False, ignore_result=True, **CLASSIFY_LIMITS)
def preview_drawing(preview_id: str) -> None:
    """The draw page's live answer (queue ``preview``). Disposable: never retried, acknowledged
    on receipt, and dropped unstarted after DRAW_PREVIEW_EXPIRES_SECONDS (``expires``); one
    stopped at its time limit is simply not shown."""
    try:
        drawing_preview_run(preview_id=preview_id)
    except SoftTimeLimitExceeded:
        logger.warning("the live preview %s took too long: dropped", preview_id)


@shared_task(name=REQUEUE_STALE)
def requeue_stale() -> int:
    """Beat's periodic run; recorded so that /healthz notices when beat stops. It also fails
    the retrains whose trainer died and pings the trainers (``trainer_ping``)."""
    requeued = len(images_requeue_stale())
    requeue_run_record(requeued=requeued)
    retrains_fail_orphaned()
    trainer_ping_enqueue()
    return requeued


@shared_task(name=TRAINER_PING, bind=True, acks_late=False, ignore_result=True)
def trainer_ping(self) -> None:
    """Answered by a trainer's pool process: the trainer can take work (/healthz), and whether
    it has MNIST to retrain with (the admin's "Retrain now")."""
    from classifier.services.modelling import mnist_missing_here

    trainer_ping_record(hostname=self.request.hostname or "", mnist_missing=mnist_missing_here())


@shared_task(
    name=RETRAIN,
    bind=True,
    acks_late=False,
    soft_time_limit=settings.RETRAIN_TIME_LIMIT_SECONDS,
    time_limit=settings.RETRAIN_TIME_LIMIT_SECONDS + settings.TASK_HARD_LIMIT_GRACE_SECONDS,
)
def retrain(self, run_id: int) -> str:
    """A RetrainRun asked for from the admin or `manage.py retrain --background`, on the training
    queue (CELERY_TASK_ROUTES); its progress and outcome are on the run. Acknowledged as it
    starts: a retrain outlasts Redis' visibility timeout (settings), which would hand a
    late-acknowledged one to a second trainer while the first still runs. A retrain whose
    worker dies is therefore not run again by itself: it fails (``retrains_fail_orphaned``)
    and staff ask for it again."""
    from classifier.services.retraining import retrain_run

    run = retrain_run(run_id=run_id, trainer=self.request.hostname or "", log=logger.info)
    logger.info("retraining finished: %s", run.summary)
    return run.status
