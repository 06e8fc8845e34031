"""The draw page and its live answer: the canvas is stored as the person draws, a worker reads it,
and the page polls for the answer (digit, bars, readings of a number) as a fragment."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from classifier.models import DigitImage, DrawingPreview, Prediction, runner_up
from classifier.selectors import drawing_preview_get_for
from classifier.services import PreviewError, PreviewRateLimited, drawing_preview_create
from classifier.views._common import confidence_bars
from ml.serving.readings import readings_named


@require_GET
def draw(request):
    return render(request, "classifier/draw.html", {"readings": DigitImage.Reading.choices})


@require_POST
def draw_preview(request):
    """The canvas as the person draws: stored in place of their previous drawing and queued
    for a worker; answered with where to ask for the live answer."""
    drawing = request.FILES.get("drawing")
    if drawing is None:
        return JsonResponse({"error": "No drawing was sent."}, status=400)
    if drawing.size > settings.DRAW_PREVIEW_MAX_BYTES:
        return JsonResponse({"error": "The drawing is too large for a live answer."}, status=400)
    reading = request.POST.get("reading") or DrawingPreview.Reading.AUTO
    if reading not in DrawingPreview.Reading.values:
        return JsonResponse({"error": f"Say {readings_named()} for what the drawing shows."}, status=400)
    try:
        preview = drawing_preview_create(owner=request.user, drawing=drawing.read(), reading=reading)
    except PreviewError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    except PreviewRateLimited as exc:
        response = JsonResponse({"error": str(exc)}, status=429)
        response["Retry-After"] = str(settings.DRAW_PREVIEW_RATE_WINDOW_SECONDS)
        return response
    return JsonResponse({"url": reverse("classifier:draw_preview_result", args=[preview.pk])}, status=202)


@never_cache
@require_GET
def draw_preview_result(request, pk):
    """The live answer for a drawing in progress once a worker has read it (200), "still
    reading" until then (202); 404 for another person's drawing or one already replaced."""
    preview = drawing_preview_get_for(request.user, pk)
    if preview is None:
        raise Http404
    if not preview.is_finished:
        return HttpResponse(status=202)
    return render(request, "classifier/_live_answer.html", _live_answer_context(preview))


def _live_answer_context(preview: DrawingPreview) -> dict:
    answer = preview.result or {}
    if "error" in answer:
        return {"error": answer["error"]}
    readings = answer.get("digits", [])
    return {
        "answer": answer,
        "readings": [reading | {"unsure": reading["verdict"] != Prediction.Verdict.DIGIT} for reading in readings]
        if len(readings) > 1
        else [],
        "runner_up": runner_up(answer["probabilities"])[0],
        "bars": confidence_bars(answer["probabilities"], answer["digit"]),
        "model_version": preview.model_version,
        "inference_ms": preview.inference_ms,
    }
