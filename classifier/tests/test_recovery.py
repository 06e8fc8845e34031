"""Recovery knows what a fault stranded instead of waiting for age: images never queued (the
publish failed), taken by a worker run that is gone, or queued before a broker connection
broke; and beat tries a run it could not send again as soon as the broker is back."""

import time
from datetime import timedelta

import numpy as np
import pytest
import redis
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from classifier.models import DigitImage, WorkerHeartbeat
from classifier.queueing import images_claim, worker_heartbeat_record, worker_warming_record
from classifier.selectors import images_stranded
from classifier.services import image_upload_create
from classifier.tests.conftest import broker, broker_down
from classifier.tests.factories import DigitImageFactory, UserFactory
from digitsite.celery import MISSED_RUN_RETRY_SECONDS, Scheduler
from digitsite.celery import app as celery_app
from ml.tests.conftest import encode

pytestmark = pytest.mark.django_db

AGE = timedelta(seconds=120)


def image(*, status=DigitImage.Status.PENDING, uploaded_ago=30.0, queued_ago=None, claimed_by="") -> int:
    now = timezone.now()
    pk = DigitImageFactory().pk
    DigitImage.objects.filter(pk=pk).update(
        status=status,
        uploaded_at=now - timedelta(seconds=uploaded_ago),
        queued_at=None if queued_ago is None else now - timedelta(seconds=queued_ago),
        claimed_by=claimed_by,
    )
    return pk


def test_stranded_images_are_found_by_what_stranded_them(settings):
    now = timezone.now()
    worker_heartbeat_record(hostname="celery@alive", run="run-alive", started_at=now)
    silent = now - timedelta(seconds=4 * settings.WORKER_HEARTBEAT_SECONDS)
    WorkerHeartbeat.objects.create(hostname="celery@killed", run="run-killed", seen_at=silent, started_at=silent)
    worker_heartbeat_record(hostname="celery@restarted", run="run-before", started_at=now)
    assert worker_warming_record(hostname="celery@restarted", run="run-after")  # started again: the old run died
    assert not worker_warming_record(hostname="celery@new", run="run-new")  # a first start

    never_queued = image(uploaded_ago=settings.CLASSIFY_QUEUE_GRACE_SECONDS + 5)
    publishing = image(uploaded_ago=1)  # its upload's publish may be on its way
    with_a_killed_worker = image(status=DigitImage.Status.PROCESSING, queued_ago=5, claimed_by="run-killed")
    with_a_restarted_worker = image(queued_ago=5, claimed_by="run-before")  # taken, waiting for a process
    with_a_live_worker = image(status=DigitImage.Status.PROCESSING, queued_ago=5, claimed_by="run-alive")
    in_the_queue = image(queued_ago=5)
    old = image(uploaded_ago=500, queued_ago=AGE.total_seconds() + 10)
    done = image(status=DigitImage.Status.DONE, queued_ago=5, claimed_by="run-killed")
    failed = image(status=DigitImage.Status.FAILED, uploaded_ago=500)

    found = images_stranded(older_than=AGE)
    assert found == [never_queued, with_a_killed_worker, with_a_restarted_worker, old]
    assert {publishing, with_a_live_worker, in_the_queue, done, failed}.isdisjoint(found)

    # A worker has just connected to the broker: an image not queued yet is queued, even one
    # whose publish may be on its way (a second message changes nothing).
    assert set(images_stranded(older_than=AGE, connecting=True)) == set(found) | {publishing}
    # Its connection broke 2 s ago and is back: what was waiting in the queue before may be gone
    # with it (a Redis restarted empty); what a live worker is running is not.
    lost_at = now - timedelta(seconds=2)
    after_a_lost_connection = images_stranded(older_than=AGE, connecting=True, broker_lost_at=lost_at)
    assert set(after_a_lost_connection) == set(found) | {publishing, in_the_queue}
    assert with_a_live_worker not in after_a_lost_connection

    # Without age, every waiting image.
    everything = images_stranded(older_than=timedelta(0))
    assert set(everything) == set(found) | {publishing, with_a_live_worker, in_the_queue}


def test_a_claim_marks_only_waiting_images():
    waiting, running, done = image(), image(status=DigitImage.Status.PROCESSING), image(status=DigitImage.Status.DONE)
    images_claim(image_ids=[waiting, running, done], run="run-1")
    claims = dict(DigitImage.objects.values_list("pk", "claimed_by"))
    assert claims == {waiting: "run-1", running: "run-1", done: ""}


def upload(count: int) -> list[DigitImage]:
    files = [SimpleUploadedFile(f"d{i}.png", encode(np.full((28, 28), 255, np.uint8))) for i in range(count)]
    outcome = image_upload_create(owner=UserFactory(), files=files)
    assert len(outcome.created) == count, outcome.refused
    return outcome.created


@pytest.mark.django_db(transaction=True)
def test_a_publish_records_when_the_images_reached_the_broker(broker_env):
    before = timezone.now()
    images = upload(3)
    queued = DigitImage.objects.filter(pk__in=[i.pk for i in images]).values_list("queued_at", flat=True)
    assert all(at is not None and at >= before for at in queued)
    assert images_stranded(older_than=AGE) == []


@pytest.mark.django_db(transaction=True)
def test_a_failed_publish_leaves_the_images_recorded_as_never_queued(settings, broker_env):
    with broker_down():
        images = upload(2)
    ids = [i.pk for i in images]
    assert list(DigitImage.objects.filter(pk__in=ids).values_list("queued_at", flat=True)) == [None, None]
    assert images_stranded(older_than=AGE) == []  # within the grace an upload's publish may take
    settings.CLASSIFY_QUEUE_GRACE_SECONDS = 0
    assert images_stranded(older_than=AGE) == ids  # no guessing by age: never queued, so stranded


def test_beat_tries_a_run_it_could_not_send_again_within_seconds(redis_server, tmp_path):
    with broker("redis", tmp_path, redis_url=redis_server.url):
        scheduler = Scheduler(app=celery_app, schedule_filename=str(tmp_path / "schedule"), lazy=False)
        assert scheduler.producer  # connected, as a running beat is
        entry = scheduler.schedule["requeue-stale-images"]
        interval = entry.schedule.run_every.total_seconds()
        entry.last_run_at = timezone.now() - timedelta(seconds=2 * interval)  # due
        redis_server.stop()
        delay = scheduler.tick()
        assert delay <= MISSED_RUN_RETRY_SECONDS < interval  # tried again soon, not an interval later
        assert scheduler.schedule["requeue-stale-images"].is_due().is_due  # and the run is still owed

        redis_server.start()  # empty, as after a restart
        assert scheduler.tick() > 0  # not at once: it waits out its pause, not trying in a loop
        time.sleep(MISSED_RUN_RETRY_SECONDS)
        scheduler.tick()
        assert not scheduler.schedule["requeue-stale-images"].is_due().is_due  # sent: next one an interval on
        assert redis.Redis.from_url(redis_server.url).llen("classify") == 1
