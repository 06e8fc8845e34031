"""End to end with real processes: the views store uploads, a real broker carries the task,
a separate Celery worker process classifies them into the real test database."""

import time

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from classifier.models import DigitImage, Prediction
from classifier.tests.conftest import broker, wait_until_finished
from classifier.tests.factories import UserFactory
from ml.tests.conftest import encode

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(params=["embedded", "redis"])
def broker_env(request, tmp_path_factory):
    """Both brokers, whatever this environment configures."""
    with broker(request.param, tmp_path_factory.mktemp("broker")) as env:
        yield env


def test_one_worker_classifies_uploads_once_each_requeues_what_the_broker_lost_and_skips_deleted_images(
    client, admin_client, worker, mnist
):
    """The journeys of one real worker, on each broker, in turn: one start for all of them (a
    worker's start costs more than any of them). Each keeps to its own images."""
    wait_until_ready(worker)
    uploads_are_classified_by_a_real_worker(client, worker, mnist)
    a_task_delivered_twice_stores_one_prediction(worker, mnist)
    requeue_stale_classifies_images_the_broker_lost(worker, mnist)
    images_deleted_while_the_worker_has_them_are_skipped_and_it_goes_on(worker, mnist)
    a_running_worker_shows_in_healthz_until_it_stops(admin_client, worker)


def wait_until_ready(worker) -> None:
    """Until the worker has connected and loaded the model (its recovery run is done)."""
    from classifier.models import WorkerHeartbeat

    deadline = time.monotonic() + 120
    while not WorkerHeartbeat.objects.filter(ready_at__isnull=False).exists():
        assert time.monotonic() < deadline and worker.poll() is None, f"see {worker.log_path}"
        time.sleep(0.3)


def uploads_are_classified_by_a_real_worker(client, worker, mnist):
    user = UserFactory()
    client.force_login(user)
    digits = [0, 1, 2]  # test-set indices: a 7, a 2 and a 1
    files = [SimpleUploadedFile(f"digit-{i}.png", encode(255 - mnist.test.images[i])) for i in digits]
    files.append(SimpleUploadedFile("broken.jpg", b"\xff\xd8\xff\xe0 truncated"))
    files.append(SimpleUploadedFile("blank.png", encode(np.full((80, 80), 255))))
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
    # Nothing to read is a verdict, calm like any other, not a failure to retry.
    assert blank.status == DigitImage.Status.DONE
    assert (blank.prediction.verdict, blank.prediction.number) == ("not_a_digit", "")
    assert "looks blank" in blank.prediction.verdict_reason
    assert Prediction.objects.filter(image__owner=user).count() == 4
    # The gallery card of a finished image tells htmx to stop polling.
    assert client.get(reverse("classifier:image_card", args=[images[0].pk])).status_code == 286


def a_task_delivered_twice_stores_one_prediction(worker, mnist):
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


def requeue_stale_classifies_images_the_broker_lost(worker, mnist):
    from datetime import timedelta
    from io import StringIO

    from django.core.management import call_command

    from classifier.tests.factories import DigitImageFactory

    # The worker is connected and its recovery run done (wait_until_ready).
    # Queued ten minutes ago, and the broker lost them without any worker noticing (no claim,
    # no broken connection): only their age tells.
    ten_minutes_ago = timezone.now() - timedelta(minutes=10)
    images = [DigitImageFactory(data=encode(mnist.test.images[i]), queued_at=ten_minutes_ago) for i in range(3)]
    fresh = DigitImageFactory(data=encode(mnist.test.images[3]), queued_at=timezone.now())
    out = StringIO()
    call_command("requeue_stale", "--older-than", "300", stdout=out)
    assert out.getvalue().strip() == "requeued 3 images"
    wait_until_finished([i.pk for i in images], worker)
    for image, index in zip(images, range(3), strict=True):
        image.refresh_from_db()
        assert image.prediction.digit == mnist.test.labels[index]
    fresh.refresh_from_db()
    assert fresh.status == DigitImage.Status.PENDING  # queued lately: it may still be on its way


def a_running_worker_shows_in_healthz_until_it_stops(admin_client, worker):
    from classifier.models import WorkerHeartbeat

    deadline = time.monotonic() + 90
    while not WorkerHeartbeat.objects.exists():
        assert time.monotonic() < deadline, "the worker never recorded a heartbeat"
        assert worker.poll() is None
        time.sleep(0.3)
    body = admin_client.get("/healthz").json()
    assert body["status"] == "ok" and body["workers"]["alive"] == 1
    assert body["workers"]["hosts"][0]["hostname"].startswith("celery@")
    worker.stop()  # a clean shutdown says so at once
    assert not WorkerHeartbeat.objects.exists()
    assert admin_client.get("/healthz").json()["status"] == "degraded"


def images_deleted_while_the_worker_has_them_are_skipped_and_it_goes_on(worker, mnist):
    from classifier.services import image_delete, image_upload_create

    user = UserFactory()
    files = [SimpleUploadedFile(f"{i}.png", encode(255 - mnist.test.images[i])) for i in range(6)]
    images = image_upload_create(owner=user, files=files).created  # one batch, queued on commit
    image_delete(image=images[0])  # before the worker gets to it
    # The others are deleted as soon as the worker claims them: mid-classification.
    doomed = {image.pk: image for image in images[1:3]}
    deadline = time.monotonic() + 90
    while doomed and time.monotonic() < deadline:
        claimed = DigitImage.objects.filter(pk__in=doomed).exclude(status=DigitImage.Status.PENDING)
        for pk in claimed.values_list("pk", flat=True):
            image_delete(image=doomed.pop(pk))
        time.sleep(0.02)
    for image in doomed.values():  # the worker was quicker: delete them after all
        image_delete(image=image)
    survivors = [image.pk for image in images[3:]]
    wait_until_finished(survivors, worker)
    assert set(DigitImage.objects.filter(owner=user).values_list("pk", flat=True)) == set(survivors)
    assert set(Prediction.objects.filter(image__owner=user).values_list("image_id", flat=True)) == set(survivors)
    assert not any(image.file.storage.exists(image.file.name) for image in images[:3])
    # The worker is alive and still classifies.
    later = image_upload_create(owner=user, files=[SimpleUploadedFile("7.png", encode(255 - mnist.test.images[0]))])
    wait_until_finished([later.created[0].pk], worker)
    assert Prediction.objects.get(image=later.created[0]).digit == mnist.test.labels[0]
    assert "Traceback" not in worker.log_path.read_text()


@pytest.mark.parametrize("broker_env", ["embedded"], indirect=True)
def test_the_worker_loads_the_model_as_it_starts_and_cards_say_warming_up_until_then(
    client, worker_env, tmp_path, mnist
):
    """Cold start: the pool process loads and runs the model before it takes a task, logs it,
    and records the worker ready; until a worker is, a waiting card says it is warming up."""
    from classifier.models import WorkerHeartbeat
    from classifier.tasks import classify_images
    from classifier.tests.conftest import Worker
    from classifier.tests.factories import DigitImageFactory

    image = DigitImageFactory(data=encode(255 - mnist.test.images[0]), queued_at=timezone.now())  # in the queue
    client.force_login(image.owner)
    card = client.get(reverse("classifier:image_card", args=[image.pk])).content.decode()
    assert "warming up…" in card and "queued…" not in card

    worker = Worker(worker_env, tmp_path / "worker.log").start()
    try:
        deadline = time.monotonic() + 120
        while not WorkerHeartbeat.objects.filter(ready_at__isnull=False).exists():
            assert time.monotonic() < deadline, f"the worker never got ready; see {worker.log_path}"
            assert worker.poll() is None, f"the worker died; see {worker.log_path}"
            time.sleep(0.3)
        card = client.get(reverse("classifier:image_card", args=[image.pk])).content.decode()
        assert "queued…" in card and "warming up" not in card
        classify_images.delay([image.pk])
        wait_until_finished([image.pk], worker)
    finally:
        worker.stop()
    log = worker.log_path.read_text()
    loaded = log.index("loaded and warmed up")
    assert "model version 1 loaded and warmed up in" in log
    assert loaded < log.index("Task classifier.classify_images[")  # before the task was even received
    image.refresh_from_db()
    assert image.prediction.digit == mnist.test.labels[0]
    # A worker that starts again is not ready until its process has loaded the model again.
    from classifier.queueing import worker_warming_record

    WorkerHeartbeat.objects.create(hostname="celery@again", seen_at=image.uploaded_at, started_at=image.uploaded_at)
    worker_warming_record(hostname="celery@again", run="run-2")
    assert not WorkerHeartbeat.objects.filter(hostname="celery@again", ready_at__isnull=False).exists()
