"""Images: the gallery with its upload form (the landing page for visitors), inline uploads of
drawings and camera shots, an image's card and detail page with the polled answer, the owner's
feedback, staff flags, retry and delete, and the pictures behind them (the original file, the
model's input, each digit's input and Grad-CAM), each to the owner and staff only."""

from __future__ import annotations

import numpy as np
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling

from classifier import landing
from classifier.forms import FeedbackForm, StaffFlagForm, UploadForm
from classifier.models import DigitImage, Prediction, runner_up
from classifier.permissions import may_flag
from classifier.reading_labels import reading_label_styles
from classifier.responses import image_file_response, png_response
from classifier.selectors import image_get_for, image_list_for, images_kept_on_delete
from classifier.services import (
    correction_training_refusal,
    feedback_give,
    image_delete,
    image_flag,
    image_read_as,
    image_retry,
    image_upload_create,
)
from classifier.templatetags.digits import percent
from classifier.views._common import confidence_bars

GALLERY_SIZE = 24
MODEL_INPUT_ZOOM = 8


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


def _readings(image: DigitImage, prediction: Prediction) -> tuple[list[dict], str]:
    """A number's digits for the detail page: each box on the original (in the image's pixels:
    the SVG over it scales with it), its label (the digit and its confidence, at one size on
    every screen, placed by ``reading_labels``) and the digit's ten bars; and the photo's style."""
    digits = prediction.readings()
    unsure = [reading["verdict"] != Prediction.Verdict.DIGIT for reading in digits]
    labels = [
        f"{reading['digit']} {percent(reading['confidence'])}{' ?' if doubt else ''}"
        for reading, doubt in zip(digits, unsure, strict=True)
    ]
    photo_style, label_styles = reading_label_styles(
        boxes=[reading["box"] for reading in digits], labels=labels, image_width=image.width, image_height=image.height
    )
    readings = []
    for index, reading in enumerate(digits):
        x, y, w, h = reading["box"]
        readings.append(
            {
                **reading,
                "index": index,
                "unsure": unsure[index],
                "label": labels[index],
                "label_style": label_styles[index],
                "runner_up": runner_up(reading["probabilities"])[0],
                "bars": confidence_bars(reading["probabilities"], reading["digit"]),
                "bars_label": f"Bar chart of the model's confidence in each digit, for digit {index + 1}",
                "x": x,
                "y": y,
                "w": w,
                "h": h,
            }
        )
    return readings, photo_style


def _detail_context(request, image: DigitImage, *, polled: bool = False) -> dict:
    prediction = image.prediction_or_none
    bars = confidence_bars(prediction.probabilities, prediction.digit) if prediction is not None else []
    feedback = image.feedback_or_none
    feedback_form = None
    if prediction is not None and image.owner_id == request.user.pk:
        feedback_form = FeedbackForm(prediction=prediction, feedback=feedback)
    flag = image.flag_or_none
    readings, photo_style = (
        _readings(image, prediction) if prediction is not None and prediction.is_number else ([], "")
    )
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
        "readings": readings,
        "reading_photo_style": photo_style,
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
        feedback = feedback_give(image=image, user=request.user, suggested_number=form.suggested_number)
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            f"Thank you: you said this {feedback.says}. "
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
def image_read_as_view(request, pk: int):
    """The owner asks for an image to be read again another way (one digit, a number, or left
    to the site), as the form's ``reading`` says."""
    image = _own_image_or_404(request, pk)
    reading = request.POST.get("reading", "")
    try:
        read_again = image_read_as(image=image, reading=reading)
    except ValueError:
        messages.error(request, "Choose how to read it: one digit, a number, or let the site decide.")
        return redirect(image)
    if read_again:
        label = DigitImage.Reading(reading).label
        messages.success(request, f"Reading it again ({label.lower()}): the answer appears here in a moment.")
    else:
        messages.info(request, "It is already read that way, or still being read: nothing to do yet.")
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
    from ml.serving.heatmap import heatmap_overlay  # matplotlib: loaded by the pages that draw only

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
