"""Three machines that share nothing but the services: an S3-compatible endpoint (moto's
server, a real HTTP endpoint on 127.0.0.1), the database and the broker. Two classification
workers and a trainer, each with its own working directory, MEDIA_ROOT, model cache and
versions folder; uploads through the site; both workers classify; staff flag; the trainer
retrains; the new version becomes active and both workers classify with it; rollback."""

import time
from pathlib import Path

import boto3
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from classifier.models import DigitImage, ModelVersion, RetrainRun, WorkerHeartbeat
from classifier.services import image_flag, model_version_activate, model_version_archive_save, retrain_request
from classifier.tests.conftest import REPO, Worker, wait_until_finished
from classifier.tests.factories import ReviewerFactory
from ml.tests.conftest import encode, upscale

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

BUCKET = "digitsite-machines"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture
def object_store(monkeypatch, settings):
    """moto's S3 server on a free port, its bucket, and this (web) process's uploads in it."""
    from moto.server import ThreadedMotoServer

    from bench.stack import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    options = {"bucket_name": BUCKET, "endpoint_url": endpoint, "region_name": "us-east-1", "default_acl": None}
    # Django's test signals give default_storage the new backend.
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options},
    }
    yield {"AWS_STORAGE_BUCKET_NAME": BUCKET, "AWS_S3_ENDPOINT_URL": endpoint, "AWS_S3_REGION_NAME": "us-east-1"}
    server.stop()


def machine(name: str, root: Path, base_env: dict, store: dict) -> dict:
    """The environment of a process on a machine of its own: nothing under another's folder."""
    home = root / name
    home.mkdir()
    return (
        {k: v for k, v in base_env.items() if k not in ("MEDIA_ROOT", "MODEL_CACHE_DIR")}
        | store
        | CREDENTIALS
        | {
            "PYTHONPATH": str(REPO),
            "MEDIA_ROOT": str(home / "media"),
            "MODEL_CACHE_DIR": str(home / "model-cache"),
            "MODEL_VERSIONS_DIR": str(home / "model-versions"),
            "RETRAIN_TRAIN_LIMIT": "2000",
            "RETRAIN_TEST_LIMIT": "1000",
            "RETRAIN_JUDGING_PER_SET": "20",
            "RETRAIN_EPOCHS": "1",
        }
    )


def upload(client, mnist, indices) -> list[int]:
    files = [SimpleUploadedFile(f"d{i}.png", encode(255 - upscale(mnist.test.images[i], 84))) for i in indices]
    response = client.post(reverse("classifier:home"), {"images": files})
    assert response.status_code == 302
    return list(DigitImage.objects.order_by("-pk").values_list("pk", flat=True)[: len(files)])


def test_two_workers_and_a_trainer_share_nothing_but_the_services(
    client, worker_env, object_store, tmp_path, mnist, tiny_model_dir, settings
):
    # Version 2, a small model, as if a trainer had made it: its archive is in the bucket only.
    archive, checksum = model_version_archive_save(number=2, directory=tiny_model_dir)
    ModelVersion.objects.create(
        number=2, architecture="basic", path="made/elsewhere", archive=archive, checksum=checksum
    )
    model_version_activate(number=2)

    machines = tmp_path / "machines"
    machines.mkdir()
    envs = {name: machine(name, machines, worker_env, object_store) for name in ("one", "two", "trainer")}
    workers = [
        Worker(envs[name], machines / f"{name}.log", args=("-n", f"{name}@%h"), cwd=machines / name)
        for name in ("one", "two")
    ]
    trainer = Worker(
        envs["trainer"],
        machines / "trainer.log",
        args=("-n", "trainer@%h"),
        queues="training",
        cwd=machines / "trainer",
    )
    for process in (*workers, trainer):
        process.start()
    try:
        user = ReviewerFactory()
        client.force_login(user)
        deadline = time.monotonic() + 120  # each consuming: both take part from the first upload
        while not all(" ready." in (machines / f"{name}.log").read_text() for name in ("one", "two", "trainer")):
            assert time.monotonic() < deadline, "the three processes never started"
            time.sleep(0.5)

        # Uploads through the site, classified by both workers with version 2.
        ids = []
        for start in range(0, 60, 5):
            ids += upload(client, mnist, range(start, start + 5))
        wait_until_finished(ids, workers[0], timeout=120)
        images = DigitImage.objects.filter(pk__in=ids).select_related("prediction__model_version")
        assert {image.prediction.model_version.number for image in images} == {2}
        runs = dict(WorkerHeartbeat.objects.values_list("run", "hostname"))
        classified_by = {runs[image.claimed_by].split("@")[0] for image in images}
        assert classified_by == {"one", "two"}, "both workers classify"

        # Staff flag; the trainer retrains and the new version becomes active.
        for image in list(images)[:12]:
            image_flag(image=image, correct_number=str(mnist.test.labels[ids.index(image.pk)]), flagged_by=user)
        run = retrain_request(epochs=1, force=True, requested_by=user)
        deadline = time.monotonic() + 300
        while RetrainRun.objects.get(pk=run.pk).in_progress:
            assert time.monotonic() < deadline and trainer.poll() is None, "the retrain never finished"
            time.sleep(1)
        run.refresh_from_db()
        assert run.status == RetrainRun.Status.PROMOTED, run.reason
        newest = run.candidate
        assert newest.is_active and newest.checksum and newest.number == 3

        later = []
        for start in range(100, 140, 5):
            later += upload(client, mnist, range(start, start + 5))
        wait_until_finished(later, workers[0], timeout=120)
        versions = {
            (runs.get(i.claimed_by, "?").split("@")[0], i.prediction.model_version.number)
            for i in DigitImage.objects.filter(pk__in=later).select_related("prediction__model_version")
        }
        assert versions == {("one", 3), ("two", 3)}

        # Rollback: both classify with version 2 again.
        model_version_activate(number=2)
        rolled = []
        for start in range(200, 240, 5):
            rolled += upload(client, mnist, range(start, start + 5))
        wait_until_finished(rolled, workers[0], timeout=120)
        assert {
            i.prediction.model_version.number
            for i in DigitImage.objects.filter(pk__in=rolled).select_related("prediction__model_version")
        } == {2}
    finally:
        for process in (*workers, trainer):
            process.stop()

    # Each fetched what it served from the bucket, once per version, checked by its checksum;
    # no process wrote a file where another reads, and uploads never touched a disk.
    for name in ("one", "two"):
        log = (machines / f"{name}.log").read_text()
        assert log.count("downloaded from storage") == 2 and checksum in log and newest.checksum in log
        assert sorted(p.name for p in (machines / name / "model-cache").iterdir() if p.is_dir()) == sorted(
            [checksum, newest.checksum]
        )
    assert (machines / "trainer" / "model-versions" / "v3").is_dir()
    assert not any((machines / name / "model-versions").exists() for name in ("one", "two"))
    assert not any((machines / name / "media").exists() for name in ("one", "two", "trainer"))
    assert not (Path(settings.MEDIA_ROOT) / "uploads").exists()
