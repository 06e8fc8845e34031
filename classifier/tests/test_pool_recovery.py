"""A pool process killed while idle (the OOM killer, an operator) does not stop its worker
(issue 42, finding 3): with real workers, the classifying one and the trainer. An idle pool
process waits for its next task holding its queue's read lock; a replacement that took over
the same queue would wait for that lock for ever. ``digitsite.celery.AsynPool`` gives it new ones."""

import os
import signal
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from classifier.models import RetrainRun, WorkerHeartbeat
from classifier.services import image_upload_create, retrain_request
from classifier.tests.conftest import Worker, broker, wait_until_finished
from classifier.tests.factories import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

RECOVERED_WITHIN = 30  # seconds (docs/reliability.md)


@pytest.fixture(params=["embedded", "redis"])
def broker_env(request, tmp_path_factory):
    """Both pools: the embedded broker's worker has no event loop and runs billiard's pool,
    whose processes share one task queue; with Redis it runs Celery's AsynPool."""
    with broker(request.param, tmp_path_factory.mktemp("broker")) as env:
        yield env


def wait_for(condition, worker, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        assert worker.poll() is None, f"the worker process died; see {worker.log_path}"
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout} s; see {worker.log_path}")


def kill_the_idle_child(worker) -> None:
    """SIGKILL the pool's only process once it waits for a task, and see a new one start."""
    time.sleep(1)  # past the worker's start: the process is waiting for its first task
    [child] = worker.children()
    os.kill(child, signal.SIGKILL)
    wait_for(lambda: worker.children() and child not in worker.children(), worker, timeout=10, what="a new child")


def test_a_classifying_worker_whose_idle_pool_process_was_killed_answers_the_next_upload(worker, png):
    wait_for(WorkerHeartbeat.objects.filter(ready_at__isnull=False).exists, worker, timeout=120, what="a warm worker")
    kill_the_idle_child(worker)

    killed = time.monotonic()
    outcome = image_upload_create(owner=UserFactory(), files=[SimpleUploadedFile("seven.png", png)])
    ids = [image.pk for image in outcome.created]
    wait_until_finished(ids, worker, timeout=RECOVERED_WITHIN)
    print(f"answered {time.monotonic() - killed:.1f} s after the idle pool process was killed")


def test_a_trainer_whose_idle_pool_process_was_killed_starts_the_next_retrain(worker_env, tmp_path):
    trainer = Worker(
        worker_env | {"WORKER_WARM_UP": "false"},
        tmp_path / "trainer.log",
        args=("--hostname", "trainer@test"),
        queues="training",
    ).start()
    try:
        wait_for(lambda: " ready." in trainer.log_path.read_text(), trainer, timeout=60, what="a started trainer")
        kill_the_idle_child(trainer)

        killed = time.monotonic()
        run = retrain_request(epochs=None, force=False)  # nothing to learn from: it fails at once
        wait_for(
            lambda: RetrainRun.objects.get(pk=run.pk).status != RetrainRun.Status.QUEUED,
            trainer,
            timeout=RECOVERED_WITHIN,
            what="the retrain started",
        )
        print(f"the retrain started {time.monotonic() - killed:.1f} s after the idle pool process was killed")
    finally:
        trainer.stop()
