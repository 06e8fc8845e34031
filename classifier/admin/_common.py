"""What more than one admin page shares: the predicted-digit filter and a filter for "is this
field set", and the columns shown of an image on several pages (its thumbnail, something of its
prediction, and whether retraining learns from a correction of it)."""

from collections.abc import Callable

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from classifier.models import DIGIT_CHOICES, DigitImage, Prediction
from classifier.services import correction_training_refusal


class PredictedDigitFilter(admin.SimpleListFilter):
    title = "predicted digit"
    parameter_name = "digit"
    field = "prediction__digit"

    def lookups(self, request, model_admin):
        return DIGIT_CHOICES

    def queryset(self, request, queryset):
        return queryset.filter(**{self.field: int(self.value())}) if self.value() else queryset


class IsSetFilter(admin.SimpleListFilter):
    """The rows whose ``field`` is set ("yes") or empty ("no"), offered with ``labels``."""

    field: str
    labels: dict[str, str]

    def lookups(self, request, model_admin):
        return list(self.labels.items())

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(**{f"{self.field}__isnull": self.value() == "no"})
        return queryset


def of_prediction(image: DigitImage, show: Callable[[Prediction], object]):
    """A column that shows something of the image's prediction; "-" while there is none."""
    prediction = image.prediction_or_none
    return show(prediction) if prediction else "-"


def retraining_note(correct_number: str | None, image: DigitImage) -> str:
    """Whether retraining learns from a correction of ``image`` (``None``: not a digit), and
    why not."""
    refusal = correction_training_refusal(correct_number=correct_number, prediction=image.prediction_or_none)
    return refusal or "trained on"


def image_thumbnail(image: DigitImage, size: int = 56):
    url = reverse("classifier:image_file", args=[image.pk])
    return format_html(
        '<img src="{}" alt="{}" style="max-width:{}px;max-height:{}px;background:#fff">',
        url,
        image.original_name,
        size,
        size,
    )
