"""Read-side queries."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from classifier.models import DigitImage, Flag, ModelVersion


@dataclass(frozen=True)
class ImageFilters:
    digit: int | None = None
    status: str | None = None
    max_confidence: float | None = None  # "confidence below": a fraction in (0, 1]
    flagged: bool | None = None
    everyone: bool = False  # staff only: every user's images


def image_list_for(user, filters: ImageFilters | None = None) -> QuerySet[DigitImage]:
    """The images a user may see, newest first, narrowed by the filters."""
    filters = filters or ImageFilters()
    images = DigitImage.objects.select_related("prediction", "prediction__model_version", "flag", "owner")
    if not (user.is_staff and filters.everyone):
        images = images.filter(owner=user)
    if filters.digit is not None:
        images = images.filter(prediction__digit=filters.digit)
    if filters.status:
        images = images.filter(status=filters.status)
    if filters.max_confidence is not None:
        images = images.filter(prediction__confidence__lt=filters.max_confidence)
    if filters.flagged is not None:
        images = images.filter(flag__isnull=not filters.flagged)
    return images.order_by("-uploaded_at", "-id")


def image_get_for(user, pk: int) -> DigitImage | None:
    """One image, if the user may see it (its owner, or staff)."""
    images = DigitImage.objects.select_related("prediction", "prediction__model_version", "flag", "owner")
    if not user.is_staff:
        images = images.filter(owner=user)
    return images.filter(pk=pk).first()


def flags_for_training() -> QuerySet[Flag]:
    return Flag.objects.select_related("image").order_by("pk")


def model_version_list() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.select_related("parent").order_by("number")
