"""Redis goes down while people upload: uploads are kept and shown as queued, nothing
answers 500, and once Redis is back (empty, like a restart that lost its queue) the stale
check queues them again and the same worker classifies every one."""

import os
import shutil
import socket
import subprocess
import time
from io import StringIO

import pytest
import redis
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse

from classifier.models import DigitImage
from classifier.tests.conftest import broker, wait_until_finished
from classifier.tests.factories import UserFactory
from ml.tests.conftest import encode, upscale

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


class RedisServer:
    """A Redis of this test's own, on a free port, keeping nothing on disk."""

    def __init__(self, folder):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.folder, self.process = folder, None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.folder,
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        for _ in range(100):
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path):
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed; CI must provide it")
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def broker_env(redis_server, tmp_path_factory):
    with broker("redis", tmp_path_factory.mktemp("broker"), redis_url=redis_server.url) as env:
        yield env


def test_uploads_during_a_redis_outage_are_kept_and_classified_later(client, worker, redis_server, mnist):
    user = UserFactory()
    client.force_login(user)
    redis_server.stop()

    indices = range(5)
    files = [SimpleUploadedFile(f"digit-{i}.png", encode(255 - upscale(mnist.test.images[i], 84))) for i in indices]
    started = time.monotonic()
    response = client.post(reverse("classifier:home"), {"images": files})
    seconds = time.monotonic() - started
    assert response.status_code == 302, response.content[:500]
    page = client.get(response.url).content.decode()
    assert "5 images uploaded" in page
    assert (
        page.count('data-status="pending"') == 5
    )  # kept and waiting ("queued…", or "warming up…" while the worker starts)
    print(f"upload of 5 images with the broker down answered in {seconds:.1f} s")

    images = list(DigitImage.objects.filter(owner=user).order_by("pk"))
    assert [image.status for image in images] == [DigitImage.Status.PENDING] * 5
    assert all(image.file.storage.exists(image.file.name) for image in images)
    assert worker.poll() is None, "the worker must survive the outage"

    redis_server.start()  # empty: the outage lost whatever was queued
    out = StringIO()
    call_command("requeue_stale", "--older-than", "0", stdout=out)
    assert out.getvalue().strip() == "requeued 5 images"
    wait_until_finished([image.pk for image in images], worker, timeout=180)
    for image, index in zip(images, indices, strict=True):
        image.refresh_from_db()
        assert image.status == DigitImage.Status.DONE
        assert image.prediction.digit == mnist.test.labels[index]
