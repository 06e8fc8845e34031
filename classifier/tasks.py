"""Celery tasks: thin, idempotent, taking primary keys. They are sent by name
(``classifier.queueing``); the worker's own hooks are in ``classifier/queueing/worker.py``."""

import logging

from celery import shared_task
from django.db import DatabaseError, InterfaceError

from classifier.queueing import (
    CLASSIFY_IMAGE,
    CLASSIFY_IMAGES,
    PREVIEW_DRAWING,
    REQUEUE_STALE,
    RETRAIN,
    images_requeue_stale,
    requeue_run_record,
)
from classifier.services import drawing_preview_run, prediction_run, predictions_run, retrain_run

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


@shared_task(name=CLASSIFY_IMAGE, **RELIABLE)
def classify_image(image_id: int) -> None:
    prediction_run(image_id=image_id)


@shared_task(name=CLASSIFY_IMAGES, **RELIABLE)
def classify_images(image_ids: list[int]) -> None:
    """One upload's images (up to CLASSIFY_BATCH_SIZE): one model call for all of them."""
    predictions_run(image_ids=image_ids)


@shared_task(name=PREVIEW_DRAWING, acks_late=False, ignore_result=True)
def preview_drawing(preview_id: str) -> None:
    """The draw page's live answer (queue ``preview``). Disposable: never retried, acknowledged
    on receipt, and dropped unstarted after DRAW_PREVIEW_EXPIRES_SECONDS (``expires``)."""
    drawing_preview_run(preview_id=preview_id)


@shared_task(name=REQUEUE_STALE)
def requeue_stale() -> int:
    """Beat's periodic run; recorded so that /healthz notices when beat stops."""
    requeued = len(images_requeue_stale())
    requeue_run_record(requeued=requeued)
    return requeued


@shared_task(name=RETRAIN, acks_late=False)
def retrain(run_id: int) -> str:
    """A RetrainRun asked for from the admin or `manage.py retrain --background`, on the training
    queue (CELERY_TASK_ROUTES); its progress and outcome are on the run. Acknowledged as it
    starts: a retrain outlasts Redis' visibility timeout (settings), which would hand a
    late-acknowledged one to a second trainer while the first still runs. A retrain whose
    worker dies is therefore not run again by itself; staff ask for it again."""
    run = retrain_run(run_id=run_id, log=logger.info)
    logger.info("retraining finished: %s", run.summary)
    return run.status
