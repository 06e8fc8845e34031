"""The model a worker process serves: the active version, or the one it has when that cannot load.

A version that cannot be loaded (its archive missing from storage, failing its checksum, or
refused as it is unpacked; its files unreadable by Keras) must not stall uploads: the process
keeps serving the version it already has, and a process that has none serves the shipped
version, which is in the image. The failure is recorded on the version's row (``load_error``),
which ``/healthz`` and the admin show, and is tried again after ``MODEL_LOAD_RETRY_SECONDS``,
not on every task. A version that loads clears its own record.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from billiard.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.utils import timezone

from classifier.models import ModelVersion
from classifier.services.versions import model_version_directory, model_version_ensure_initial

if TYPE_CHECKING:  # TensorFlow stays out of web processes
    from ml.serving.inference import Predictor

logger = logging.getLogger(__name__)


class ModelNotLoaded(Exception):
    """No model could be loaded in this process; the message says so for people."""


@dataclass(frozen=True)
class Serving:
    """The version that answers, and its loaded predictor."""

    version: ModelVersion
    predictor: Predictor


_loaded: dict[int, Serving] = {}  # by version pk: the one this process serves (at most one)
_failed_at: dict[int, float] = {}  # version pk -> when loading it last failed here (monotonic)


def _load(version: ModelVersion) -> Serving:
    from ml.serving.quiet import import_quietly

    Predictor = import_quietly("ml.serving.inference").Predictor
    return Serving(version, Predictor(model_version_directory(version)))


def _record_failure(version: ModelVersion, exc: Exception) -> None:
    reason = str(exc) or exc.__class__.__name__
    reason = f"{exc.__class__.__name__}: {reason}"[:1000]
    _failed_at[version.pk] = time.monotonic()
    ModelVersion.objects.filter(pk=version.pk).update(load_error=reason, load_failed_at=timezone.now())
    logger.error("model version %s cannot be loaded (%s); serving what this process has", version.number, reason)


def _fallback(failed: ModelVersion) -> Serving:
    """What this process serves while ``failed`` cannot load: the version it has, else the
    shipped one (in the image); none at all raises ``ModelNotLoaded``."""
    if _loaded:
        return next(iter(_loaded.values()))
    shipped_dir = Path(settings.SHIPPED_MODEL_DIR).resolve()
    shipped = next((v for v in ModelVersion.objects.filter(checksum="") if v.directory.resolve() == shipped_dir), None)
    if shipped is not None and shipped.pk != failed.pk and shipped.pk not in _failed_at:
        try:
            serving = _load(shipped)
        except Exception as exc:
            _record_failure(shipped, exc)
        else:
            logger.warning("model version %s serves while version %s cannot be loaded", shipped.number, failed.number)
            _loaded[shipped.pk] = serving
            return serving
    raise ModelNotLoaded(
        "The model could not be loaded, so this image could not be read. The site's staff can see why; "
        "please try again later."
    )


def predictor_serving() -> Serving:
    """The active version's predictor, loaded once per process and replaced on change; where
    the active version cannot be loaded, what ``_fallback`` gives."""
    active = model_version_ensure_initial()
    if active.pk in _loaded:
        return _loaded[active.pk]
    failed = _failed_at.get(active.pk)
    if failed is not None and time.monotonic() - failed < settings.MODEL_LOAD_RETRY_SECONDS:
        return _fallback(active)
    try:
        serving = _load(active)
    except SoftTimeLimitExceeded:
        raise  # the task's time ran out while loading: the version itself is not at fault
    except Exception as exc:
        _record_failure(active, exc)
        return _fallback(active)
    _loaded.clear()
    _loaded[active.pk] = serving
    _failed_at.pop(active.pk, None)
    if active.load_error:
        ModelVersion.objects.filter(pk=active.pk).update(load_error="", load_failed_at=None)
    return serving


def model_load_forget() -> None:
    """Forget what this process loaded and what failed (tests; a process that must read again)."""
    _loaded.clear()
    _failed_at.clear()
