"""Model versions in storage: written through the storage API with their checksum, fetched
once into each process's cache, checked, and fetched again when a copy does not match."""

import hashlib
import logging
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from classifier.models import ModelVersion
from classifier.services import ModelVersionUnavailable, model_version_archive_save, model_version_directory

pytestmark = pytest.mark.django_db

FILES = {"model.keras": b"weights " * 1000, "metadata.json": b'{"epochs": 1}', "plots/curves.png": b"\x89PNG..."}


@pytest.fixture
def stored(tmp_path):
    """Version 7, made on a trainer that no longer has it: only storage does."""
    made = tmp_path / "trainer" / "v7"
    for name, data in FILES.items():
        (made / name).parent.mkdir(parents=True, exist_ok=True)
        (made / name).write_bytes(data)
    archive, checksum = model_version_archive_save(number=7, directory=made)
    for path in sorted(made.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    made.rmdir()
    return ModelVersion.objects.create(
        number=7, architecture="deep", path=str(made), archive=archive, checksum=checksum
    )


def read_all(directory) -> dict:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def test_a_stored_version_is_fetched_once_checked_and_read_from_the_cache(stored, settings, caplog):
    with default_storage.open(stored.archive, "rb") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == stored.checksum
    with caplog.at_level(logging.INFO, logger="classifier.services.versions"):
        directory = model_version_directory(stored)
    assert directory == settings.MODEL_CACHE_DIR / stored.checksum
    assert read_all(directory) == FILES
    downloads = [r.getMessage() for r in caplog.records if "downloaded from storage" in r.getMessage()]
    assert len(downloads) == 1 and stored.checksum in downloads[0]

    default_storage.delete(stored.archive)  # read from the cache from now on
    assert model_version_directory(stored) == directory


def test_a_corrupted_download_is_refused_and_fetched_again(stored, settings, caplog):
    settings.MODEL_CACHE_DIR.mkdir(parents=True)
    (settings.MODEL_CACHE_DIR / f"{stored.checksum}.tar.gz").write_bytes(b"half a download")
    with caplog.at_level(logging.INFO, logger="classifier.services.versions"):
        directory = model_version_directory(stored)
    assert read_all(directory) == FILES
    messages = [r.getMessage() for r in caplog.records]
    assert any("does not match its checksum; fetching it again" in m for m in messages)
    assert any("downloaded from storage" in m for m in messages)


def test_a_stored_archive_that_never_matches_is_refused_with_a_reason(stored, caplog):
    default_storage.delete(stored.archive)
    default_storage.save(stored.archive, ContentFile(b"not the version that was recorded"))
    with pytest.raises(ModelVersionUnavailable, match="could not be fetched intact"):
        model_version_directory(stored)
    assert sum("refused" in r.getMessage() for r in caplog.records) == 2


def test_the_shipped_version_is_read_where_it_is():
    shipped = ModelVersion.objects.get(number=1)  # registered by the migrations, in the image
    assert shipped.checksum == "" and model_version_directory(shipped) == shipped.directory
    assert (shipped.directory / "model.keras").is_file()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_with_an_empty_cache_classifies_with_the_active_stored_version(worker_env, tmp_path, mnist):
    """A version made on another machine: only its archive in storage and its row; the worker
    shares no path with where it was made, fetches it once, checks it, and classifies with it."""
    from classifier.services import image_upload_create, model_version_activate
    from classifier.tests.conftest import Worker, wait_until_finished
    from classifier.tests.factories import UserFactory
    from ml.tests.conftest import SHIPPED_MODEL_DIR, encode, upscale

    archive, checksum = model_version_archive_save(number=2, directory=SHIPPED_MODEL_DIR)
    elsewhere = tmp_path / "on-the-trainer" / "v2"  # never created here
    ModelVersion.objects.create(number=2, architecture="deep", path=str(elsewhere), archive=archive, checksum=checksum)
    model_version_activate(number=2)
    cache = Path(worker_env["MODEL_CACHE_DIR"])
    assert not cache.exists()

    worker = Worker(worker_env, tmp_path / "worker.log").start()
    try:
        files = [SimpleUploadedFile("seven.png", encode(255 - upscale(mnist.test.images[0], 84)))]
        image = image_upload_create(owner=UserFactory(), files=files).created[0]
        wait_until_finished([image.pk], worker, timeout=120)
    finally:
        worker.stop()
    image.refresh_from_db()
    assert image.prediction.model_version.number == 2
    assert image.prediction.digit == mnist.test.labels[0]
    log = worker.log_path.read_text()
    assert log.count("downloaded from storage") == 1 and checksum in log
    assert (cache / checksum / "model.keras").is_file() and not elsewhere.exists()
