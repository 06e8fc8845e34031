"""The hooks a worker runs through its life: a warm start, claims as it takes messages,
heartbeats, and recovery each time it connects to the broker.

``digitsite/celery.py`` installs them: the worker imports this module as it starts (Celery's
``include``), which connects the signal handlers below, and adds ``Recovery`` to each consumer.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import uuid
from datetime import datetime

from billiard.exceptions import TimeLimitExceeded, WorkerLostError
from celery import bootsteps
from celery.signals import (
    task_failure,
    task_received,
    worker_init,
    worker_process_init,
    worker_ready,
    worker_shutdown,
)
from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from classifier.queueing import (
    CLASSIFY_IMAGE,
    CLASSIFY_IMAGES,
    RETRAIN,
    image_too_long_message,
    images_claim,
    images_fail,
    images_requeue_stale,
    worker_heartbeat_clear,
    worker_heartbeat_record,
    worker_ready_record,
    worker_warming_record,
)
from classifier.services import model_warm_up
from classifier.services.retrain_requests import retrain_fail, retrains_fail_orphaned

logger = logging.getLogger(__name__)


# --- Warm start: each pool process loads the model before its first task ------------------------


# This run of the worker: set as it starts, in its main process, where messages are received.
_run = ""
# When this run started, if the previous run of this worker died without stopping cleanly.
_started_after_a_crash: datetime | None = None


@worker_init.connect
def _warming(sender, **kwargs) -> None:
    """In the worker's main process, before its pool starts: a new run, not ready until one of
    its processes is; what the previous run of this worker had taken is stranded from now on."""
    global _run, _started_after_a_crash
    _run = uuid.uuid4().hex
    try:
        if worker_warming_record(hostname=sender.hostname, run=_run):
            _started_after_a_crash = timezone.now()
    except DatabaseError:
        logger.warning("could not record that this worker is warming up", exc_info=True)
    finally:
        connection.close()  # never share a connection with the processes forked next
    # This process claims images as it takes messages (_claim), and it forks a new pool process
    # whenever one dies: a connection the new process inherited was closed by it, from under
    # this one (seen in bench/soak.py with PostgreSQL). Close it before each fork instead.
    os.register_at_fork(before=lambda: connection.close())


# The parent's own threads (heartbeat, recovery) use the database while the main thread forks
# new pool processes: a fork in the middle of a thread's database call hands the child the
# driver's locks as they were, held by a thread the child does not have (seen: a new pool
# process waiting forever to open its SQLite connection after its predecessor was killed).
# They hold this lock around their database work, and a fork waits for it.
_database_threads = threading.Lock()
os.register_at_fork(
    before=_database_threads.acquire,
    after_in_parent=_database_threads.release,
    after_in_child=_database_threads.release,
)


# --- Recovery: a run that takes a message claims its images; a (re)connected worker requeues --


def _image_ids(name: str, args, kwargs) -> list[int]:
    if name == CLASSIFY_IMAGES:
        return list(args[0]) if args else list(kwargs.get("image_ids", []))
    if name == CLASSIFY_IMAGE:
        return [args[0]] if args else [kwargs["image_id"]]
    return []


@task_received.connect
def _claim(request, **kwargs) -> None:
    """As the worker takes a classification message (before a pool process starts it, so that a
    message waiting for a free process is covered too): its images are this run's. If the run
    dies, recovery finds them by the claim instead of waiting for their age."""
    image_ids = _image_ids(request.name, request.args, request.kwargs)
    if not image_ids or not _run:
        return
    try:
        images_claim(image_ids=image_ids, run=_run)
    except DatabaseError:
        logger.warning("could not claim images %s for this worker run", image_ids, exc_info=True)
        connection.close()  # the next message opens a fresh connection (the database may be back)


def requeue_stranded_in_background(*, broker_lost_at: datetime | None) -> None:
    """The worker connected to the broker (at start, or again after losing it at
    ``broker_lost_at``): queue again, at once, what a fault stranded. In a thread, so that the
    worker takes messages meanwhile; a failure is logged and left to beat's next run.

    A run that starts after its predecessor died counts as one whose connection was lost as it
    started: the dead run may have taken a message from the broker in the instant before it
    could claim its images, and only the visibility timeout would give that message back."""
    global _started_after_a_crash
    if broker_lost_at is None and _started_after_a_crash is not None:
        broker_lost_at, _started_after_a_crash = _started_after_a_crash, None

    def recover() -> None:
        with _database_threads:
            try:
                requeued = images_requeue_stale(connecting=True, broker_lost_at=broker_lost_at)
                if requeued:
                    logger.warning("connected to the broker: queued %d stranded images again", len(requeued))
            except Exception:
                logger.warning("could not queue stranded images again; beat's next run will", exc_info=True)
            finally:
                connection.close()

    threading.Thread(target=recover, name="digitsite-recovery", daemon=True).start()


class Recovery(bootsteps.StartStopStep):
    """Each time the worker connects to the broker (at start, and again after losing it), queue
    again at once what a fault stranded: images taken by a run of a worker that is gone, never
    queued, or (after a lost connection) queued before it, which a broker restarted empty lost."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.lost_at = None

    def start(self, parent):
        requeue_stranded_in_background(broker_lost_at=self.lost_at)

    def stop(self, parent):
        self.lost_at = timezone.now()


@worker_process_init.connect
def _leave_stopping_to_the_parent(**kwargs) -> None:
    """A pool process ignores SIGTERM: its worker stops it. Process managers that stop a
    whole process group (honcho under `make run`, systemd's default) send SIGTERM to every
    process at once; a pool process that died of it was logged as an ERROR and replaced by a
    new one that loaded the model during the shutdown, which outlasted honcho's 5 s and ended
    in a SIGKILL. The worker's warm shutdown lets each process finish its task and exit; a
    process left behind by a dead worker gets SIGKILL from the kernel (celery's pdeathsig)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


@worker_process_init.connect
def _warm_up(sender=None, **kwargs) -> None:
    """In each pool process as it starts (celery allows it WORKER_PROC_ALIVE_TIMEOUT): load
    the active model and run it once, so that the first upload waits for nothing. A failure is
    logged and left to the first task, which loads the model itself and fails visibly."""
    if not settings.WORKER_WARM_UP:
        return
    try:
        version, seconds = model_warm_up()
        logger.info("model version %s loaded and warmed up in %.1f s: ready to classify", version.number, seconds)
        if sender:
            worker_ready_record(hostname=str(sender))
    except Exception:
        logger.warning("could not load the model at start; the first task will try again", exc_info=True)
    finally:
        connection.close()


# --- Heartbeat: each worker says it is alive, for /healthz -----------------------------------

_heartbeats: dict[str, threading.Event] = {}


@worker_ready.connect
def _start_heartbeat(sender, **kwargs) -> None:
    hostname, run, started_at, stop = sender.hostname, _run, timezone.now(), threading.Event()

    def beat() -> None:
        while not stop.is_set():
            with _database_threads:
                try:
                    worker_heartbeat_record(hostname=hostname, run=run, started_at=started_at)
                except DatabaseError:
                    logger.warning("could not record this worker's heartbeat", exc_info=True)
                finally:
                    connection.close()  # this thread's own connection; the next beat opens a fresh one
            stop.wait(settings.WORKER_HEARTBEAT_SECONDS)

    _heartbeats[hostname] = stop
    threading.Thread(target=beat, name="digitsite-heartbeat", daemon=True).start()


@worker_shutdown.connect
def _stop_heartbeat(sender, **kwargs) -> None:
    """A clean stop clears the worker's row at once, also when it stops before its heartbeat
    began (the row is written as the worker starts: _warming)."""
    stop = _heartbeats.pop(getattr(sender, "hostname", ""), None)
    if stop is not None:
        stop.set()
    if not _run or not getattr(sender, "hostname", None):
        return  # not a worker that started here
    try:
        worker_heartbeat_clear(hostname=sender.hostname)
    except DatabaseError:
        logger.warning("could not clear this worker's heartbeat", exc_info=True)


# --- The last line: a pool process killed at its hard time limit, or lost, mid-task -----------


@worker_ready.connect
def _fail_retrains_of_a_previous_run(sender, **kwargs) -> None:
    """A trainer (re)starting: a retrain its previous run left running died with it."""
    with _database_threads:
        try:
            retrains_fail_orphaned(hostname=sender.hostname)
        except DatabaseError:
            logger.warning("could not check for retrains left running by this worker", exc_info=True)
        finally:
            connection.close()


@task_failure.connect
def _fail_what_a_killed_process_was_doing(sender=None, exception=None, args=None, kwargs=None, **rest) -> None:
    """In the worker's main process, when a pool process was killed under a task: at its hard
    time limit (it ignored the soft one), or by something else (the OOM killer). A killed
    classification's images fail with a sentence (a lost one is delivered again, and fails
    after CLASSIFY_MAX_ATTEMPTS); a killed retrain fails with the reason, at once."""
    if not isinstance(exception, TimeLimitExceeded | WorkerLostError) or sender is None:
        return
    args, kwargs = args or (), kwargs or {}
    with _database_threads:
        try:
            if sender.name == RETRAIN:
                retrain_fail(run_id=kwargs.get("run_id", args[0] if args else None), timed_out=_timed_out(exception))
            elif _timed_out(exception):
                images_fail(image_ids=_image_ids(sender.name, args, kwargs), message=image_too_long_message())
        except DatabaseError:
            logger.warning("could not record what the killed pool process was doing", exc_info=True)
        finally:
            connection.close()


def _timed_out(exception: BaseException) -> bool:
    return isinstance(exception, TimeLimitExceeded)
