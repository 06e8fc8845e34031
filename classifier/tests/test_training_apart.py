"""Classifying never waits for training (issue 34): under `make run` the Procfile starts a
trainer of its own, so an upload made while a retrain runs is answered within seconds. The
workers here take the queues the Procfile gives them, read from it."""

import re
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from classifier.models import DigitImage, RetrainRun
from classifier.services import retrain_request
from classifier.tests.conftest import REPO, Worker, wait_until_finished
from classifier.tests.factories import UserFactory
from ml.tests.conftest import encode


def _procfile_queues() -> dict[str, str]:
    lines = (REPO / "Procfile").read_text().splitlines()
    return {line.split(":", 1)[0]: re.search(r"--queues (\S+)", line).group(1) for line in lines if "--queues" in line}


def test_the_procfile_keeps_training_apart_from_classifying():
    queues = _procfile_queues()
    assert "training" not in queues["worker"].split(",") and set(queues["worker"].split(",")) == {"classify", "preview"}
    assert queues["trainer"] == "training"
    trainer = next(line for line in (REPO / "Procfile").read_text().splitlines() if line.startswith("trainer:"))
    assert "WORKER_WARM_UP=false" in trainer and "--hostname trainer@" in trainer


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_upload_made_while_a_retrain_runs_is_answered_within_seconds(client, worker_env, mnist, tmp_path):
    queues = _procfile_queues()
    # A retrain long enough to be caught running: a sixth of MNIST for one epoch, then calibration.
    retraining = worker_env | {"RETRAIN_TRAIN_LIMIT": "10000", "RETRAIN_TEST_LIMIT": "2000", "WORKER_WARM_UP": "false"}
    classifier = Worker(worker_env, tmp_path / "worker.log", queues=queues["worker"]).start()
    trainer = Worker(retraining, tmp_path / "trainer.log", args=("-n", "trainer@%h"), queues=queues["trainer"]).start()
    try:
        deadline = time.monotonic() + 180
        while "ready to classify" not in (tmp_path / "worker.log").read_text():
            assert time.monotonic() < deadline and classifier.poll() is None, "the worker never got ready"
            time.sleep(0.5)
        run = retrain_request(epochs=1, force=True, requested_by=UserFactory(is_staff=True))
        while RetrainRun.objects.get(pk=run.pk).status != RetrainRun.Status.RUNNING:
            assert time.monotonic() < deadline and trainer.poll() is None, "the retrain never started"
            time.sleep(0.5)
        time.sleep(5)  # well into the epoch
        client.force_login(UserFactory())
        started = time.monotonic()
        response = client.post(
            reverse("classifier:home"),
            {"images": [SimpleUploadedFile("digit.png", encode(255 - mnist.test.images[0]))]},
            follow=True,
        )
        assert "uploaded; classifying now." in response.content.decode()
        image = DigitImage.objects.latest("pk")
        wait_until_finished([image.pk], classifier, timeout=30)
        answered = time.monotonic() - started
        # The proof holds only if the retrain was still running when the answer came.
        assert RetrainRun.objects.get(pk=run.pk).status == RetrainRun.Status.RUNNING, "the retrain ended first"
        image.refresh_from_db()
        assert image.status == DigitImage.Status.DONE and image.prediction.digit == mnist.test.labels[0]
        assert answered < 30
    finally:
        classifier.stop()
        trainer.stop()
