"""End to end with real processes: the views store uploads, a real broker carries the task,
a separate Celery worker process classifies them into the real test database."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import kombu.pools
import pytest
import redis
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.urls import reverse

from classifier.models import DigitImage, Prediction
from classifier.tests.factories import UserFactory
from digitsite.brokers import filesystem_broker_options
from digitsite.celery import app as celery_app
from ml.tests.conftest import encode

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
REDIS_URL = (
    os.environ.get("CELERY_BROKER_URL", "")
    if os.environ.get("CELERY_BROKER_URL", "").startswith("redis")
    else "redis://127.0.0.1:6379/15"
)


def _redis_up() -> bool:
    try:
        return redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return False


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    return f"postgres://{user}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def _use_broker(url: str, options: dict) -> None:
    """Point this (web) process's Celery app at another broker."""
    # Celery reads CELERY_BROKER_URL from the environment before its own configuration.
    os.environ["CELERY_BROKER_URL"] = url
    celery_app.conf.broker_url = url
    celery_app.conf.broker_transport_options = options
    kombu.pools.reset()  # kombu's process-wide connection and producer pools
    celery_app._after_fork()  # and the app's own references to them


@pytest.fixture(params=["embedded", "redis"])
def broker(request, tmp_path_factory):
    if request.param == "redis":
        if not _redis_up():
            if os.environ.get("CI") == "true":
                pytest.fail(f"Redis is not reachable at {REDIS_URL}; CI must provide it")
            pytest.skip("Redis is not running here")
        redis.Redis.from_url(REDIS_URL).flushdb()
        url, options, env = REDIS_URL, {}, {"CELERY_BROKER_URL": REDIS_URL}
    else:
        folder = tmp_path_factory.mktemp("broker")
        url = "filesystem://"
        options = filesystem_broker_options(folder)
        env = {"CELERY_BROKER_URL": url, "CELERY_BROKER_FOLDER": str(folder)}
    saved_env = os.environ.get("CELERY_BROKER_URL")
    saved = celery_app.conf.broker_url, celery_app.conf.broker_transport_options
    _use_broker(url, options)
    yield env
    _use_broker(*saved)
    if saved_env is None:
        os.environ.pop("CELERY_BROKER_URL", None)


@pytest.fixture
def worker(broker, settings, tmp_path):
    """A real `celery worker` process sharing the test database and media folder."""
    media = tmp_path / "shared-media"
    settings.MEDIA_ROOT = media
    env = (
        os.environ
        | broker
        | {
            "DATABASE_URL": _database_url(),
            "MEDIA_ROOT": str(media),
            "MNIST_DATA_DIR": str(settings.MNIST_DATA_DIR),
            "SHIPPED_MODEL_DIR": str(settings.SHIPPED_MODEL_DIR),
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
    )
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "digitsite",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            "1",
            "--loglevel",
            "INFO",
            "--without-mingle",
            "--without-gossip",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    yield process
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    log.close()


def wait_until_finished(ids, worker, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (
            not DigitImage.objects.filter(pk__in=ids)
            .exclude(status__in=[DigitImage.Status.DONE, DigitImage.Status.FAILED])
            .exists()
        ):
            return
        assert worker.poll() is None, "the worker process died"
        time.sleep(0.3)
    states = list(DigitImage.objects.filter(pk__in=ids).values_list("pk", "status"))
    raise AssertionError(f"images not classified within {timeout}s: {states}")


def test_uploads_are_classified_by_a_real_worker(client, worker, mnist):
    user = UserFactory()
    client.force_login(user)
    digits = [0, 1, 2]  # test-set indices: a 7, a 2 and a 1
    files = [SimpleUploadedFile(f"digit-{i}.png", encode(255 - mnist.test.images[i])) for i in digits]
    files.append(SimpleUploadedFile("broken.jpg", b"\xff\xd8\xff\xe0 truncated"))
    files.append(SimpleUploadedFile("blank.png", encode(__import__("numpy").full((80, 80), 255))))
    response = client.post(reverse("classifier:home"), {"images": files}, follow=True)
    assert "broken.jpg: This file is not an image we can read" in response.content.decode()

    images = list(DigitImage.objects.filter(owner=user).order_by("id"))
    assert len(images) == 4
    wait_until_finished([i.pk for i in images], worker)

    for image, index in zip(images[:3], digits, strict=True):
        image.refresh_from_db()
        assert image.status == DigitImage.Status.DONE
        assert image.prediction.digit == mnist.test.labels[index]
        assert image.prediction.model_version.is_active
    blank = images[3]
    blank.refresh_from_db()
    assert blank.status == DigitImage.Status.FAILED and "No digit found" in blank.error_message
    assert Prediction.objects.filter(image__owner=user).count() == 3
    # The gallery card of a finished image tells htmx to stop polling.
    assert client.get(reverse("classifier:image_card", args=[images[0].pk])).status_code == 286


def test_a_task_delivered_twice_stores_one_prediction(worker, mnist):
    from classifier.tasks import classify_image
    from classifier.tests.factories import DigitImageFactory

    image = DigitImageFactory(data=encode(mnist.test.images[5]))
    classify_image.delay(image.pk)
    classify_image.delay(image.pk)
    wait_until_finished([image.pk], worker)
    time.sleep(2)  # give the second delivery time to run too
    assert Prediction.objects.filter(image=image).count() == 1
    image.refresh_from_db()
    assert image.status == DigitImage.Status.DONE
