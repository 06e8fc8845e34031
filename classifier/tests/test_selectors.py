"""site_stats: what the statistics page counts, counted by the database."""

import zoneinfo
from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from classifier.models import DigitImage, Flag, ModelVersion, Prediction
from classifier.selectors import CONFIDENCE_BINS, site_stats
from classifier.tests.factories import DigitImageFactory, ModelVersionFactory, UserFactory

pytestmark = pytest.mark.django_db


def predicted(
    *,
    digit: int = 7,
    confidence: float = 0.9,
    verdict: str = Prediction.Verdict.DIGIT,
    version: ModelVersion | None = None,
    owner=None,
    made: datetime | None = None,
) -> DigitImage:
    image = DigitImageFactory(owner=owner or UserFactory(), status=DigitImage.Status.DONE)
    prediction = Prediction.objects.create(
        image=image,
        digit=digit,
        confidence=confidence,
        verdict=verdict,
        probabilities=[0.1] * 10,
        model_version=version or ModelVersion.objects.get(number=1),
        model_input=bytes(784),
        inference_ms=1.0,
    )
    if made is not None:
        DigitImage.objects.filter(pk=image.pk).update(uploaded_at=made)
        Prediction.objects.filter(pk=prediction.pk).update(created_at=made)
    return image


def flag(image: DigitImage, *, correct_digit: int, at: datetime | None = None) -> Flag:
    made = Flag.objects.create(image=image, correct_digit=correct_digit)
    if at is not None:
        Flag.objects.filter(pk=made.pk).update(flagged_at=at)
    return made


def test_confidences_are_binned_in_twenty_steps_with_one_hundred_percent_in_the_last():
    for confidence in (0.0, 0.049, 0.05, 0.5, 0.74999, 0.75, 0.999, 1.0):
        predicted(confidence=confidence)
    bins = site_stats().confidence_bins
    assert len(bins) == CONFIDENCE_BINS == 20
    assert (bins[0], bins[1], bins[10], bins[14], bins[15], bins[19]) == (2, 1, 1, 1, 1, 2)
    assert sum(bins) == 8


def test_uploads_are_counted_per_day_of_the_sites_time_zone_over_a_fixed_window():
    zone = zoneinfo.ZoneInfo("Pacific/Auckland")  # UTC+13 in November: UTC dates would be a day off
    with timezone.override(zone):
        today = timezone.localdate()
        midnight = timezone.make_aware(datetime.combine(today, datetime.min.time()), zone)
        predicted(made=midnight + timedelta(minutes=30))  # today, though yesterday in UTC
        predicted(made=midnight - timedelta(minutes=30))  # yesterday
        predicted(made=midnight - timedelta(days=2, minutes=30))
        predicted(made=midnight - timedelta(days=40))  # before the window
        stats = site_stats(days=30)
    assert len(stats.days) == len(stats.uploads_per_day) == 30
    assert stats.days[-1] == today and stats.days[0] == today - timedelta(days=29)
    assert stats.uploads_per_day[-1] == 1 and stats.uploads_per_day[-2] == 1 and stats.uploads_per_day[-4] == 1
    assert sum(stats.uploads_per_day) == 3
    assert stats.totals["images"] == 4


def test_the_review_queue_per_day_counts_what_was_made_less_what_was_reviewed_or_flagged_by_then():
    now = timezone.now()
    day = timedelta(days=1)
    old = predicted(made=now - 40 * day)  # before the window: waiting from its first day on
    reviewed = predicted(made=now - 5 * day)
    flagged = predicted(made=now - 5 * day)
    both = predicted(made=now - 5 * day)
    predicted(made=now - 2 * day)
    DigitImage.objects.filter(pk=reviewed.pk).update(reviewed_at=now - 3 * day)
    flag(flagged, correct_digit=1, at=now - 2 * day)
    # Reviewed first, flagged later: settled by the review.
    DigitImage.objects.filter(pk=both.pk).update(reviewed_at=now - 4 * day)
    flag(both, correct_digit=2, at=now - 1 * day)
    DigitImage.objects.filter(pk=old.pk).update(reviewed_at=now)

    queue = site_stats(days=30).review_queue_per_day
    assert len(queue) == 30
    assert queue[0] == 1 and queue[-7] == 1  # the old one alone
    assert queue[-6] == 4  # three more made
    assert queue[-5] == 3  # "both" reviewed
    assert queue[-4] == 2  # "reviewed" reviewed
    assert queue[-3] == 2  # one flagged, one more made
    assert queue[-1] == 1  # the old one reviewed today
    assert site_stats().totals["to_review"] == queue[-1]


def test_versions_count_their_own_predictions_flags_and_verdicts():
    first = ModelVersion.objects.get(number=1)
    second = ModelVersion.objects.get(pk=ModelVersionFactory(number=2).pk)
    ModelVersionFactory(number=3)  # no predictions yet
    flag(predicted(version=first, digit=4), correct_digit=9)
    predicted(version=first, verdict=Prediction.Verdict.UNSURE, confidence=0.5)
    for _ in range(3):
        predicted(version=second, verdict=Prediction.Verdict.NOT_A_DIGIT)
    flag(predicted(version=second, digit=4), correct_digit=9)
    Flag.objects.create(image=predicted(version=second), not_a_digit=True)

    versions = site_stats().versions
    assert [v.label for v in versions] == ["v1", "v2", "v3"]
    counts = [(v.predictions, v.flagged, v.unsure, v.not_a_digit) for v in versions]
    assert counts == [(2, 1, 1, 0), (5, 2, 0, 3), (0, 0, 0, 0)]
    stats = site_stats()
    assert stats.corrections[4][9] == 2 and sum(map(sum, stats.corrections)) == 2  # "not a digit" is no digit pair
    assert stats.predictions_per_digit[4] == 2 and sum(stats.predictions_per_digit) == 7
    assert stats.totals["flags"] == 3


def number_predicted(number: str) -> DigitImage:
    """An image read as ``number``, one box per digit, the weakest digit the first."""
    image = predicted(digit=int(number[0]))
    readings = [{"digit": int(d), "confidence": 0.9, "box": [20 * k, 0, 18, 28]} for k, d in enumerate(number)]
    Prediction.objects.filter(image=image).update(number=number, digits=readings, verdict=Prediction.Verdict.NUMBER)
    return image


def test_corrected_numbers_and_digits_are_counted_and_those_not_trained_on():
    flag(predicted(digit=4), correct_digit=9)  # one digit: trains
    Flag.objects.create(image=number_predicted("583"), correct_number="588")  # trains: 3 digits
    Flag.objects.create(image=number_predicted("583"), correct_number="5831")  # a digit too many
    Flag.objects.create(image=number_predicted("72"), correct_number="7")  # one digit, two boxes
    Flag.objects.create(image=number_predicted("72"), not_a_digit=True)  # not a digit, two boxes
    Flag.objects.create(image=predicted(), not_a_digit=True)  # trains the reject option
    Flag.objects.create(image=DigitImageFactory(status=DigitImage.Status.FAILED), correct_number="3")  # read again

    stats = site_stats()
    totals = stats.totals
    assert totals["flags"] == 7
    assert totals["corrected_numbers"] == 2  # 588 and 5831
    assert totals["corrected_digits"] == 1 + 3 + 1  # the 9, 588 and the failed image's 3
    assert totals["not_trained"] == 3
    # The digit pairs are of one-digit corrections only (the 7 on "72" was predicted 7 there).
    assert stats.corrections[4][9] == 1 and stats.corrections[7][7] == 1 and sum(map(sum, stats.corrections)) == 2


def test_the_number_of_queries_does_not_grow_with_the_data():
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            site_stats()
        return len(captured)

    empty = queries()
    owner = UserFactory()
    version = ModelVersionFactory(number=2)
    for index in range(12):
        image = predicted(owner=owner, version=version if index % 2 else None, digit=index % 10, confidence=index / 12)
        if index % 3 == 0:
            flag(image, correct_digit=(index + 1) % 10)
    Flag.objects.create(image=number_predicted("583"), correct_number="5831")
    assert queries() == empty <= 20


def test_history_finds_readings_that_contain_the_typed_digits():
    from classifier.selectors import ImageFilters, image_list_for

    owner = UserFactory()
    readings = {}
    for number in ("583124", "7", "1258", "", "90"):
        image = predicted(owner=owner)
        Prediction.objects.filter(image=image).update(number=number)
        readings[image.pk] = number
    others = predicted()  # another person's 58 is not theirs to find
    Prediction.objects.filter(image=others).update(number="58")

    def found(number: str) -> set[str]:
        return {readings[image.pk] for image in image_list_for(owner, ImageFilters(number=number))}

    assert found("58") == {"583124", "1258"}
    assert found("7") == {"7"}
    assert found("583124") == {"583124"}
    assert found("") == set(readings.values())
    assert found("0000") == set()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), 0.0, 1.5])
def test_a_confidence_filter_that_is_not_a_fraction_is_refused(value):
    from classifier.selectors import ImageFilters

    with pytest.raises(ValueError, match="max_confidence"):
        ImageFilters(max_confidence=value)
    assert ImageFilters(max_confidence=0.5).max_confidence == 0.5
