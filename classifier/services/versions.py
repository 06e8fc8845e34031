"""Model versions: their life (the first one registered from the shipped model, activation,
the one that serves) and their files in storage, written where uploads live, read through a
local cache. Apart from offline training: web processes, workers and the trainer all use it.

A version that ``retrain`` makes is written through Django's storage API (the S3-compatible
bucket of the uploads when one is configured, the local media storage otherwise) as one archive,
and its SHA-256 is recorded on its row. Each process that needs the version reads it from its own
cache (``MODEL_CACHE_DIR``), keyed by that checksum: downloaded the first time, checked, and
unpacked; nothing reads a path another machine wrote. The shipped version (in the image) and
versions made before this have no checksum and are read from their directory.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import DatabaseError, transaction

from classifier.models import ModelVersion
from ml.serving.artifacts import ModelBundle

logger = logging.getLogger(__name__)

ARCHIVE_FOLDER = "model-versions"
DOWNLOAD_TRIES = 2
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class ModelVersionUnavailable(Exception):
    """A stored version could not be fetched intact; the message says why, for people."""


def model_version_archive_save(*, number: int, directory: Path) -> tuple[str, str]:
    """Write the files of ``directory`` (weights, metadata, calibration, plots) through the
    storage API as one archive; returns its storage name and SHA-256."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
            archive.add(path, arcname=path.relative_to(directory).as_posix())
    data = buffer.getvalue()
    checksum = hashlib.sha256(data).hexdigest()
    name = default_storage.save(f"{ARCHIVE_FOLDER}/v{number}-{checksum[:12]}.tar.gz", ContentFile(data))
    logger.info("model version %s stored as %s (%d bytes, sha256 %s)", number, name, len(data), checksum)
    return name, checksum


def model_version_directory(version: ModelVersion) -> Path:
    """Where this process reads ``version``'s files: its cache entry for a stored version
    (fetched and checked the first time), else the directory the version was made in. Raises
    ``ModelVersionUnavailable`` with the reason, leaving no partial file in the cache."""
    if not version.checksum:
        return version.directory
    if not SHA256_HEX.fullmatch(version.checksum):  # it names a folder in the cache
        raise ModelVersionUnavailable(
            f"Model version {version.number} has no valid checksum (64 hexadecimal digits), so it is not read."
        )
    cache = Path(settings.MODEL_CACHE_DIR)
    unpacked = cache / version.checksum
    if unpacked.is_dir():
        return unpacked
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / f"{version.checksum}.tar.gz"
    _fetch_checked(version, archive)
    # Unpacked beside its final place and renamed into it, so that a process never sees half a
    # version; another process that got there first wins, and this copy is dropped.
    partial = Path(tempfile.mkdtemp(prefix=f".{version.checksum[:12]}-", dir=cache))
    try:
        _unpack(version, archive, partial)
        os.rename(partial, unpacked)
    except OSError:
        if not unpacked.is_dir():
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return unpacked


def model_version_verify(version: ModelVersion) -> Path:
    """``version``'s directory, once its files are known to be there and intact (fetched and
    checked as a worker would, with the model and its metadata in it); else
    ``ModelVersionUnavailable`` with the reason. Activation asks this before it flips the row."""
    directory = model_version_directory(version)
    bundle = ModelBundle(directory)
    missing = [path.name for path in (bundle.model_path, bundle.metadata_path) if not path.is_file()]
    if missing:
        raise ModelVersionUnavailable(
            f"Model version {version.number} has no {' or '.join(missing)} in its files ({directory})."
        )
    return directory


def _unpack(version: ModelVersion, archive: Path, into: Path) -> None:
    """Unpack ``archive`` with tarfile's ``data`` filter (no links out, no ``../``, no devices),
    once its headers say it holds at most ``MODEL_ARCHIVE_MAX_MEMBERS`` members and
    ``MODEL_ARCHIVE_MAX_BYTES`` in all: nothing is written before both are known."""
    try:
        with tarfile.open(archive) as files:
            _check_members(version, files)
            files.extractall(into, filter=tarfile.data_filter)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise ModelVersionUnavailable(
            f"Model version {version.number}'s archive could not be unpacked safely ({exc}), so it is not read."
        ) from exc


def _check_members(version: ModelVersion, files: tarfile.TarFile) -> None:
    """Read the archive's headers, stopping at the first member past either cap."""
    most_members, most_bytes = settings.MODEL_ARCHIVE_MAX_MEMBERS, settings.MODEL_ARCHIVE_MAX_BYTES
    total = 0
    for count, member in enumerate(files, start=1):
        total += member.size
        if count > most_members:
            raise ModelVersionUnavailable(
                f"Model version {version.number}'s archive holds more than {most_members:,} files and folders "
                "(MODEL_ARCHIVE_MAX_MEMBERS), so it is not read."
            )
        if total > most_bytes:
            raise ModelVersionUnavailable(
                f"Model version {version.number}'s archive unpacks to more than {most_bytes:,} bytes "
                "(MODEL_ARCHIVE_MAX_BYTES), so it is not read."
            )


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _download(version: ModelVersion, archive: Path) -> str:
    """Copy the version's archive from storage to ``archive`` when it has the recorded
    checksum; returns the checksum it had. A partial copy never stays behind."""
    fd, partial = tempfile.mkstemp(prefix=".download-", dir=archive.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with default_storage.open(version.archive, "rb") as stored:
                    shutil.copyfileobj(stored, out, 1 << 20)
            except FileNotFoundError as exc:
                raise ModelVersionUnavailable(
                    f"Model version {version.number}'s archive is missing from storage ({version.archive})."
                ) from exc
            except Exception as exc:  # a storage's own errors (S3's ClientError), or OSError
                raise ModelVersionUnavailable(
                    f"Model version {version.number}'s archive could not be read from storage "
                    f"({version.archive}: {exc.__class__.__name__})."
                ) from exc
        got = _sha256(Path(partial))
        if got == version.checksum:
            os.replace(partial, archive)
        return got
    finally:
        Path(partial).unlink(missing_ok=True)


def _fetch_checked(version: ModelVersion, archive: Path) -> None:
    """``archive`` holds the version's archive with its recorded checksum: a copy already in
    the cache is checked first (a download cut short, a disk error); one that does not match
    is refused and fetched again, ``DOWNLOAD_TRIES`` times at most."""
    if archive.is_file():
        if _sha256(archive) == version.checksum:
            return
        logger.warning("model version %s: the cached archive does not match its checksum; fetching it again", version)
    for attempt in range(1, DOWNLOAD_TRIES + 1):
        got = _download(version, archive)
        if got == version.checksum:
            logger.info("model version %s downloaded from storage (%s, sha256 %s)", version, version.archive, got)
            return
        logger.warning(
            "model version %s: download %d of %d refused, sha256 %s is not the recorded %s",
            version,
            attempt,
            DOWNLOAD_TRIES,
            got,
            version.checksum,
        )
    raise ModelVersionUnavailable(
        f"Model version {version.number} could not be fetched intact from storage "
        f"({version.archive}): its checksum never matched."
    )


# --- A version's life: registered, active, serving --------------------------------------------


def relative_to_base(path: Path) -> str:
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path(settings.BASE_DIR).resolve()))
    except ValueError:
        return str(path)


def model_version_ensure_initial() -> ModelVersion:
    """The first ModelVersion, registered from the shipped model; the active one if any exists."""
    active = ModelVersion.objects.filter(is_active=True).first()
    if active:
        return active

    directory = Path(settings.SHIPPED_MODEL_DIR)
    metadata = ModelBundle(directory).metadata()
    with transaction.atomic():
        version, _ = ModelVersion.objects.get_or_create(
            number=1,
            defaults={
                "architecture": metadata["architecture"],
                "path": relative_to_base(directory),
                "metrics": {"test_accuracy": metadata["test_accuracy"], "test_loss": metadata["test_loss"]},
                "notes": "the shipped model, trained by `manage.py train --arch deep`",
            },
        )
        if not ModelVersion.objects.filter(is_active=True).exists():
            ModelVersion.objects.filter(pk=version.pk).update(is_active=True)
            version.is_active = True
    return version


def model_version_activate(*, number: int) -> ModelVersion:
    """Make version ``number`` the one that serves, once its files are known to be fetched and
    intact (``model_version_verify``); else ``ModelVersionUnavailable`` says why, and the
    active version stays."""
    model_version_verify(ModelVersion.objects.get(number=number))
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(number=number)
        ModelVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(is_active=False)
        if not version.is_active:
            version.is_active = True
            version.save(update_fields=["is_active"])
    return version


def model_path_default() -> Path:
    """The model that serves predictions: the active version's, else the shipped one."""
    try:
        active = ModelVersion.objects.filter(is_active=True).first()
    except DatabaseError:  # not migrated yet: the shipped model is the only one there is
        active = None
    return model_version_directory(active) if active else settings.SHIPPED_MODEL_DIR
