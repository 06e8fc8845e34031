"""A trainer killed mid-retrain, a trainer that cannot take work, and the time limits, with real
worker processes (issue 42, findings 3 and 4 and the last line of the reading bounds)."""

import os
import signal
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from classifier.models import DigitImage, RetrainRun, WorkerHeartbeat
from classifier.queueing import requeue_run_record, trainer_ping_enqueue
from classifier.services import image_upload_create, retrain_request
from classifier.services.retrain_requests import TRAINER_DIED
from classifier.tasks import requeue_stale
from classifier.tests.conftest import Worker, wait_until_finished
from classifier.tests.factories import UserFactory
from classifier.tests.test_pool_recovery import wait_for
from classifier.tests.trainers import TRAINER, trainer_start

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FAILED_WITHIN = 60  # seconds after the trainer's death (docs/reliability.md)


@pytest.fixture
def trainer(worker_env, tmp_path):
    process = trainer_start(
        worker_env, tmp_path, RETRAIN_TRAIN_LIMIT="2000", RETRAIN_TEST_LIMIT="500", RETRAIN_EPOCHS="1"
    )
    wait_for(lambda: " ready." in process.log_path.read_text(), process, timeout=60, what="a started trainer")
    yield process
    process.stop()


def test_a_retrain_whose_trainer_was_killed_fails_with_the_reason_and_another_can_start(trainer, settings):
    settings.WORKER_HEARTBEAT_SECONDS = 1  # a trainer silent for 3 s is gone (the site's: 15 s)
    run = retrain_request(epochs=1, force=True)  # MNIST alone: it runs for a while
    wait_for(
        lambda: RetrainRun.objects.get(pk=run.pk).status == RetrainRun.Status.RUNNING,
        trainer,
        timeout=30,
        what="the retrain running",
    )
    run.refresh_from_db()
    assert run.trainer == TRAINER and run.trainer_run == WorkerHeartbeat.objects.get(hostname=run.trainer).run
    trainer.kill_all()  # parent and child: nobody is left to say the retrain stopped
    killed = time.monotonic()

    # Beat's periodic run (requeue_stale, every REQUEUE_STALE_INTERVAL_SECONDS) notices.
    while RetrainRun.objects.get(pk=run.pk).status == RetrainRun.Status.RUNNING:
        assert time.monotonic() - killed < FAILED_WITHIN, "the killed retrain still runs"
        requeue_stale()
        time.sleep(0.5)
    run.refresh_from_db()
    print(f"failed {time.monotonic() - killed:.1f} s after its trainer was killed")
    assert run.status == RetrainRun.Status.FAILED and not run.in_progress and run.reason == TRAINER_DIED
    assert "You can start a new retrain." in run.summary
    assert retrain_request(epochs=1, force=False).status == RetrainRun.Status.QUEUED


def test_a_trainer_started_again_fails_the_retrain_its_previous_run_left(trainer, worker_env, tmp_path):
    run = retrain_request(epochs=1, force=True)
    wait_for(
        lambda: RetrainRun.objects.get(pk=run.pk).status == RetrainRun.Status.RUNNING,
        trainer,
        timeout=30,
        what="the retrain running",
    )
    trainer.kill_all()
    again = Worker(trainer.env, tmp_path / "trainer-again.log", args=trainer.args, queues="training").start()
    try:  # no beat here: the trainer itself, as it starts
        wait_for(
            lambda: RetrainRun.objects.get(pk=run.pk).status == RetrainRun.Status.FAILED,
            again,
            timeout=FAILED_WITHIN,
            what="the retrain failed",
        )
        assert RetrainRun.objects.get(pk=run.pk).reason == TRAINER_DIED
        following = retrain_request(epochs=None, force=False)  # nothing to learn: it fails at once
        wait_for(
            lambda: RetrainRun.objects.get(pk=following.pk).status != RetrainRun.Status.QUEUED,
            again,
            timeout=30,
            what="the next retrain started",
        )
    finally:
        again.stop()


def test_healthz_names_a_trainer_that_cannot_take_work(trainer, client, settings, admin_user):
    settings.REQUEUE_STALE_INTERVAL_SECONDS = 1  # a ping unanswered for 3 s (the site's: 30 s)
    client.force_login(admin_user)

    def trainer_status() -> str:
        requeue_run_record(requeued=0)  # beat's runs, on time: only the trainer may be amiss
        return client.get("/healthz").json()["trainer"]["status"]

    trainer_ping_enqueue()
    wait_for(lambda: trainer_status() == "ok", trainer, timeout=30, what="an answered ping")
    assert client.get("/healthz").json()["status"] == "ok"
    [child] = trainer.children()
    os.kill(child, signal.SIGSTOP)  # alive, heartbeat and all, but its pool takes nothing
    try:
        trainer_ping_enqueue()
        time.sleep(3.5)
        requeue_run_record(requeued=0)
        client.logout()
        anonymous = client.get("/healthz")
        assert anonymous.status_code == 200 and anonymous.json() == {"status": "degraded"}  # no details
        client.force_login(admin_user)
        body = client.get("/healthz").json()
        assert body["status"] == "degraded"
        assert body["trainer"]["status"] == "cannot take work" and body["trainer"]["hostname"] == TRAINER
    finally:
        os.kill(child, signal.SIGCONT)


def test_an_upload_whose_reading_outlasts_the_time_limit_fails_with_a_sentence(worker_env, tmp_path, png):
    # A fresh pool process loads TensorFlow and the model in its first task (no warm start):
    # seconds, well past a limit of one.
    worker = Worker(
        worker_env | {"WORKER_WARM_UP": "false", "CLASSIFY_TIME_LIMIT_SECONDS": "1"}, tmp_path / "worker.log"
    ).start()
    try:
        outcome = image_upload_create(owner=UserFactory(), files=[SimpleUploadedFile("seven.png", png)])
        [image] = outcome.created
        wait_until_finished([image.pk], worker, timeout=60)
        image.refresh_from_db()
        assert image.status == DigitImage.Status.FAILED
        assert image.error_message.startswith("Reading this image took too long (over 1 s), so we stopped")
        assert worker.poll() is None
    finally:
        worker.stop()


def test_anonymous_healthz_says_only_the_status(client, admin_user):
    anonymous = client.get(reverse("healthz"))
    assert set(anonymous.json()) == {"status"}
    client.force_login(admin_user)
    assert {"database", "broker", "workers", "model", "trainer"} <= set(client.get(reverse("healthz")).json())
