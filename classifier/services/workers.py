"""Workers' heartbeats and readiness, and beat's requeue_stale runs, for /healthz and the cards."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from classifier.models import DigitImage, RequeueRun, WorkerHeartbeat


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


def images_claim(*, image_ids: list[int], run: str) -> None:
    """A worker run took the message of these images: if that run dies, they are stranded."""
    DigitImage.objects.filter(
        pk__in=image_ids, status__in=[DigitImage.Status.PENDING, DigitImage.Status.PROCESSING]
    ).update(claimed_by=run)


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


def requeue_run_record(*, requeued: int) -> None:
    """Beat's requeue_stale ran: one row, overwritten by each run."""
    RequeueRun.objects.update_or_create(pk=1, defaults={"ran_at": timezone.now(), "requeued": requeued})
