"""Pages: parse input, call one service or selector, present the result."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
from axes.helpers import get_client_ip_address
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import TooManyFilesSent
from django.core.paginator import Paginator
from django.db import DatabaseError, connection
from django.http import Http404, HttpResponse, HttpResponseBadRequest, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.translation import ngettext
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling
from rest_framework.authtoken.models import Token

from classifier import charts, exports, landing
from classifier.forms import (
    AccountDeleteForm,
    CountedPasswordChangeForm,
    FeedbackForm,
    HistoryFilterForm,
    SignUpForm,
    StaffFlagForm,
    UploadForm,
)
from classifier.models import DigitImage, DrawingPreview, Prediction, runner_up
from classifier.permissions import may_flag, may_see_all_images
from classifier.responses import image_file_response, png_response
from classifier.selectors import (
    ImageFilters,
    RequeueHealth,
    account_summary,
    drawing_preview_get_for,
    heartbeat_window,
    image_get_for,
    image_list_for,
    images_kept_on_delete,
    model_version_health,
    requeue_stale_health,
    site_stats,
    workers_alive,
)
from classifier.services import (
    AccountDeleteRefused,
    PreviewError,
    PreviewRateLimited,
    account_delete,
    account_delete_refusal,
    api_token_create,
    api_token_revoke,
    correction_training_refusal,
    drawing_preview_create,
    feedback_give,
    image_delete,
    image_flag,
    image_retry,
    image_upload_create,
    password_reset_request_allow,
    signup_allow,
)
from classifier.templatetags.digits import percent
from digitsite.brokers import broker_check
from digitsite.celery import app as celery_app

GALLERY_SIZE = 24
HISTORY_PAGE_SIZE = 25
MODEL_INPUT_ZOOM = 8


@login_not_required
@require_GET
def healthz(request):
    """For load balancers: 200 when the database and the broker answer (status "degraded"
    when no worker has recorded a heartbeat lately, beat's requeue_stale is overdue, or a
    worker could not load the active model version), 503 when either does not."""
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except DatabaseError as exc:
        checks["database"] = f"unreachable ({exc.__class__.__name__})"
    try:
        with celery_app.connection_for_write() as broker:
            broker.ensure_connection(max_retries=1, interval_start=0, timeout=2)
            broker_check(broker)
        checks["broker"] = "ok"
    except Exception as exc:  # kombu raises the transport's own errors
        checks["broker"] = f"unreachable ({exc.__class__.__name__})"
    workers, requeue = [], RequeueHealth(last_run_seconds_ago=None, requeued=None, overdue=False)
    model = {"version": None, "status": "unknown"}
    if checks["database"] == "ok":
        try:
            workers = workers_alive(within_seconds=heartbeat_window())
            requeue = requeue_stale_health(workers=workers)
            model = model_version_health()
        except DatabaseError:  # not migrated yet: no worker has a place to say it is alive
            pass
    up = checks["database"] == "ok" and checks["broker"] == "ok"
    healthy = workers and not requeue.overdue and model["status"] != "cannot be loaded"
    status = ("ok" if healthy else "degraded") if up else "down"
    now = timezone.now()
    hosts = [{"hostname": w.hostname, "seen_seconds_ago": round((now - w.seen_at).total_seconds(), 1)} for w in workers]
    body = {
        "status": status,
        **checks,
        "workers": {"alive": len(workers), "hosts": hosts},
        "requeue_stale": asdict(requeue),
        "model": model,
    }
    response = JsonResponse(body, status=200 if up else 503)
    response["Cache-Control"] = "no-store"
    return response


def bad_request(request, exception):
    """400 for a request Django would not read (e.g. more files than DATA_UPLOAD_MAX_NUMBER_FILES):
    JSON under /api/, the reason on a page elsewhere."""
    if isinstance(exception, TooManyFilesSent):
        reason = f"Upload at most {settings.UPLOAD_MAX_FILES} files at once."
    else:
        reason = "The request could not be read; please try again."
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": reason}, status=400)
    return render(request, "400.html", {"reason": reason}, status=400)


def page_not_found(request, exception):
    """404: JSON under /api/ (clients parse it), the site's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return render(request, "404.html", {"path": request.path}, status=404)


def server_error(request):
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Something went wrong on our side; please try again."}, status=500)
    # No context processors, no database: whatever failed may fail again while rendering this.
    return defaults.server_error(request, template_name="500.html")


@login_not_required
@require_GET
def favicon(request):
    """Browsers ask for /favicon.ico whatever the page says; the icon is a static file (its
    hashed name is known only at request time in production)."""
    return redirect(static("favicon.svg"), permanent=True)


@login_not_required
def locked_out(request, original_response=None, credentials=None):
    """What django-axes answers to a sign-in while the username and address are locked out."""
    minutes = round(settings.AXES_COOLOFF_TIME.total_seconds() / 60)
    context = {
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "username": (credentials or {}).get("username") or request.POST.get("username", ""),
        "cooloff": ngettext("%(count)d minute", "%(count)d minutes", minutes) % {"count": minutes},
        "password_reset": settings.PASSWORD_RESET_ENABLED,
        # The same count pauses the password change form: it says what it paused.
        "changing_password": bool(request.resolver_match and request.resolver_match.url_name == "password_change"),
    }
    return render(request, "registration/locked_out.html", context, status=429)


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's password change, with wrong old passwords counted as failed sign-ins."""

    form_class = CountedPasswordChangeForm

    def get_form_kwargs(self):
        return super().get_form_kwargs() | {"request": self.request}


@method_decorator(login_not_required, name="dispatch")
class PasswordResetView(auth_views.PasswordResetView):
    """Django's reset page, rate-limited, and switched off where no mail server is set
    (PASSWORD_RESET_ENABLED)."""

    def dispatch(self, request, *args, **kwargs):
        if not settings.PASSWORD_RESET_ENABLED:
            return render(request, "registration/password_reset_unavailable.html")
        return super().dispatch(request, *args, **kwargs)

    def form_valid(self, form):
        allowed = password_reset_request_allow(
            client_address=get_client_ip_address(self.request) or "", email=form.cleaned_data["email"]
        )
        if allowed:
            return super().form_valid(form)
        # Over the limit: no mail, and the same answer as when one was sent.
        return redirect(self.get_success_url())


@login_not_required
@require_http_methods(["GET", "POST"])
def signup(request):
    if request.user.is_authenticated:
        return redirect("classifier:home")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if not signup_allow(client_address=get_client_ip_address(request) or ""):
            minutes = round(settings.SIGNUP_RATE_WINDOW_SECONDS / 60)
            context = {"form": form, "paused": {"limit": settings.SIGNUP_RATE_PER_ADDRESS, "minutes": minutes}}
            return render(request, "registration/signup.html", context, status=429)
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome, {user.username}! Upload a digit to get started.")
        return redirect("classifier:home")
    return render(request, "registration/signup.html", {"form": form})


@login_not_required
@require_http_methods(["GET", "POST"])
def home(request):
    """The gallery and its upload form; for visitors without an account, the landing page
    (what the site does, three answers of the real model, sign up or log in). Uploading
    still needs an account."""
    if not request.user.is_authenticated:
        if request.method == "POST":
            return redirect_to_login(request.get_full_path())
        return render(request, "classifier/landing.html", {"examples": landing.examples()})
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        outcome = image_upload_create(
            owner=request.user,
            files=form.cleaned_data["images"],
            training_consent=form.cleaned_data["training_consent"],
            reading=form.cleaned_data["reading"],
        )
        for name, reason in outcome.refused:
            messages.error(request, f"{name}: {reason}")
        if outcome.created:
            count = len(outcome.created)
            message = ngettext(
                "%(count)d image uploaded; classifying now.", "%(count)d images uploaded; classifying now.", count
            )
            messages.success(request, message % {"count": count})
        return redirect("classifier:home")
    images = image_list_for(request.user)[:GALLERY_SIZE]
    return render(request, "classifier/home.html", {"form": form, "images": images})


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
        return JsonResponse({"error": "Say auto, digit or number for what the drawing shows."}, status=400)
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
        "bars": _bars(answer["probabilities"], answer["digit"]),
        "model_version": preview.model_version,
        "inference_ms": preview.inference_ms,
    }


@require_POST
def upload_inline(request):
    """Canvas drawings and camera shots: the same upload pipeline as the form, answered with
    the new cards (which then poll for their prediction) so the page never reloads."""
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        errors = [error for field_errors in form.errors.values() for error in field_errors]
        return render(request, "classifier/_upload_result.html", {"errors": errors}, status=400)
    outcome = image_upload_create(
        owner=request.user,
        files=form.cleaned_data["images"],
        training_consent=form.cleaned_data["training_consent"],
        reading=form.cleaned_data["reading"],
    )
    errors = [f"{name}: {reason}" for name, reason in outcome.refused]
    context = {"images": outcome.created, "errors": errors}
    return render(request, "classifier/_upload_result.html", context, status=201 if outcome.created else 400)


def _image_or_404(request, pk: int) -> DigitImage:
    """An image the user may see (their own, or any for staff); 404 for any other."""
    image = image_get_for(request.user, pk)
    if image is None:
        raise Http404
    return image


@require_GET
def image_card(request, pk: int):
    image = _image_or_404(request, pk)
    html = render_to_string("classifier/_card.html", {"image": image}, request=request)
    # htmx stops polling on 286; the final card is still swapped in.
    return HttpResponseStopPolling(html) if image.is_finished else HttpResponse(html)


def _history_filters(request) -> tuple[HistoryFilterForm, ImageFilters]:
    form = HistoryFilterForm(request.GET or None, user=request.user)
    return form, form.to_filters()


@never_cache  # the page shows the token: no browser or proxy may keep a copy
@require_http_methods(["GET", "POST"])
def api_token(request):
    """Create, replace or revoke the signed-in user's API token."""
    if request.method == "POST":
        if request.POST.get("action") == "revoke":
            if api_token_revoke(user=request.user):
                messages.success(request, "Your API token is revoked: requests with it are refused from now on.")
        else:
            replaced = Token.objects.filter(user=request.user).exists()
            api_token_create(user=request.user)
            messages.success(
                request,
                "Your new API token is ready. The old one no longer works."
                if replaced
                else "Your API token is ready: copy it into your script or app.",
            )
        return redirect("classifier:api_token")
    token = Token.objects.filter(user=request.user).first()
    return render(request, "classifier/api_token.html", {"token": token})


@require_GET
def account(request):
    """The signed-in user's account: password, API token, their data, deleting it all."""
    return render(request, "classifier/account.html", {"summary": account_summary(request.user)})


@never_cache  # personal data: no proxy or browser cache keeps a copy
@require_GET
def account_data(request):
    """ "Download my data": the history CSV and every image file, as a zip streamed while it is
    written (memory stays bounded whatever the number of images)."""
    images = image_list_for(request.user).select_related("feedback")
    stamp = timezone.now().strftime("%Y-%m-%d")
    response = StreamingHttpResponse(exports.data_zip(images, stamp=stamp), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="digitsite-data-{stamp}.zip"'
    return response


@require_http_methods(["GET", "POST"])
def account_delete_view(request):
    """Delete the account and everything in it, once the password confirms it; the person
    lands, signed out, on the landing page with a word that it is done."""
    refusal = account_delete_refusal(user=request.user)
    form = AccountDeleteForm(request.POST or None, request=request)
    if request.method == "POST" and refusal is None and form.is_valid():
        try:
            deletion = account_delete(user=request.user)
        except AccountDeleteRefused as exc:  # became the last superuser since the page was shown
            messages.error(request, str(exc))
            return redirect("classifier:account_delete")
        logout(request)
        kept = (
            ngettext(
                " %(count)d corrected image is kept as a 28x28 training example, as you agreed.",
                " %(count)d corrected images are kept as 28x28 training examples, as you agreed.",
                deletion.kept,
            )
            % {"count": deletion.kept}
            if deletion.kept
            else ""
        )
        messages.success(
            request,
            ngettext(
                "Your account was deleted, with its %(count)d image and everything about it.",
                "Your account was deleted, with its %(count)d images and everything about them.",
                deletion.images,
            )
            % {"count": deletion.images}
            + kept,
        )
        return redirect("classifier:home")
    context = {"form": form, "summary": account_summary(request.user), "refusal": refusal}
    return render(request, "classifier/account_delete.html", context, status=400 if form.errors else 200)


@require_GET
def history(request):
    form, filters = _history_filters(request)
    page = Paginator(image_list_for(request.user, filters), HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    # Links (pages, CSV) carry only the filters this page applied, so the CSV matches the list.
    query = request.GET.copy()
    for name in ("page", *form.errors):
        query.pop(name, None)
    context = {"form": form, "page": page, "query": query.urlencode(), "ignored": form.invalid_filters()}
    return render(request, "classifier/history.html", context)


@require_GET
def history_export(request):
    """The signed-in user's history (with the page's filters) as CSV, streamed row by row.

    An invalid filter is refused: a file that silently holds more than was asked for would
    pass as the filtered one."""
    form, filters = _history_filters(request)
    if invalid := form.invalid_filters():
        reason = "Not exported; fix these filters and try again:\n" + "\n".join(invalid) + "\n"
        return HttpResponseBadRequest(reason, content_type="text/plain; charset=utf-8")
    images = image_list_for(request.user, filters).select_related("feedback")
    response = StreamingHttpResponse(exports.history_csv(images), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y-%m-%d")
    response["Content-Disposition"] = f'attachment; filename="digitsite-history-{stamp}.csv"'
    return response


def _bars(probabilities: list[float], digit: int) -> list[dict]:
    """The ten confidence bars of the detail page and the live answer; the answer's stands out."""
    return [{"digit": d, "percent": 100 * p, "probability": p, "top": d == digit} for d, p in enumerate(probabilities)]


def _readings(image: DigitImage, prediction: Prediction) -> list[dict]:
    """A number's digits for the detail page: each box on the original, with its label (the
    digit and its confidence) and where it goes (above the box, below it where the image has no
    room above, else inside), and the digit's ten bars. Sizes are in the image's pixels: the SVG
    over it scales with it. A label is no wider than the room before the next box, so that
    neighbours' labels never overlap."""
    readings = []
    digits = prediction.readings()
    boxes = [reading["box"] for reading in digits]
    for index, reading in enumerate(digits):
        x, y, w, h = reading["box"]
        unsure = reading["verdict"] != Prediction.Verdict.DIGIT
        label = f"{reading['digit']} {percent(reading['confidence'])}{' ?' if unsure else ''}"
        room = (boxes[index + 1][0] if index + 1 < len(boxes) else image.width) - x - 2
        # A glyph of these sans-serif digits is about 0.6 of the font size wide.
        font = max(4, min(round(0.35 * h), int(room / (0.6 * len(label)))))
        if y >= font:
            label_y = y - 2
        elif y + h + font <= image.height:
            label_y = y + h + font
        else:
            label_y = y + font
        readings.append(
            {
                **reading,
                "index": index,
                "unsure": unsure,
                "label": label,
                "runner_up": runner_up(reading["probabilities"])[0],
                "bars": _bars(reading["probabilities"], reading["digit"]),
                "bars_label": f"Bar chart of the model's confidence in each digit, for digit {index + 1}",
                "x": x,
                "y": y,
                "w": w,
                "h": h,
                "label_y": label_y,
                "font": font,
            }
        )
    return readings


def _detail_context(request, image: DigitImage, *, polled: bool = False) -> dict:
    prediction = image.prediction_or_none
    bars = _bars(prediction.probabilities, prediction.digit) if prediction is not None else []
    feedback = image.feedback_or_none
    feedback_form = None
    if prediction is not None and image.owner_id == request.user.pk:
        feedback_form = FeedbackForm(prediction=prediction, feedback=feedback)
    flag = image.flag_or_none
    return {
        "image": image,
        "prediction": prediction,
        "bars": bars,
        "feedback": feedback,
        "feedback_form": feedback_form,
        "flag_form": StaffFlagForm(image=image) if may_flag(request.user) and image.is_finished else None,
        "may_flag": may_flag(request.user),
        "flag_not_trained": flag
        and correction_training_refusal(correct_number=flag.correct_number, prediction=prediction),
        # An all-zero map means nothing in the image spoke for the digit: say so, show no picture.
        "grad_cam_empty": prediction is not None and prediction.heat_map_is_empty,
        "readings": _readings(image, prediction) if prediction is not None and prediction.is_number else [],
        # Polled in place, the answer also redraws the photo beside it with the digits' boxes.
        "polled": polled,
    }


@require_GET
def image_detail(request, pk: int):
    image = _image_or_404(request, pk)
    return render(request, "classifier/detail.html", _detail_context(request, image))


@require_GET
def image_detail_result(request, pk: int):
    """The detail page's answer, polled by htmx while the image waits: the verdict, the bars,
    Grad-CAM and the feedback form replace the waiting notice in place when it is done."""
    image = _image_or_404(request, pk)
    context = _detail_context(request, image, polled=True)
    html = render_to_string("classifier/_detail_result.html", context, request=request)
    return HttpResponseStopPolling(html) if image.is_finished else HttpResponse(html)


def _form_errors_tell(request, form) -> None:
    for errors in form.errors.values():
        for error in errors:
            messages.error(request, error)


@require_POST
def image_feedback(request, pk: int):
    """The owner says the reading is wrong; staff see it as a suggestion."""
    image = _image_or_404(request, pk)
    if image.owner_id != request.user.pk or image.prediction_or_none is None:
        raise Http404
    form = FeedbackForm(request.POST, prediction=image.prediction)
    if not form.is_valid():
        _form_errors_tell(request, form)
        return redirect(image)
    try:
        feedback = feedback_give(image=image, user=request.user, suggested_number=form.cleaned_data["number"])
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        number = feedback.suggested_number
        messages.success(
            request,
            f"Thank you: you said this {f'is a {number}' if len(number) == 1 else f'reads {number}'}. "
            "The prediction stays as it is; our staff will review your suggestion.",
        )
    return redirect(image)


@require_POST
def image_flag_view(request, pk: int):
    """Staff who may flag correct the reading from the image's page, as they would in the admin."""
    if not may_flag(request.user):
        raise Http404
    image = _image_or_404(request, pk)
    form = StaffFlagForm(request.POST, image=image)
    if not form.is_valid():
        _form_errors_tell(request, form)
        return redirect(image)
    try:
        flag = image_flag(
            image=image, correct_number=form.correct_number, flagged_by=request.user, note=form.cleaned_data["note"]
        )
    except ValueError as exc:
        messages.error(request, str(exc))
        return redirect(image)
    messages.success(request, f"Flagged: this {flag.says}.")
    if refusal := correction_training_refusal(correct_number=flag.correct_number, prediction=image.prediction_or_none):
        messages.warning(request, refusal)
    return redirect(image)


@require_POST
def image_retry_view(request, pk: int):
    """The owner asks for a failed image to be classified again."""
    image = _image_or_404(request, pk)
    if image.owner_id != request.user.pk:
        raise Http404
    if image_retry(image=image):
        messages.success(request, "Trying again: the answer appears here in a moment.")
    else:
        messages.info(request, "This image has not failed: there is nothing to try again.")
    return redirect(image)


def _own_image_or_404(request, pk: int) -> DigitImage:
    """An image of the signed-in user; 404 for any other, staff included."""
    image = _image_or_404(request, pk)
    if image.owner_id != request.user.pk:
        raise Http404
    return image


@require_http_methods(["GET", "POST"])
def image_delete_view(request, pk: int):
    """The owner deletes an image: a page that says what goes and what is kept, whose button
    posts here (no script needed)."""
    image = _own_image_or_404(request, pk)
    keeps_example = images_kept_on_delete(DigitImage.objects.filter(pk=image.pk)).exists()
    if request.method == "POST":
        kept = image_delete(image=image)
        messages.success(
            request,
            f"Deleted {image.original_name}"
            + (
                "; its corrected 28x28 version is kept to train the model, as you agreed at upload."
                if kept
                else ", with its prediction and everything about it."
            ),
        )
        return redirect("classifier:home")
    return render(request, "classifier/image_delete.html", {"image": image, "keeps_example": keeps_example})


@require_GET
def image_file(request, pk: int):
    """The original upload, to its owner and staff only, with its real content type."""
    return image_file_response(_image_or_404(request, pk))


def _prediction_or_404(request, pk: int) -> Prediction:
    """The prediction of an image the user may see; 404 for no such image or none yet."""
    prediction = _image_or_404(request, pk).prediction_or_none
    if prediction is None:
        raise Http404
    return prediction


@require_GET
def image_grad_cam(request, pk: int):
    """The Grad-CAM heat map over the model input: which pixels drove the prediction."""
    from ml.heatmap import heatmap_overlay  # matplotlib: loaded by the pages that draw only

    prediction = _prediction_or_404(request, pk)
    heat = prediction.heat_map()
    if heat is None:
        raise Http404
    return png_response(heatmap_overlay(prediction.model_input_pixels(), heat, zoom=MODEL_INPUT_ZOOM))


@require_GET
def image_model_input(request, pk: int):
    """The image the model saw, enlarged with hard pixel edges."""
    pixels = _prediction_or_404(request, pk).model_input_pixels()
    return png_response(np.kron(pixels, np.ones((MODEL_INPUT_ZOOM, MODEL_INPUT_ZOOM), dtype=np.uint8)))


@require_GET
def image_digit_input(request, pk: int, index: int):
    """The 28x28 image the model saw for one digit of a number (0 the leftmost), enlarged."""
    inputs = _prediction_or_404(request, pk).digit_input_pixels()
    if index >= len(inputs):
        raise Http404
    return png_response(np.kron(inputs[index], np.ones((MODEL_INPUT_ZOOM, MODEL_INPUT_ZOOM), dtype=np.uint8)))


@require_GET
def stats(request):
    """Staff who may view images: how the site and its models are doing, as charts with their numbers."""
    if not may_see_all_images(request.user):
        raise Http404
    data = site_stats()
    versions = data.versions
    labels = [v.label for v in versions]
    figures = [
        charts.uploads_per_day(data.days, data.uploads_per_day),
        charts.predictions_per_digit(data.predictions_per_digit),
        charts.confidence_histogram(data.confidence_bins),
        charts.flagged_share_per_version(labels, [v.flagged for v in versions], [v.predictions for v in versions]),
        charts.unsure_share_per_version(
            labels, [v.unsure for v in versions], [v.not_a_digit for v in versions], [v.predictions for v in versions]
        ),
        charts.review_queue(data.days, data.review_queue_per_day),
        charts.correction_confusion(data.corrections),
        charts.version_metrics(labels, [v.test_accuracy for v in versions]),
    ]
    return render(request, "classifier/stats.html", {"stats": data, "charts": figures})
