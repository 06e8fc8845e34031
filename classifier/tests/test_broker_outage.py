"""Redis goes down while people upload: uploads are kept and shown as queued, nothing
answers 500, and once Redis is back (empty, like a restart that lost its queue) the worker,
reconnecting, queues them again by itself and classifies every one within seconds."""

import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from classifier.models import DigitImage
from classifier.tests.conftest import broker, wait_until_finished
from classifier.tests.factories import UserFactory
from ml.tests.conftest import encode, upscale

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

RECOVERED_WITHIN = 30  # seconds after the fault ends (docs/reliability.md)


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
    back = time.monotonic()
    # No requeue_stale, no beat: the worker's reconnection finds them never queued. The bound
    # is the goal; waiting for their age (CLASSIFY_STALE_AFTER_SECONDS) would miss it.
    wait_until_finished([image.pk for image in images], worker, timeout=RECOVERED_WITHIN)
    print(f"classified {time.monotonic() - back:.1f} s after Redis was back")
    for image, index in zip(images, indices, strict=True):
        image.refresh_from_db()
        assert image.status == DigitImage.Status.DONE
        assert image.prediction.digit == mnist.test.labels[index]
