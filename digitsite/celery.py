import ctypes
import os
import signal
import sys
from pathlib import Path

from celery import Celery
from celery.beat import PersistentScheduler
from celery.signals import beat_embedded_init, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "digitsite.settings")

app = Celery("digitsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class Scheduler(PersistentScheduler):
    """Celery's schedule file, in a folder beat creates: on a fresh clone var/ does not exist,
    and beat would die at start while its worker goes on as if all were well."""

    def _open_schedule(self):
        Path(self.schedule_filename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open_schedule()


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
