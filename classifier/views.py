"""Pages: parse input, call one service or selector, present the result."""

from __future__ import annotations

import io

import numpy as np
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_not_required
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseStopPolling
from PIL import Image

from classifier.forms import HistoryFilterForm, SignUpForm, UploadForm
from classifier.selectors import ImageFilters, image_get_for, image_list_for
from classifier.services import image_upload_create

GALLERY_SIZE = 24
HISTORY_PAGE_SIZE = 25
MODEL_INPUT_ZOOM = 8


@login_not_required
def locked_out(request, original_response=None, credentials=None):
    """What django-axes answers to a sign-in while the username and address are locked out."""
    minutes = round(settings.AXES_COOLOFF_TIME.total_seconds() / 60)
    context = {
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "username": (credentials or {}).get("username") or request.POST.get("username", ""),
        "cooloff": f"{minutes} minute{'s' if minutes != 1 else ''}",
    }
    return render(request, "registration/locked_out.html", context, status=429)


@login_not_required
@require_http_methods(["GET", "POST"])
def signup(request):
    if request.user.is_authenticated:
        return redirect("classifier:home")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome, {user.username}! Upload a digit to get started.")
        return redirect("classifier:home")
    return render(request, "registration/signup.html", {"form": form})


@require_http_methods(["GET", "POST"])
def home(request):
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        outcome = image_upload_create(owner=request.user, files=form.cleaned_data["images"])
        for name, reason in outcome.refused:
            messages.error(request, f"{name}: {reason}")
        if outcome.created:
            count = len(outcome.created)
            messages.success(request, f"{count} image{'s' if count != 1 else ''} uploaded; classifying now.")
        return redirect("classifier:home")
    images = image_list_for(request.user)[:GALLERY_SIZE]
    return render(request, "classifier/home.html", {"form": form, "images": images})


@require_GET
def image_card(request, pk: int):
    image = image_get_for(request.user, pk)
    if image is None:
        raise Http404
    html = render_to_string("classifier/_card.html", {"image": image}, request=request)
    # htmx stops polling on 286; the final card is still swapped in.
    return HttpResponseStopPolling(html) if image.is_finished else HttpResponse(html)


@require_GET
def history(request):
    form = HistoryFilterForm(request.GET or None, user=request.user)
    filters = ImageFilters()
    if form.is_valid():
        data = form.cleaned_data
        below = data.get("below")
        filters = ImageFilters(
            digit=data.get("digit"),
            status=data.get("status") or None,
            max_confidence=below / 100 if below else None,
            flagged=data.get("flagged"),
            everyone=bool(data.get("everyone")),
        )
    page = Paginator(image_list_for(request.user, filters), HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "classifier/history.html", {"form": form, "page": page, "query": query.urlencode()})


@require_GET
def image_detail(request, pk: int):
    image = image_get_for(request.user, pk)
    if image is None:
        raise Http404
    prediction = getattr(image, "prediction", None)
    bars = []
    if prediction is not None:
        bars = [
            {"digit": digit, "percent": 100 * p, "top": digit == prediction.digit}
            for digit, p in enumerate(prediction.probabilities)
        ]
    return render(request, "classifier/detail.html", {"image": image, "prediction": prediction, "bars": bars})


@require_GET
def image_file(request, pk: int):
    """The original upload, to its owner and staff only, with its real content type."""
    image = image_get_for(request.user, pk)
    if image is None:
        raise Http404
    try:
        handle = image.file.open("rb")
    except OSError:
        raise Http404 from None
    response = FileResponse(handle, content_type=image.content_type)
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, max-age=3600"
    return response


@require_GET
def image_model_input(request, pk: int):
    """The 28x28 image the model saw, enlarged with hard pixel edges."""
    image = image_get_for(request.user, pk)
    prediction = getattr(image, "prediction", None) if image else None
    if prediction is None:
        raise Http404
    pixels = np.frombuffer(bytes(prediction.model_input), dtype=np.uint8).reshape(28, 28)
    side = 28 * MODEL_INPUT_ZOOM
    enlarged = Image.fromarray(pixels).resize((side, side), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    enlarged.save(buffer, "PNG")
    response = HttpResponse(buffer.getvalue(), content_type="image/png")
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, max-age=86400"
    return response
