"""The embedded broker (digitsite/brokers.py): a broker folder removed while the site runs costs
the messages in it, not the worker, and /healthz looks at the folders themselves."""

import shutil
import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from classifier.models import DigitImage
from classifier.tests.conftest import broker, wait_until_finished
from classifier.tests.factories import UserFactory
from digitsite.brokers import filesystem_broker_options
from ml.tests.conftest import encode


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


@pytest.mark.django_db
def test_healthz_finds_a_broker_folder_that_is_gone(client, broker_env):
    assert client.get("/healthz").json()["broker"] == "ok"
    shutil.rmtree(broker_env["CELERY_BROKER_FOLDER"])
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["broker"] == "unreachable (FileNotFoundError)"
    filesystem_broker_options(broker_env["CELERY_BROKER_FOLDER"])  # creates the folders again
    assert client.get("/healthz").json()["broker"] == "ok"
