"""Faults in the queue, with real processes: a worker killed in the middle of a batch (its
child, or the whole worker) loses nothing and classifies nothing twice."""

import os
import signal
import time

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from classifier.models import DigitImage, Prediction, WorkerHeartbeat
from classifier.services import image_upload_create
from classifier.tests.conftest import Worker, broker, wait_until_finished
from classifier.tests.factories import UserFactory
from ml.tests.conftest import encode, upscale

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

BATCH = 50
RECOVERED_WITHIN = 30  # seconds after the fault ends (docs/reliability.md)


@pytest.fixture(params=["embedded", "redis"])
def broker_env(request, tmp_path_factory):
    with broker(request.param, tmp_path_factory.mktemp("broker")) as env:
        yield env


@pytest.fixture
def batch(mnist):
    """50 uploads of MNIST test digits (dark ink on white, 84 px), queued for classification."""
    files = [
        SimpleUploadedFile(f"digit-{i}.png", encode(255 - upscale(mnist.test.images[i], 84))) for i in range(BATCH)
    ]
    outcome = image_upload_create(owner=UserFactory(), files=files)
    assert not outcome.refused
    return [image.pk for image in outcome.created], [int(label) for label in mnist.test.labels[:BATCH]]


def wait_for_processing(worker, timeout=60.0) -> int:
    """The id of an image the worker is working on (the first task of a fresh pool child
    loads TensorFlow and the model, so it stays in `processing` for a few seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = DigitImage.objects.filter(status=DigitImage.Status.PROCESSING).values_list("pk", flat=True).first()
        if busy:
            return busy
        assert worker.poll() is None, f"the worker process died; see {worker.log_path}"
        time.sleep(0.02)
    raise AssertionError("the worker never started on an image")


def assert_all_classified_once(ids, labels):
    images = DigitImage.objects.filter(pk__in=ids).order_by("pk")
    assert [image.status for image in images] == [DigitImage.Status.DONE] * len(ids)
    assert Prediction.objects.filter(image_id__in=ids).count() == len(ids)
    predicted = [image.prediction.digit for image in images.select_related("prediction")]
    assert np.mean(np.array(predicted) == np.array(labels)) >= 0.98


def test_a_pool_child_killed_mid_task_loses_nothing(worker, batch):
    ids, labels = batch
    busy = wait_for_processing(worker)
    children = worker.children()
    assert children, "the worker has no pool child"
    for pid in children:
        os.kill(pid, signal.SIGKILL)

    # The parent starts a new child; the task it lost is delivered again (acks_late,
    # reject_on_worker_lost), the rest are still with the broker.
    killed = time.monotonic()
    wait_until_finished(ids, worker, timeout=RECOVERED_WITHIN)
    print(f"all {len(ids)} classified {time.monotonic() - killed:.1f} s after the pool child was killed")
    assert worker.poll() is None
    assert_all_classified_once(ids, labels)
    assert DigitImage.objects.get(pk=busy).attempts == 2  # killed once, then done


def test_the_whole_worker_killed_mid_batch_loses_nothing(worker, worker_env, batch, tmp_path):
    ids, labels = batch
    busy = wait_for_processing(worker)
    run = WorkerHeartbeat.objects.get().run
    assert DigitImage.objects.get(pk=busy).claimed_by == run  # taken by this run of the worker
    worker.kill_all()  # parent and child, no chance to give anything back to the broker
    unfinished = DigitImage.objects.filter(pk__in=ids).exclude(status=DigitImage.Status.DONE).count()
    assert unfinished > 0

    # Started again: it takes the messages still queued. The one in flight died with the
    # worker (the filesystem broker had handed it over; Redis keeps it unacknowledged until its
    # visibility timeout), but its images were claimed by the dead run: the new run queues them
    # again as it connects. No requeue_stale, no beat, and a bound that their age would miss.
    restarted = Worker(worker_env, tmp_path / "worker-restarted.log").start()
    back = time.monotonic()
    try:
        wait_until_finished(ids, restarted, timeout=RECOVERED_WITHIN)
        print(f"all {len(ids)} classified {time.monotonic() - back:.1f} s after the worker was started again")
        time.sleep(1)  # a duplicate delivery runs too, and must change nothing
        assert restarted.poll() is None
        assert_all_classified_once(ids, labels)
        assert WorkerHeartbeat.objects.get().run != run
    finally:
        restarted.stop()
