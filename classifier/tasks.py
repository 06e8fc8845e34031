"""Celery tasks: thin, idempotent, taking primary keys."""

from celery import shared_task
from django.db import DatabaseError, InterfaceError

from classifier.services import images_requeue_stale, prediction_run, predictions_run

# Acknowledged after the work (a dying worker's task is delivered again), retried only on
# database errors and a bounded number of times; the services make a repeat harmless.
RELIABLE = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (DatabaseError, InterfaceError),
    "max_retries": 3,
    "retry_backoff": True,
}


@shared_task(name="classifier.classify_image", **RELIABLE)
def classify_image(image_id: int) -> None:
    prediction_run(image_id=image_id)


@shared_task(name="classifier.classify_images", **RELIABLE)
def classify_images(image_ids: list[int]) -> None:
    """One upload's images (up to CLASSIFY_BATCH_SIZE): one model call for all of them."""
    predictions_run(image_ids=image_ids)


@shared_task(name="classifier.requeue_stale")
def requeue_stale() -> int:
    return len(images_requeue_stale())
