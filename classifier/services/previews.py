"""The draw page's live answer: the drawing in progress, read by a worker with the active model.

The web process stores the canvas and queues it; a worker reads it as it reads uploads
(a number of one or more digits: segmentation, calibrated confidence, verdict; the digit fields
those of the least sure digit, as a Prediction's) but stores no upload, no file and no heat
map. Each person has at most one preview: a newer drawing replaces the one before, whose
task then finds nothing and ends at once.
"""

from __future__ import annotations

import logging
import struct
import time
from datetime import timedelta
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from classifier import queueing
from classifier.models import DrawingPreview
from classifier.services.images import weakest_reading
from classifier.services.limits import window_count
from classifier.services.serving import ModelNotLoaded, predictor_serving
from ml.serving.verdicts import BLANK, REASONS

logger = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The canvas is 280x280; a page that draws it larger for a sharp screen (three device pixels
# to one, 840x840) fits well within this. Checked from the PNG's header before a worker decodes
# the drawing: an 8000x8000 drawing of 140 KB took one to 2 GB (issue 42).
DRAWING_MAX_PIXELS = 2_000_000


class PreviewRateLimited(Exception):
    """Too many live answers asked for in the window; the message says so for people."""


class PreviewError(ValueError):
    """A drawing the live answer cannot take; the message is for people."""


def drawing_preview_create(*, owner, drawing: bytes, reading: str = DrawingPreview.Reading.AUTO) -> DrawingPreview:
    """Store the owner's drawing in progress in place of their previous one and queue it for
    a worker. A broker that cannot be reached leaves the preview answered with an error: the
    live answer is a convenience, and "Classify drawing" still stores the drawing for later."""
    window = settings.DRAW_PREVIEW_RATE_WINDOW_SECONDS
    if window_count(f"draw-preview:user:{owner.pk}", window) > settings.DRAW_PREVIEW_RATE_PER_WINDOW:
        raise PreviewRateLimited(
            "The live answer is paused for a few seconds: drawings came faster than it can follow. "
            "“Classify drawing” still works."
        )
    if len(drawing) > settings.DRAW_PREVIEW_MAX_BYTES:
        raise PreviewError(f"The drawing is larger than {settings.DRAW_PREVIEW_MAX_BYTES // 1000} KB.")
    if refusal := _drawing_refusal(drawing):
        raise PreviewError(refusal)
    stale = timezone.now() - timedelta(seconds=settings.DRAW_PREVIEW_KEEP_SECONDS)
    with transaction.atomic():
        DrawingPreview.objects.filter(owner=owner).delete()
        DrawingPreview.objects.filter(created_at__lt=stale).delete()
        preview = DrawingPreview.objects.create(owner=owner, drawing=drawing, reading=DrawingPreview.Reading(reading))
        transaction.on_commit(lambda: _enqueue(preview))
    return preview


def _drawing_refusal(drawing: bytes) -> str | None:
    """Why the live answer will not read ``drawing``, for the panel; None when it will. From
    the PNG's signature and header alone (IHDR comes first, its width and height first in it):
    the rest of what makes a file costly to decode is the worker's ``open_lazily``'s to judge."""
    if not drawing.startswith(PNG_SIGNATURE) or drawing[12:16] != b"IHDR" or len(drawing) < 24:
        return "Send the drawing as a PNG image."
    width, height = struct.unpack(">II", drawing[16:24])
    if width * height > DRAWING_MAX_PIXELS:
        return (
            f"The drawing is {width}x{height} pixels; the live answer reads drawings of up to "
            f"{DRAWING_MAX_PIXELS // 1_000_000} megapixels."
        )
    return None


def _enqueue(preview: DrawingPreview) -> None:
    try:
        queueing.drawing_preview_enqueue(str(preview.pk))
    except Exception:
        logger.warning("the broker is unreachable; no live answer for this drawing", exc_info=True)
        DrawingPreview.objects.filter(pk=preview.pk).update(
            finished_at=timezone.now(), result={"error": "The live answer is not available right now."}
        )


def drawing_preview_run(*, preview_id: UUID | str) -> DrawingPreview | None:
    """Read a drawing in progress with the active model and store the answer. None when the
    preview is gone (replaced by a newer drawing, or expired); a finished one is left alone."""
    preview = DrawingPreview.objects.filter(pk=preview_id).first()
    if preview is None or preview.is_finished:
        return preview
    if refusal := _drawing_refusal(bytes(preview.drawing)):  # stored before the limit, or not through the page
        DrawingPreview.objects.filter(pk=preview.pk).update(result={"error": refusal}, finished_at=timezone.now())
        return DrawingPreview.objects.filter(pk=preview.pk).first()
    try:
        serving = predictor_serving()
    except ModelNotLoaded as exc:
        DrawingPreview.objects.filter(pk=preview.pk).update(result={"error": str(exc)}, finished_at=timezone.now())
        return DrawingPreview.objects.filter(pk=preview.pk).first()
    version = serving.version
    from ml.serving.numbers import read_numbers  # the worker's: TensorFlow stays out of web processes

    started = time.perf_counter()
    (result,) = read_numbers(serving.predictor, [bytes(preview.drawing)], [preview.reading])
    inference_ms = (time.perf_counter() - started) * 1000
    if result.error is not None:
        answer = {"error": result.error}
    elif not result.digits or result.reason == REASONS[BLANK]:
        answer = {"error": "Nothing drawn yet: the live answer appears as you draw."}
    else:
        p = weakest_reading(result).prediction
        answer = {
            "digit": p.digit,
            "confidence": p.confidence,
            "probabilities": list(p.probabilities),
            "verdict": result.verdict,
            "reason": result.reason,
            "number": result.number,
            "number_confidence": result.sureness,  # None for one digit
            "digits": [reading.as_dict() | {"verdict": reading.prediction.verdict} for reading in result.digits],
        }
    DrawingPreview.objects.filter(pk=preview.pk).update(
        result=answer, model_version=version, inference_ms=inference_ms, finished_at=timezone.now()
    )
    return DrawingPreview.objects.filter(pk=preview.pk).first()
