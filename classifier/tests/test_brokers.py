"""The embedded broker (digitsite/brokers.py): a broker folder removed while the site runs costs
the messages in it, not the worker, and /healthz looks at the folders themselves."""

import shutil
import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from classifier.models import DigitImage, RequeueRun
from classifier.tests.conftest import Worker, broker, wait_until_finished
from classifier.tests.factories import UserFactory
from digitsite.brokers import filesystem_broker_options
from ml.tests.conftest import encode

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def broker_env(tmp_path_factory):
    """The embedded broker, whatever this environment configures: its folder is what is lost."""
    with broker("embedded", tmp_path_factory.mktemp("broker")) as env:
        yield env


def upload(client, image) -> int:
    response = client.post(
        reverse("classifier:home"), {"images": [SimpleUploadedFile("digit.png", encode(255 - image))]}, follow=True
    )
    assert "uploaded; classifying now." in response.content.decode()
    return DigitImage.objects.latest("pk").pk


def replace_by_a_file(queue: Path, tmp_path: Path) -> None:
    """The worker makes a missing folder again, so the file takes its place in a retried swap."""
    replacement = tmp_path / "not-a-folder"
    replacement.write_bytes(b"not a folder")
    for attempt in range(100):
        if queue.is_dir():
            shutil.rmtree(queue.rename(tmp_path / f"moved-away-{attempt}"))
        try:
            replacement.rename(queue)
            break
        except OSError:  # made again between the two renames
            continue
    assert queue.is_file()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_survives_its_broker_folder_being_removed(client, worker, broker_env, mnist, tmp_path):
    client.force_login(UserFactory())
    wait_until_finished([upload(client, mnist.test.images[0])], worker)
    # Moved away first: the worker recreates folders while rmtree would still walk them.
    shutil.rmtree(Path(broker_env["CELERY_BROKER_FOLDER"]).rename(tmp_path / "removed"))
    time.sleep(1)  # the worker looks into the folder 20 times a second
    assert worker.poll() is None, f"the worker died when its broker folder went; see {worker.log_path}"
    after = upload(client, mnist.test.images[1])
    wait_until_finished([after], worker)
    assert DigitImage.objects.get(pk=after).prediction.digit == mnist.test.labels[1]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_broker_folder_replaced_by_a_file_gets_back_off_and_one_line_per_change(
    client, worker, broker_env, mnist, tmp_path
):
    """The queue folder replaced by a file for 15 s: the worker stays up, backs off instead
    of reconnecting several times a second, and says so once (and once more when the folder
    is usable again), not a line per attempt; then an upload is classified."""
    client.force_login(UserFactory())
    wait_until_finished([upload(client, mnist.test.images[0])], worker)
    queue = Path(broker_env["CELERY_BROKER_FOLDER"]) / "queue"
    before = len(worker.log_path.read_text().splitlines())
    replace_by_a_file(queue, tmp_path)
    time.sleep(15)
    assert worker.poll() is None, f"the worker died; see {worker.log_path}"
    during = worker.log_path.read_text().splitlines()[before:]
    assert sum("RestartFreqExceeded" in line for line in during) == 0, "\n".join(during[-20:])
    assert sum("broker folder cannot be used" in line for line in during) <= 2, "\n".join(during[-20:])
    assert len(during) <= 30, f"{len(during)} lines in 15 s:\n" + "\n".join(during[-20:])
    queue.unlink()
    after = upload(client, mnist.test.images[1])
    wait_until_finished([after], worker, timeout=60)
    assert DigitImage.objects.get(pk=after).prediction.digit == mnist.test.labels[1]
    assert "broker folder is usable again" in worker.log_path.read_text()


@pytest.mark.django_db
def test_healthz_finds_a_broker_folder_that_is_gone(admin_client, broker_env):
    assert admin_client.get("/healthz").json()["broker"] == "ok"
    shutil.rmtree(broker_env["CELERY_BROKER_FOLDER"])
    response = admin_client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["broker"] == "unreachable (FileNotFoundError)"
    filesystem_broker_options(broker_env["CELERY_BROKER_FOLDER"])  # creates the folders again
    assert admin_client.get("/healthz").json()["broker"] == "ok"


# A separate process writes, as the web process does for the worker.
WRITER = """
import sys
from kombu import Connection
from digitsite.brokers import FILESYSTEM_TRANSPORT, filesystem_broker_options
options = filesystem_broker_options(sys.argv[1])
with Connection(transport=FILESYSTEM_TRANSPORT, transport_options=options) as connection:
    outbox = connection.SimpleQueue("race", serializer="json")
    for n in range(int(sys.argv[2])):
        outbox.put({"n": n, "padding": "x" * 4000})
    outbox.close()
"""


def test_a_message_is_never_read_before_it_is_written_whole(tmp_path):
    """Kombu writes a message file in place, so a consumer polling the folder could take it
    while still empty; the worker died of the JSONDecodeError and the message was lost. Here
    a writer process and this reader race on one folder: every message arrives, whole."""
    import queue as queues
    import subprocess
    import sys

    from kombu import Connection

    from digitsite.brokers import FILESYSTEM_TRANSPORT

    count = 3000
    options = filesystem_broker_options(tmp_path)
    with Connection(transport=FILESYSTEM_TRANSPORT, transport_options=options) as connection:
        inbox = connection.SimpleQueue("race", serializer="json")
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(count)], cwd=REPO)
        received = []
        deadline = time.monotonic() + 120
        while len(received) < count and time.monotonic() < deadline:
            try:
                message = inbox.get(timeout=0.5)
            except queues.Empty:
                assert writer.poll() in (None, 0), "the writer failed"
                continue
            received.append(message.payload)
            message.ack()
        assert writer.wait(timeout=30) == 0
        inbox.close()
    assert sorted(m["n"] for m in received) == list(range(count))
    assert all(m["padding"] == "x" * 4000 for m in received)


@pytest.mark.django_db(transaction=True)
def test_the_embedded_beat_backs_off_and_says_so_once_when_its_broker_folder_is_a_file(worker_env, tmp_path):
    """Beat, embedded in the worker, cannot send its runs for 8 s: it tries again every few
    seconds, and says so once and once more when it can send again (it wrote about 200 lines
    a second: issue 42)."""
    env = worker_env | {"REQUEUE_STALE_INTERVAL_SECONDS": "1"}
    worker = Worker(env, tmp_path / "worker.log", args=("--beat", "--schedule", str(tmp_path / "schedule"))).start()
    try:
        deadline = time.monotonic() + 60
        while not RequeueRun.objects.exists():  # beat's runs arrive
            assert time.monotonic() < deadline and worker.poll() is None, worker.log_path.read_text()[-3000:]
            time.sleep(0.3)
        queue = Path(env["CELERY_BROKER_FOLDER"]) / "queue"
        before = len(worker.log_path.read_text().splitlines())
        replace_by_a_file(queue, tmp_path)
        time.sleep(8)
        during = worker.log_path.read_text().splitlines()[before:]
        assert sum("beat could not send" in line for line in during) == 1, "\n".join(during[-20:])
        assert len(during) <= 20, f"{len(during)} lines in 8 s:\n" + "\n".join(during[-20:])
        queue.unlink()
        time.sleep(4)
        assert "beat sends its runs again" in worker.log_path.read_text()
        assert worker.poll() is None
    finally:
        worker.stop()
