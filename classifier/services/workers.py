"""Workers' heartbeats and readiness, and beat's requeue_stale runs, for /healthz and the cards."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from classifier.models import RequeueRun, WorkerHeartbeat


def worker_heartbeat_record(*, hostname: str, started_at: datetime) -> None:
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname, defaults={"seen_at": timezone.now(), "started_at": started_at}
    )


def worker_warming_record(*, hostname: str) -> None:
    """A worker (re)starts: until one of its processes has loaded the model it is not ready."""
    WorkerHeartbeat.objects.filter(hostname=hostname).update(ready_at=None)


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
