"""Celery tasks: thin, idempotent, taking primary keys."""

from celery import shared_task
from django.db import DatabaseError, InterfaceError

from classifier.services import images_requeue_stale, prediction_run


@shared_task(
    name="classifier.classify_image",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(DatabaseError, InterfaceError),
    max_retries=3,
    retry_backoff=True,
)
def classify_image(image_id: int) -> None:
    prediction_run(image_id=image_id)


@shared_task(name="classifier.requeue_stale")
def requeue_stale() -> int:
    return len(images_requeue_stale())
