"""Read-side queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.db.models import Case, Count, F, IntegerField, Q, QuerySet, Value, When
from django.db.models.functions import Coalesce, Least
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
    unsure: int = 0
    not_a_digit: int = 0

    @property
    def test_accuracy_percent(self) -> float | None:
        return None if self.test_accuracy is None else 100 * self.test_accuracy

    @property
    def flagged_share(self) -> float:
        return self.flagged / self.predictions if self.predictions else 0.0


CONFIDENCE_BINS = 20  # 5% wide: fine enough to see the bulk near 100% and the tail below the reject line


@dataclass(frozen=True)
class SiteStats:
    days: list[date]
    uploads_per_day: list[int]
    predictions_per_digit: list[int]
    confidence_bins: list[int]  # predictions per CONFIDENCE_BINS-th of [0, 1]; 100% counts in the last
    versions: list[VersionStats]
    corrections: list[list[int]]  # [predicted][correct] counts of flagged images
    totals: dict[str, int]
    review_queue_per_day: list[int]  # predictions waiting for review at the end of each day


def site_stats(*, days: int = 30) -> SiteStats:
    """Everything the staff statistics page shows, each figure one aggregate query over the
    whole table (a bounded number of queries, whatever the number of predictions)."""
    zone = timezone.get_current_timezone()
    day_list = [timezone.localdate() - timedelta(days=days - 1 - offset) for offset in range(days)]
    ends = [timezone.make_aware(datetime.combine(day + timedelta(days=1), time.min), zone) for day in day_list]
    start = timezone.make_aware(datetime.combine(day_list[0], time.min), zone)

    uploads = _count_by(
        DigitImage.objects.filter(uploaded_at__gte=start, uploaded_at__lt=ends[-1]), _bucket("uploaded_at", ends)
    )
    per_digit = _count_by(Prediction.objects.all(), F("digit"))
    bin_edges = [(index + 1) / CONFIDENCE_BINS for index in range(CONFIDENCE_BINS - 1)]
    bins = _count_by(Prediction.objects.all(), _bucket("confidence", bin_edges, beyond=CONFIDENCE_BINS - 1))

    corrections = [[0] * len(DIGITS) for _ in DIGITS]
    pairs = (
        Flag.objects.filter(image__prediction__isnull=False, not_a_digit=False)
        .values_list("image__prediction__digit", "correct_digit")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for predicted, correct, n in pairs:
        corrections[predicted][correct] = n

    images = DigitImage.objects.aggregate(
        images=Count("pk"),
        users=Count("owner", distinct=True),
        failed=Count("pk", filter=Q(status=DigitImage.Status.FAILED)),
    )
    return SiteStats(
        days=day_list,
        uploads_per_day=[uploads.get(index, 0) for index in range(days)],
        predictions_per_digit=[per_digit.get(digit, 0) for digit in DIGITS],
        confidence_bins=[bins.get(index, 0) for index in range(CONFIDENCE_BINS)],
        versions=_version_stats(),
        corrections=corrections,
        totals={
            **images,
            "flags": Flag.objects.count(),
            "open_feedback": Feedback.objects.filter(confirmed_at__isnull=True).count(),
            "to_review": review_queue().count(),
        },
        review_queue_per_day=_review_queue_per_day(ends),
    )


def _bucket(field: str, upper_bounds: list, *, beyond: int | None = None) -> Case:
    """The index of the first bound a row's ``field`` lies below (``beyond`` past the last).

    Plain comparisons against bounds computed here, rather than a database date or rounding
    function: they mean the same on SQLite and PostgreSQL (whose float-to-integer cast rounds
    where SQLite's truncates), day bounds carry the site's time zone, and SQLite runs no Python
    function per row, as it does for TruncDate."""
    whens = [When(**{f"{field}__lt": bound}, then=Value(index)) for index, bound in enumerate(upper_bounds)]
    return Case(*whens, default=Value(beyond), output_field=IntegerField())


def _count_by(rows: QuerySet, key) -> dict:
    """Rows counted per value of ``key``, in one GROUP BY."""
    grouped = rows.order_by().annotate(key=key).values("key").annotate(n=Count("pk")).values_list("key", "n")
    return {key: n for key, n in grouped if key is not None}


def _version_stats() -> list[VersionStats]:
    counts = {
        row["model_version"]: row
        for row in Prediction.objects.order_by()
        .values("model_version")
        .annotate(
            predictions=Count("pk"),
            flagged=Count("pk", filter=Q(image__flag__isnull=False)),
            unsure=Count("pk", filter=Q(verdict=Prediction.Verdict.UNSURE)),
            not_a_digit=Count("pk", filter=Q(verdict=Prediction.Verdict.NOT_A_DIGIT)),
        )
    }
    none = {"predictions": 0, "flagged": 0, "unsure": 0, "not_a_digit": 0}
    return [
        VersionStats(
            label=f"v{version.number}",
            architecture=version.architecture,
            is_active=version.is_active,
            test_accuracy=version.test_accuracy,
            predictions=counts.get(version.pk, none)["predictions"],
            flagged=counts.get(version.pk, none)["flagged"],
            unsure=counts.get(version.pk, none)["unsure"],
            not_a_digit=counts.get(version.pk, none)["not_a_digit"],
        )
        for version in ModelVersion.objects.order_by("number")
    ]


def _review_queue_per_day(ends: list[datetime]) -> list[int]:
    """The queue's size at the end of each day: predictions made by then, less those reviewed
    or flagged by then. Two grouped counts, the first day's bucket holding all that came
    before it, then a running sum over the days."""
    made = _count_by(Prediction.objects.filter(created_at__lt=ends[-1]), _bucket("created_at", ends))
    # The earlier of the review and the flag; Coalesce first, as SQLite's MIN() of a NULL is NULL.
    reviewed, flagged = "image__reviewed_at", "image__flag__flagged_at"
    settled = _count_by(
        Prediction.objects.annotate(settled_at=Least(Coalesce(reviewed, flagged), Coalesce(flagged, reviewed))).filter(
            settled_at__lt=ends[-1]
        ),
        _bucket("settled_at", ends),
    )
    sizes, waiting = [], 0
    for index in range(len(ends)):
        waiting += made.get(index, 0) - settled.get(index, 0)
        sizes.append(waiting)
    return sizes


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
