"""Read-side queries.

Kept whole: every read of the site in one place (images and history, the review queue,
statistics, stranded work, workers), as STYLE's services/selectors split asks; those reads
share their filters (``ImageFilters``, ``_trains``, the review queue), which a package of
selectors would have to import across its modules.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    Func,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Greatest, Least, Length
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
    RetrainRun,
    TrainerPing,
    TrainingExample,
    WorkerHeartbeat,
)
from classifier.permissions import may_see_all_images


@dataclass(frozen=True)
class ImageFilters:
    digit: int | None = None
    number: str = ""  # digits the reading contains: "58" finds 583124
    status: str | None = None
    verdict: str | None = None  # Prediction.Verdict
    reading: str | None = None  # DigitImage.Reading: what its owner said it shows
    max_confidence: float | None = None  # "confidence below": a fraction in (0, 1]
    flagged: bool | None = None
    everyone: bool = False  # every user's images, for staff who may view them (may_see_all_images)

    def __post_init__(self):
        # A NaN or an infinity would compare false with every confidence, or true with all.
        if self.max_confidence is not None and not (
            math.isfinite(self.max_confidence) and 0 < self.max_confidence <= 1
        ):
            raise ValueError(f"max_confidence is a fraction in (0, 1], not {self.max_confidence!r}")


def image_list_for(user, filters: ImageFilters | None = None) -> QuerySet[DigitImage]:
    """The images a user may see, newest first, narrowed by the filters."""
    filters = filters or ImageFilters()
    images = DigitImage.objects.select_related("prediction", "prediction__model_version", "flag", "feedback", "owner")
    if not (filters.everyone and may_see_all_images(user)):
        images = images.filter(owner=user)
    if filters.digit is not None:
        images = images.filter(prediction__digit=filters.digit)
    if filters.number:
        images = images.filter(prediction__number__contains=filters.number)
    if filters.status:
        images = images.filter(status=filters.status)
    if filters.verdict:
        images = images.filter(prediction__verdict=filters.verdict)
    if filters.reading:
        images = images.filter(reading=filters.reading)
    if filters.max_confidence is not None:
        images = images.filter(prediction__confidence__lt=filters.max_confidence)
    if filters.flagged is not None:
        images = images.filter(flag__isnull=not filters.flagged)
    return images.order_by("-uploaded_at", "-id")


def image_get_for(user, pk: int) -> DigitImage | None:
    """One image, if the user may see it (its owner, or staff who may view images)."""
    images = DigitImage.objects.select_related("prediction", "prediction__model_version", "flag", "owner")
    if not may_see_all_images(user):
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


class _JsonArrayLength(Func):
    """The length of a JSON list column, on SQLite and PostgreSQL (whose JSONField is jsonb)."""

    function = "JSON_ARRAY_LENGTH"
    output_field = IntegerField()

    def as_postgresql(self, compiler, connection, **extra_context):
        return super().as_sql(compiler, connection, function="JSONB_ARRAY_LENGTH", **extra_context)


def _trains(prediction: str, not_a_digit: str, correct_number: str) -> tuple[dict, Q]:
    """Annotations and the condition of a correction retraining learns from (as
    ``correction_training_refusal`` decides it): a digit for each box the model found, or "not
    a digit" on an image of one box. A prediction made before numbers were read lists no
    boxes, and an image with no prediction is read again from its file: one box each."""
    boxes = Greatest(Coalesce(_JsonArrayLength(f"{prediction}__digits"), Value(0)), Value(1))
    annotations = {"boxes": boxes, "given": Length(correct_number)}
    return annotations, Q(**{not_a_digit: True, "boxes": 1}) | Q(**{not_a_digit: False, "given": F("boxes")})


def images_kept_on_delete(images: QuerySet[DigitImage]) -> QuerySet[DigitImage]:
    """Those of ``images`` whose deletion keeps TrainingExamples: the owner agreed at upload,
    staff corrected it as retraining learns from, and the worker stored the inputs the model
    took (a failed image has none). Everything else about a deleted image goes."""
    annotations, trains = _trains("prediction", "flag__not_a_digit", "flag__correct_number")
    return (
        images.filter(training_consent=True, flag__isnull=False, prediction__model_input_exact__isnull=False)
        .annotate(**annotations)
        .filter(trains)
    )


def flags_for_training() -> QuerySet[Flag]:
    """Every flag with its image and prediction: a number's digits are learnt from the inputs
    stored with the prediction, and its boxes say whether the correction fits."""
    return Flag.objects.select_related("image", "image__prediction").order_by("pk")


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
    """Everything the staff statistics page shows, each figure an aggregate query (a bounded
    number of queries, whatever the number of predictions; the indexes on Prediction and
    DigitImage let most of them read an index rather than the wide prediction rows)."""
    zone = timezone.get_current_timezone()
    day_list = [timezone.localdate() - timedelta(days=days - 1 - offset) for offset in range(days)]
    ends = [timezone.make_aware(datetime.combine(day + timedelta(days=1), time.min), zone) for day in day_list]
    start = timezone.make_aware(datetime.combine(day_list[0], time.min), zone)

    uploads = _count_by(
        DigitImage.objects.filter(uploaded_at__gte=start, uploaded_at__lt=ends[-1]),
        _Bucket("uploaded_at", ends),
    )
    per_verdict, per_digit, bins = _prediction_counts()
    return SiteStats(
        days=day_list,
        uploads_per_day=[uploads.get(index, 0) for index in range(days)],
        predictions_per_digit=[per_digit.get(digit, 0) for digit in DIGITS],
        confidence_bins=[bins.get(index, 0) for index in range(CONFIDENCE_BINS)],
        versions=_version_stats(per_verdict),
        corrections=_correction_pairs(),
        totals={
            "images": DigitImage.objects.count(),
            "users": DigitImage.objects.values("owner").distinct().count(),
            "failed": DigitImage.objects.filter(status=DigitImage.Status.FAILED).count(),
            **_correction_totals(),
            "open_feedback": Feedback.objects.filter(confirmed_at__isnull=True).count(),
            "to_review": review_queue().count(),
        },
        review_queue_per_day=_review_queue_per_day(start, ends),
    )


def _prediction_counts() -> tuple[Counter, Counter, Counter]:
    """Every prediction counted by (version, verdict), by digit and by confidence bin."""
    # One pass over prediction_stats_idx, grouped by all four keys (a few hundred groups at
    # most), rather than a pass for each of the charts that need one of them.
    upper_bounds = [index / CONFIDENCE_BINS for index in range(1, CONFIDENCE_BINS)]
    groups = (
        Prediction.objects.order_by()
        .annotate(bin=_Bucket("confidence", upper_bounds))
        .values_list("model_version", "verdict", "digit", "bin")
        .annotate(n=Count("*"))
    )
    per_verdict, per_digit, bins = Counter(), Counter(), Counter()
    for version, verdict, digit, confidence_bin, n in groups:
        per_verdict[version, verdict] += n
        per_digit[digit] += n
        bins[confidence_bin] += n
    return per_verdict, per_digit, bins


def _correction_pairs() -> list[list[int]]:
    """How many one-digit corrections say each predicted digit (row) is each correct one."""
    corrections = [[0] * len(DIGITS) for _ in DIGITS]
    # Subqueries rather than joins here and below: the query starts from the few flags and looks
    # each prediction up, where SQLite, without table statistics, would join from every image.
    predicted_digit = Subquery(Prediction.objects.filter(image_id=OuterRef("image_id")).values("digit"))
    pairs = (
        Flag.objects.filter(correct_digit__isnull=False)  # one-digit corrections: a number is no digit pair
        .annotate(predicted=predicted_digit)
        .filter(predicted__isnull=False)
        .values_list("predicted", "correct_digit")
        .annotate(n=Count("*"))
        .order_by()
    )
    for predicted, correct, n in pairs:
        corrections[predicted][correct] = n
    return corrections


def _correction_totals() -> dict[str, int]:
    """The flags; the corrected numbers (two digits or more); the digits retraining learns from
    (those of the corrections it trains on); and the corrections it does not train on (their
    digit count differs from the boxes found). One query."""
    annotations, trains = _trains("image__prediction", "not_a_digit", "correct_number")
    return Flag.objects.annotate(**annotations).aggregate(
        flags=Count("pk"),
        corrected_numbers=Count("pk", filter=Q(given__gte=2)),
        corrected_digits=Coalesce(Sum("given", filter=trains), 0),
        not_trained=Count("pk", filter=~trains),
    )


class _Bucket(Func):
    """How many of the rising ``bounds`` the expression is at or above: 0 below the first,
    len(bounds) from the last on. A binary search written as nested CASEs, five comparisons a
    row for 30 days where one WHEN per day would take up to thirty; built as SQL text here,
    because Django takes longer to compile the same tree of Case and When objects (twice: for
    SELECT and GROUP BY) than the database takes to run it on a small table.

    Plain comparisons against bounds computed in Python, rather than a database date or
    rounding function: they mean the same on SQLite and PostgreSQL (whose float-to-integer cast
    rounds where SQLite's truncates), day bounds carry the site's time zone, and SQLite runs no
    Python function per row, as it does for TruncDate."""

    output_field = IntegerField()

    def __init__(self, expression, bounds: Sequence):
        super().__init__(expression)
        self.bounds = list(bounds)

    def as_sql(self, compiler, connection, **extra_context):
        source = self.source_expressions[0]
        value_sql, value_params = compiler.compile(source)
        bounds = [source.output_field.get_db_prep_value(bound, connection) for bound in self.bounds]

        def search(low: int, high: int) -> tuple[str, list]:
            if low == high:
                return str(low), []
            middle = (low + high) // 2
            below, below_params = search(low, middle)
            above, above_params = search(middle + 1, high)
            sql = f"CASE WHEN {value_sql} < %s THEN {below} ELSE {above} END"
            return sql, [*value_params, bounds[middle], *below_params, *above_params]

        return search(0, len(bounds))


def _count_by(rows: QuerySet, key) -> dict:
    """Rows counted per value of ``key``, in one GROUP BY."""
    grouped = rows.order_by().annotate(key=key).values("key").annotate(n=Count("*")).values_list("key", "n")
    return dict(grouped)


def _version_stats(per_verdict: Counter) -> list[VersionStats]:
    """Each version with its predictions, from their counts per (version, verdict)."""
    # Looked up from the flags, one index search each, not a join for every prediction.
    flagged = _count_by(Prediction.objects.filter(image_id__in=Flag.objects.values("image_id")), F("model_version"))
    verdicts = Prediction.Verdict
    return [
        VersionStats(
            label=f"v{version.number}",
            architecture=version.architecture,
            is_active=version.is_active,
            test_accuracy=version.test_accuracy,
            predictions=sum(per_verdict[version.pk, verdict] for verdict in verdicts),
            flagged=flagged.get(version.pk, 0),
            unsure=per_verdict[version.pk, verdicts.UNSURE],
            not_a_digit=per_verdict[version.pk, verdicts.NOT_A_DIGIT],
        )
        for version in ModelVersion.objects.order_by("number")
    ]


def _review_queue_per_day(start: datetime, ends: list[datetime]) -> list[int]:
    """The queue's size at the end of each day (the first starting at ``start``): predictions
    made by then, less those settled (reviewed or flagged) by then. Counts per day, then a
    running sum from what came before the first."""

    def per_day(rows: QuerySet, field: str) -> dict[int, int]:
        # What came before is a plain count of an index range: five times faster on SQLite than
        # sending the older rows, most of them, through the CASE and the grouping too.
        counts = _count_by(rows.filter(**{f"{field}__gte": start, f"{field}__lt": ends[-1]}), _Bucket(field, ends))
        return counts | {-1: rows.filter(**{f"{field}__lt": start}).count()}

    made = per_day(Prediction.objects.all(), "created_at")
    # Settled from the reviewed images (when reviewed, or when flagged if that came first) and
    # from the flags of images never reviewed: a few among many, each found through an index. A
    # join, not a subquery, for the flag: the CASE tree repeats the expression at each test.
    reviewed = per_day(
        DigitImage.objects.filter(status=DigitImage.Status.DONE, reviewed_at__isnull=False).annotate(
            settled_at=Least("reviewed_at", Coalesce("flag__flagged_at", "reviewed_at"))
        ),
        "settled_at",
    )
    unreviewed = DigitImage.objects.filter(pk=OuterRef("image_id"), status=DigitImage.Status.DONE, reviewed_at=None)
    flagged = per_day(Flag.objects.filter(Exists(unreviewed)), "flagged_at")
    waiting = made[-1] - reviewed[-1] - flagged[-1]
    sizes = []
    for index in range(len(ends)):
        waiting += made.get(index, 0) - reviewed.get(index, 0) - flagged.get(index, 0)
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


def images_stranded(
    *, older_than: timedelta, connecting: bool = False, broker_lost_at: datetime | None = None
) -> list[int]:
    """The waiting images (pending or processing) that no worker will finish on its own, oldest
    first; one query, on the status index, whatever the size of the gallery:

    - never queued: no ``queued_at`` ``CLASSIFY_QUEUE_GRACE_SECONDS`` after the upload (the web
      process's publish failed, or it died before publishing); at once when ``connecting`` (a
      worker has just connected to the broker: an upload whose publish is still on its way then
      gets a second message, which changes nothing);
    - taken by a worker run that is gone: claimed by a run with no live heartbeat (the worker was
      killed; a restarted worker is a new run, so its old claims are stranded at once);
    - with ``broker_lost_at`` (a worker's broker connection broke then and is back): pending and
      queued before it, since a broker that restarted empty lost those messages;
    - waiting longer than ``older_than`` since they were last queued, whatever the reason.
    """
    now = timezone.now()
    live_runs = _heartbeats_within(heartbeat_window()).exclude(run="").values("run")
    # Never queued: after the grace, or after older_than when that is shorter (--older-than 0).
    grace = min(timedelta(seconds=0 if connecting else settings.CLASSIFY_QUEUE_GRACE_SECONDS), older_than)
    stranded = (
        Q(queued_at__isnull=True, uploaded_at__lte=now - grace)
        | (~Q(claimed_by="") & ~Q(claimed_by__in=Subquery(live_runs)))
        | Q(queued_at__lt=now - older_than)
    )
    if broker_lost_at is not None:
        stranded |= Q(status=DigitImage.Status.PENDING, queued_at__lt=broker_lost_at)
    waiting = Q(status__in=[DigitImage.Status.PENDING, DigitImage.Status.PROCESSING])
    return list(DigitImage.objects.filter(waiting & stranded).order_by("pk").values_list("pk", flat=True))


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


def trainer_health() -> dict:
    """Whether a trainer takes work, from beat's pings (``trainer_ping_enqueue``): ``ok`` when
    one answered within three beat intervals; ``busy`` while a retrain runs (the ping waits);
    ``cannot take work`` when the last answer is older (its pool is stuck or gone, whatever its
    heartbeat says), naming the trainer that answered it; ``no answer yet`` before any."""
    last = TrainerPing.objects.order_by("-answered_at").first()
    if last is None:
        return {"status": "no answer yet", "hostname": None, "answered_seconds_ago": None}
    ago = (timezone.now() - last.answered_at).total_seconds()
    if ago <= 3 * settings.REQUEUE_STALE_INTERVAL_SECONDS:
        status = "ok"
    elif RetrainRun.objects.filter(status=RetrainRun.Status.RUNNING).exists():
        status = "busy"
    else:
        status = "cannot take work"
    return {"status": status, "hostname": last.hostname, "answered_seconds_ago": round(ago, 1)}


def trainer_mnist_missing() -> str:
    """What keeps the trainer that answered beat's last ping from having MNIST ("" where
    nothing does, or before any answer)."""
    return TrainerPing.objects.order_by("-answered_at").values_list("mnist_missing", flat=True).first() or ""


def model_version_health() -> dict:
    """The active version and whether workers can load it: ``ok``, or ``cannot be loaded``
    with the reason a worker recorded (``classifier.services.serving``); ``none active``
    before the first version is registered."""
    active = ModelVersion.objects.filter(is_active=True).first()
    if active is None:
        return {"version": None, "status": "none active"}
    if active.load_error:
        return {
            "version": active.number,
            "status": "cannot be loaded",
            "reason": active.load_error,
            "failed_at": active.load_failed_at.isoformat() if active.load_failed_at else None,
        }
    return {"version": active.number, "status": "ok"}


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
