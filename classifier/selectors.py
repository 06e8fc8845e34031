"""Read-side queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from django.conf import settings
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from classifier.models import DIGITS, DigitImage, Feedback, Flag, ModelVersion, Prediction, RequeueRun, WorkerHeartbeat


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


@dataclass(frozen=True)
class VersionStats:
    label: str  # "v2"
    architecture: str
    is_active: bool
    test_accuracy: float | None
    predictions: int
    flagged: int

    @property
    def test_accuracy_percent(self) -> float | None:
        return None if self.test_accuracy is None else 100 * self.test_accuracy

    @property
    def flagged_share(self) -> float:
        return self.flagged / self.predictions if self.predictions else 0.0


@dataclass(frozen=True)
class SiteStats:
    days: list[date]
    uploads_per_day: list[int]
    predictions_per_digit: list[int]
    confidences: list[float]
    versions: list[VersionStats]
    corrections: list[list[int]]  # [predicted][correct] counts of flagged images
    totals: dict[str, int]


def site_stats(*, days: int = 30) -> SiteStats:
    """Everything the staff statistics page shows, computed in the database where it can be."""
    today = timezone.localdate()
    first = today - timedelta(days=days - 1)
    per_day = dict(
        DigitImage.objects.filter(uploaded_at__date__gte=first)
        .annotate(day=TruncDate("uploaded_at"))
        .values_list("day")
        .annotate(n=Count("id"))
        .values_list("day", "n")
    )
    day_list = [first + timedelta(days=i) for i in range(days)]
    per_digit = dict(Prediction.objects.values_list("digit").annotate(n=Count("id")).values_list("digit", "n"))
    versions = [
        VersionStats(
            label=f"v{version.number}",
            architecture=version.architecture,
            is_active=version.is_active,
            test_accuracy=version.test_accuracy,
            predictions=version.n_predictions,
            flagged=version.n_flagged,
        )
        for version in ModelVersion.objects.order_by("number").annotate(
            n_predictions=Count("predictions", distinct=True),
            n_flagged=Count("predictions", filter=Q(predictions__image__flag__isnull=False), distinct=True),
        )
    ]
    corrections = [[0] * len(DIGITS) for _ in DIGITS]
    pairs = (
        Flag.objects.filter(image__prediction__isnull=False)
        .values_list("image__prediction__digit", "correct_digit")
        .annotate(n=Count("id"))
    )
    for predicted, correct, n in pairs:
        corrections[predicted][correct] = n
    return SiteStats(
        days=day_list,
        uploads_per_day=[per_day.get(day, 0) for day in day_list],
        predictions_per_digit=[per_digit.get(digit, 0) for digit in DIGITS],
        confidences=list(Prediction.objects.values_list("confidence", flat=True)),
        versions=versions,
        corrections=corrections,
        totals={
            "images": DigitImage.objects.count(),
            "users": DigitImage.objects.values("owner").distinct().count(),
            "failed": DigitImage.objects.filter(status=DigitImage.Status.FAILED).count(),
            "flags": Flag.objects.count(),
            "open_feedback": Feedback.objects.filter(confirmed_at__isnull=True).count(),
        },
    )


def workers_alive(*, within_seconds: float) -> list[WorkerHeartbeat]:
    """The workers that recorded a heartbeat within the last ``within_seconds``."""
    since = timezone.now() - timedelta(seconds=within_seconds)
    return list(WorkerHeartbeat.objects.filter(seen_at__gte=since).order_by("hostname"))


@dataclass(frozen=True)
class RequeueHealth:
    last_run_seconds_ago: float | None
    requeued: int | None  # by that run
    overdue: bool


def requeue_stale_health(*, workers: list[WorkerHeartbeat]) -> RequeueHealth:
    """When beat's requeue_stale last ran. Overdue: workers are alive, yet no run came within
    three beat intervals of the last one (before any, of the oldest live worker's start), so
    beat is down and images stranded by a broker outage would never be classified."""
    now = timezone.now()
    last = RequeueRun.objects.order_by("-ran_at").first()
    since = last.ran_at if last else min((w.started_at for w in workers), default=now)
    limit = timedelta(seconds=3 * settings.REQUEUE_STALE_INTERVAL_SECONDS)
    return RequeueHealth(
        last_run_seconds_ago=round((now - last.ran_at).total_seconds(), 1) if last else None,
        requeued=last.requeued if last else None,
        overdue=bool(workers) and now - since > limit,
    )
