"""Workers' heartbeats and beat's requeue_stale runs, for /healthz."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from classifier.models import RequeueRun, WorkerHeartbeat


def worker_heartbeat_record(*, hostname: str, started_at: datetime) -> None:
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname, defaults={"seen_at": timezone.now(), "started_at": started_at}
    )


def worker_heartbeat_clear(*, hostname: str) -> None:
    """A worker that stops cleanly says so at once rather than going stale."""
    WorkerHeartbeat.objects.filter(hostname=hostname).delete()


def requeue_run_record(*, requeued: int) -> None:
    """Beat's requeue_stale ran: one row, overwritten by each run."""
    RequeueRun.objects.update_or_create(pk=1, defaults={"ran_at": timezone.now(), "requeued": requeued})
