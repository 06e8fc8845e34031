import ctypes
import logging
import os
import signal
import sys
from functools import partial
from pathlib import Path
from time import monotonic

import billiard.pool
import billiard.queues
import celery.concurrency.prefork
import celery.worker.consumer
from celery import Celery
from celery.beat import PersistentScheduler
from celery.signals import beat_embedded_init, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "digitsite.settings")

logger = logging.getLogger(__name__)

# The worker's hooks (warm start, claims, heartbeats, recovery) live in classifier.queueing.worker;
# the worker imports it as it starts (``include``), once Django is set up, which connects them.
# Named, not imported: this module is imported before Django's apps are ready, and
# classifier.queueing sends its tasks through this app.
app = Celery("digitsite", include=["classifier.queueing.worker"])
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# Beat tries a run it could not send again this soon (the broker was down), not an interval later.
MISSED_RUN_RETRY_SECONDS = 2.0


class Scheduler(PersistentScheduler):
    """Celery's schedule file, in a folder beat creates: on a fresh clone var/ does not exist,
    and beat would die at start while its worker goes on as if all were well. A run that could
    not be sent (the broker was down) stays due and is tried again every few seconds, so that
    it runs as the broker comes back instead of being skipped; beat says so once, and once
    more when it can send again (it tried, and logged, about 200 times a second: issue 42)."""

    _missed_since: float | None = None  # monotonic: since when runs could not be sent
    _retry_at = 0.0

    def _open_schedule(self):
        Path(self.schedule_filename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open_schedule()

    def apply_entry(self, entry, producer=None):
        try:
            self.apply_async(entry, producer=producer, advance=False)
        except Exception as exc:
            if self._missed_since is None:
                self._missed_since = monotonic()
                logger.warning(
                    "beat could not send %s (%s); trying again every %.0f s, quiet until it can",
                    entry.name,
                    exc,
                    MISSED_RUN_RETRY_SECONDS,
                )
            self.schedule[entry.name] = entry  # not advanced: still due
            self._heap = None  # rebuilt from the schedule at the next tick
            self._retry_at = monotonic() + MISSED_RUN_RETRY_SECONDS
        else:
            if self._missed_since is not None:
                logger.warning("beat sends its runs again after %.0f s", monotonic() - self._missed_since)
                self._missed_since = None

    def tick(self, *args, **kwargs):
        # After a run could not be sent Celery's tick answers "now" (the run is still due):
        # wait out the pause instead of trying again at once.
        pause = self._retry_at - monotonic()
        if pause > 0:
            return pause
        delay = super().tick(*args, **kwargs)
        return min(delay, MISSED_RUN_RETRY_SECONDS) if self._missed_since is not None else delay


# A worker that lost its broker tries again every few seconds: Kombu's default backoff grows to
# 30 s between tries, which would leave a worker idle up to 30 s after the broker is back.
RECONNECT_EVERY_SECONDS = {"interval_start": 1, "interval_step": 1, "interval_max": 3}


class Consumer(celery.worker.consumer.Consumer):
    def ensure_connected(self, conn):
        conn.ensure_connection = partial(conn.ensure_connection, **RECONNECT_EVERY_SECONDS)
        return super().ensure_connected(conn)

    def on_connection_error_after_connected(self, exc):
        """Celery 5.7 collects the broken connection, which detaches its transport, and then
        closes it. With Redis, both that close (giving unacknowledged messages back) and the
        acknowledgement of a task that was running during the outage go through the detached
        transport and raise AttributeError, which killed the worker as the outage began or as
        it reconnected (seen in bench/soak.py). The close may fail (those messages stay in
        Redis' unacknowledged list, back after the visibility timeout, and their images are
        queued again as the worker reconnects: Recovery); the transport gets its connection
        back, so that a late acknowledgement reaches Redis (or fails as a connection error,
        which Celery logs) instead of killing the worker."""
        connection = self.connection
        transport = getattr(connection, "_transport", None)
        if connection is not None:
            close = connection.close

            def close_what_is_left():
                try:
                    close()
                except AttributeError:
                    logger.info("the broken broker connection was already released")

            connection.close = close_what_is_left
        try:
            return super().on_connection_error_after_connected(exc)
        finally:
            if transport is not None and transport.client is None:
                transport.client = connection


class _TaskQueue(billiard.queues.SimpleQueue):
    """The pool's task queue, which every pool process reads from, holding its read lock (a
    semaphore shared by the processes) only to read a task that has arrived. Billiard's holds
    it while it waits: an idle process killed (the OOM killer, an operator) took the lock with
    it, and every process after it waited for it for ever while the worker looked alive
    (issue 42). A process killed while it reads a task (microseconds) still does."""

    def get_payload(self):
        while True:
            self._reader.poll(None)
            with self._rlock:
                if self._reader.poll(0):  # another process may have taken it meanwhile
                    return self._reader.recv_bytes()


class BlockingPool(billiard.pool.Pool):
    """The pool of a worker without an event loop (the embedded broker's), with _TaskQueue.
    With Redis the worker runs Celery's AsynPool: one queue per process, read without a lock."""

    def _setup_queues(self):
        super()._setup_queues()
        superseded, self._inqueue = self._inqueue, _TaskQueue(ctx=self._ctx)
        superseded.close()
        self._quick_put = self._inqueue._writer.send


class TaskPool(celery.concurrency.prefork.TaskPool):
    """Celery's prefork pool (``--pool prefork``; CELERY_WORKER_POOL), with BlockingPool."""

    BlockingPool = BlockingPool


# Each time the worker connects to the broker it queues again what a fault stranded; named, as
# above: the consumer loads its steps as the worker starts.
app.steps["consumer"].add("classifier.queueing.worker:Recovery")


# --- The beat embedded in a worker (`celery worker --beat`) dies with it ----------------------
# Beat is a child process of the worker. A worker killed with SIGKILL cannot stop it, and the
# orphan would go on sending tasks beside the beat of the restarted worker.
PR_SET_PDEATHSIG = 1
_worker_pid: int | None = None


@worker_init.connect
def _remember_worker_pid(**kwargs) -> None:
    global _worker_pid
    _worker_pid = os.getpid()


@beat_embedded_init.connect
def _die_with_the_worker(**kwargs) -> None:
    if not sys.platform.startswith("linux"):
        return  # prctl is Linux's; elsewhere run `celery beat` as its own process (docs/deploy.md)
    # SIGKILL: the kernel sends it when the parent dies, and nothing in beat can ignore it.
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != _worker_pid:  # the worker died before the line above took effect
        os._exit(1)
