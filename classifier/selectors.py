"""Read-side queries."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.db.models import Case, Count, F, Q, QuerySet, Value, When
from django.db.models.functions import TruncDate
from django.utils import timezone

from classifier.models import (
    DIGITS,
    DigitImage,
    DrawingPreview,
    Feedback,
    Flag,
    ModelVersion,
    Prediction,
    RequeueRun,
    TrainingExample,
    WorkerHeartbeat,
)


@dataclass(frozen=True)
class ImageFilters:
    digit: int | None = None
    status: str | None = None
    verdict: str | None = None  # Prediction.Verdict
    max_confidence: float | None = None  # "confidence below": a fraction in (0, 1]
    flagged: bool | None = None
    everyone: bool = False  # staff only: every user's images


def image_list_for(user, filters: ImageFilters | None = None) -> QuerySet[DigitImage]:
    """The images a user may see, newest first, narrowed by the filters."""
    filters = filters or ImageFilters()
    images = DigitImage.objects.select_related("prediction", "prediction__model_version", "flag", "feedback", "owner")
    if not (user.is_staff and filters.everyone):
        images = images.filter(owner=user)
    if filters.digit is not None:
        images = images.filter(prediction__digit=filters.digit)
    if filters.status:
        images = images.filter(status=filters.status)
    if filters.verdict:
        images = images.filter(prediction__verdict=filters.verdict)
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


def drawing_preview_get_for(user, pk) -> DrawingPreview | None:
    """The user's own drawing in progress; None for anyone else's or one already replaced."""
    return DrawingPreview.objects.select_related("model_version").filter(pk=pk, owner=user).first()


def review_queue(images: QuerySet[DigitImage] | None = None) -> QuerySet[DigitImage]:
    """Predictions staff have neither flagged nor found right, least certain first: the unsure
    ones, then those judged not a digit, then the rest, each by rising confidence; a
    correction teaches the model most where it was least sure."""
    images = DigitImage.objects.all() if images is None else images
    return images.filter(status=DigitImage.Status.DONE, flag__isnull=True, reviewed_at__isnull=True).order_by(
        *REVIEW_ORDER
    )


REVIEW_ORDER = (
    Case(
        When(prediction__verdict=Prediction.Verdict.UNSURE, then=Value(0)),
        When(prediction__verdict=Prediction.Verdict.NOT_A_DIGIT, then=Value(1)),
        default=Value(2),
    ).asc(),
    F("prediction__confidence").asc(),
    F("id").asc(),
)


def images_kept_on_delete(images: QuerySet[DigitImage]) -> QuerySet[DigitImage]:
    """Those of ``images`` whose deletion keeps a TrainingExample: the owner agreed at upload,
    staff corrected it, and the worker stored the input the model took (a failed image has
    none). Everything else about a deleted image goes."""
    return images.filter(training_consent=True, flag__isnull=False, prediction__model_input_exact__isnull=False)


def flags_for_training() -> QuerySet[Flag]:
    return Flag.objects.select_related("image").order_by("pk")


def training_examples_for_training() -> QuerySet[TrainingExample]:
    """Corrections kept after their image was deleted (with the owner's consent)."""
    return TrainingExample.objects.order_by("pk")


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
    unsure: int = 0
    not_a_digit: int = 0

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
    review_queue_per_day: list[int]  # predictions waiting for review at the end of each day


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
            unsure=version.n_unsure,
            not_a_digit=version.n_not_a_digit,
        )
        for version in ModelVersion.objects.order_by("number").annotate(
            n_predictions=Count("predictions", distinct=True),
            n_flagged=Count("predictions", filter=Q(predictions__image__flag__isnull=False), distinct=True),
            n_unsure=Count("predictions", filter=Q(predictions__verdict=Prediction.Verdict.UNSURE), distinct=True),
            n_not_a_digit=Count(
                "predictions", filter=Q(predictions__verdict=Prediction.Verdict.NOT_A_DIGIT), distinct=True
            ),
        )
    ]
    corrections = [[0] * len(DIGITS) for _ in DIGITS]
    pairs = (
        Flag.objects.filter(image__prediction__isnull=False, not_a_digit=False)
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
            "to_review": review_queue().count(),
        },
        review_queue_per_day=_review_queue_per_day(day_list),
    )


def _review_queue_per_day(days: list[date]) -> list[int]:
    """The queue's size at the end of each day: predictions made by then, less those reviewed
    or flagged by then (in one pass over the predictions' and reviews' dates)."""
    zone = timezone.get_current_timezone()
    ends = [timezone.make_aware(datetime.combine(day + timedelta(days=1), time.min), zone) for day in days]
    made = sorted(Prediction.objects.filter(created_at__lt=ends[-1]).values_list("created_at", flat=True))
    settled = sorted(
        min(moment for moment in pair if moment is not None)
        for pair in DigitImage.objects.filter(Q(reviewed_at__isnull=False) | Q(flag__isnull=False)).values_list(
            "reviewed_at", "flag__flagged_at"
        )
    )
    return [bisect_left(made, end) - bisect_left(settled, end) for end in ends]


def heartbeat_window() -> float:
    """A worker is alive if it recorded a heartbeat within three of its beats."""
    return 3 * settings.WORKER_HEARTBEAT_SECONDS


def _heartbeats_within(within_seconds: float) -> QuerySet[WorkerHeartbeat]:
    return WorkerHeartbeat.objects.filter(seen_at__gte=timezone.now() - timedelta(seconds=within_seconds))


def workers_alive(*, within_seconds: float) -> list[WorkerHeartbeat]:
    """The workers that recorded a heartbeat within the last ``within_seconds``."""
    return list(_heartbeats_within(within_seconds).order_by("hostname"))


def workers_ready() -> bool:
    """Whether a live worker has the model loaded (else new uploads wait for one to warm up)."""
    return _heartbeats_within(heartbeat_window()).filter(ready_at__isnull=False).exists()


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


@dataclass(frozen=True)
class AccountSummary:
    """What deleting an account removes, and what it keeps."""

    images: int
    predictions: int
    flagged: int
    kept: int  # corrections kept as 28x28 training examples (the owner agreed at upload)
    has_token: bool


def account_summary(user) -> AccountSummary:
    from rest_framework.authtoken.models import Token

    images = DigitImage.objects.filter(owner=user)
    counts = images.aggregate(
        images=Count("id"), predictions=Count("prediction"), flagged=Count("flag", filter=Q(flag__isnull=False))
    )
    return AccountSummary(
        images=counts["images"],
        predictions=counts["predictions"],
        flagged=counts["flagged"],
        kept=images_kept_on_delete(images).count(),
        has_token=Token.objects.filter(user=user).exists(),
    )
