"""The beat embedded in a worker (`celery worker --beat`, as the Procfile runs it), with real
processes: it starts on a fresh clone, its requeue_stale runs show in /healthz, and it dies
with its worker."""

import contextlib
import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from classifier.models import DigitImage
from classifier.tests.conftest import Worker, wait_until_finished
from classifier.tests.factories import DigitImageFactory
from ml.tests.conftest import encode

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def running(pid: int) -> bool:
    """Whether the process runs (a zombie waiting for its reaper does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_the_embedded_beat_requeues_stranded_images_on_a_fresh_clone(admin_client, worker_env, tmp_path, mnist):
    # A fresh clone has no var/ (only the default broker folder creates it): the schedule file's
    # folder does not exist. Beat queues requeue_stale every second here instead of every minute.
    schedule = tmp_path / "fresh-clone" / "var" / "celerybeat-schedule"
    env = worker_env | {"REQUEUE_STALE_INTERVAL_SECONDS": "1"}
    worker = Worker(env, tmp_path / "worker.log", args=("--beat", "--schedule", str(schedule))).start()
    try:
        # Stored while the broker was down: pending, with no message anywhere.
        stranded = DigitImageFactory(data=encode(mnist.test.images[0]))
        DigitImage.objects.filter(pk=stranded.pk).update(uploaded_at=timezone.now() - timedelta(minutes=10))
        wait_until_finished([stranded.pk], worker, timeout=90)
        stranded.refresh_from_db()
        assert stranded.prediction.digit == mnist.test.labels[0]
        body = admin_client.get("/healthz").json()
        assert body["requeue_stale"]["last_run_seconds_ago"] < 10
        assert body["requeue_stale"]["overdue"] is False
    finally:
        worker.stop()


def test_the_embedded_beat_dies_with_its_worker(worker_env, tmp_path):
    args = ("--beat", "--schedule", str(tmp_path / "celerybeat-schedule"))
    worker = Worker(worker_env, tmp_path / "worker.log", args=args).start()
    try:
        deadline = time.monotonic() + 90
        # The pool's child and beat, the child past its model's warm-up: a child still loading
        # TensorFlow notices that its parent died only when it next reads its queue.
        while len(worker.children()) < 2 or "ready to classify" not in worker.log_path.read_text():
            assert time.monotonic() < deadline, f"beat or the pool never started; see {worker.log_path}"
            assert worker.poll() is None, f"the worker process died; see {worker.log_path}"
            time.sleep(0.2)
        children = worker.children()
        os.kill(worker.pid, signal.SIGKILL)  # the parent only, as an OOM killer would
        worker.process.wait()
        # Beat at once (the kernel's SIGKILL); the pool's child within a second of reading its
        # queue, and then its exit, slower on busy cores.
        deadline = time.monotonic() + 15
        while left := [pid for pid in children if running(pid)]:
            assert time.monotonic() < deadline, f"{left} of the worker's children {children} outlived it"
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)  # whatever outlived the parent
