"""Verdicts where people look: card, detail, history filter, CSV, API, admin; the review queue
and the statistics of uncertain predictions."""

import csv
import io

import pytest
from django.urls import reverse

from classifier.models import DigitImage, Prediction
from classifier.selectors import review_queue, site_stats
from classifier.tests.factories import DigitImageFactory, FlagFactory, ReviewerFactory, UserFactory
from classifier.tests.test_views import done_image

pytestmark = pytest.mark.django_db

REASON = "it looks like letters, a word or a symbol."


def judged(owner, data, *, digit: int, verdict: str, confidence: float, runner_up: int = 1, reason: str = ""):
    image = done_image(owner, data, digit=digit)
    probabilities = [0.0] * 10
    probabilities[digit], probabilities[runner_up] = confidence, 1 - confidence
    Prediction.objects.filter(image=image).update(
        verdict=verdict, verdict_reason=reason, confidence=confidence, probabilities=probabilities
    )
    return DigitImage.objects.get(pk=image.pk)


def text(response) -> str:
    return " ".join(response.content.decode().split())


def test_each_verdict_reads_as_it_should_on_the_card_and_the_detail_page(signed_in, user, png):
    sure = judged(user, png, digit=7, verdict="digit", confidence=0.99)
    unsure = judged(user, png, digit=4, verdict="unsure", confidence=0.62, runner_up=9)
    rejected = judged(user, png, digit=4, verdict="not_a_digit", confidence=0.97, reason=REASON)

    card = text(signed_in.get(reverse("classifier:image_card", args=[sure.pk])))
    assert 'data-verdict="digit"' in card and "99.0% sure" in card and "not sure" not in card
    card = text(signed_in.get(reverse("classifier:image_card", args=[unsure.pk])))
    assert 'data-verdict="unsure"' in card and "probably" in card and "not sure" in card and "or 9" in card
    card = text(signed_in.get(reverse("classifier:image_card", args=[rejected.pk])))
    assert "This does not look like a digit" in card and "It looks like letters, a word or a symbol." in card
    assert "best guess" in card

    detail = text(signed_in.get(unsure.get_absolute_url()))
    assert 'data-verdict="unsure"' in detail and "Probably" in detail and "next most likely" in detail
    assert '<strong id="runner-up">9</strong>' in detail
    detail = text(signed_in.get(rejected.get_absolute_url()))
    assert "This does not look like a digit" in detail and "the best guess is" in detail
    detail = text(signed_in.get(sure.get_absolute_url()))
    assert 'data-verdict="digit"' in detail and "99.0% confidence" in detail


def test_history_csv_and_api_filter_by_verdict_and_say_it(signed_in, user, png):
    sure = judged(user, png, digit=7, verdict="digit", confidence=0.99)
    unsure = judged(user, png, digit=4, verdict="unsure", confidence=0.62)
    rejected = judged(user, png, digit=4, verdict="not_a_digit", confidence=0.97, reason=REASON)

    def listed(**params):
        return [i.pk for i in signed_in.get(reverse("classifier:history"), params).context["page"].object_list]

    assert listed(verdict="unsure") == [unsure.pk]
    assert listed(verdict="not_a_digit") == [rejected.pk]
    assert listed(verdict="digit") == [sure.pk]
    page = text(signed_in.get(reverse("classifier:history")))
    assert "not a digit" in page and "not sure" in page
    ignored = signed_in.get(reverse("classifier:history"), {"verdict": "maybe"})
    assert len(ignored.context["page"].object_list) == 3 and ignored.context["ignored"]

    response = signed_in.get(reverse("classifier:history_export"), {"verdict": "not_a_digit"})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [(row["verdict"], row["verdict_reason"]) for row in rows] == [("not_a_digit", REASON)]

    api = signed_in.get(reverse("api:image-list"), {"verdict": "unsure"}).json()
    assert [item["id"] for item in api["results"]] == [unsure.pk]
    assert api["results"][0]["prediction"]["verdict"] == "unsure"
    assert signed_in.get(reverse("api:image-list"), {"verdict": "maybe"}).status_code == 400


def test_the_admin_lists_and_filters_by_verdict(client, user, png):
    staff = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(staff)
    judged(user, png, digit=7, verdict="digit", confidence=0.99)
    rejected = judged(user, png, digit=4, verdict="not_a_digit", confidence=0.97, reason=REASON)
    url = reverse("admin:classifier_digitimage_changelist")
    response = client.get(url, {"prediction__verdict__exact": "not_a_digit"})
    assert [image.pk for image in response.context["cl"].result_list] == [rejected.pk]
    assert "not a digit" in text(response)
    predictions = client.get(reverse("admin:classifier_prediction_changelist"), {"verdict__exact": "not_a_digit"})
    assert [p.image_id for p in predictions.context["cl"].result_list] == [rejected.pk]


def test_the_review_queue_puts_the_least_certain_first_and_shrinks_as_staff_review(client, user, png):
    sure = judged(user, png, digit=7, verdict="digit", confidence=0.99)
    less_sure = judged(user, png, digit=1, verdict="digit", confidence=0.93)
    unsure_low = judged(user, png, digit=4, verdict="unsure", confidence=0.41)
    unsure_high = judged(user, png, digit=4, verdict="unsure", confidence=0.70)
    rejected = judged(user, png, digit=4, verdict="not_a_digit", confidence=0.97, reason=REASON)
    flagged = judged(user, png, digit=3, verdict="unsure", confidence=0.30)
    FlagFactory(image=flagged, correct_digit=8)
    DigitImageFactory(owner=user, data=png)  # pending: nothing to review yet
    order = [unsure_low.pk, unsure_high.pk, rejected.pk, less_sure.pk, sure.pk]
    assert [image.pk for image in review_queue()] == order

    staff = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(staff)
    url = reverse("admin:classifier_digitimage_changelist")
    response = client.get(url, {"review": "todo"})
    assert [image.pk for image in response.context["cl"].result_list] == order
    assert site_stats().totals["to_review"] == 5

    response = client.post(
        url + "?review=todo",
        {"action": "mark_reviewed", "_selected_action": [unsure_low.pk, sure.pk]},
        follow=True,
    )
    assert "Marked 2 images reviewed." in text(response)
    reviewed = DigitImage.objects.get(pk=unsure_low.pk)
    assert reviewed.reviewed_by == staff and reviewed.reviewed_at is not None
    assert [image.pk for image in review_queue()] == [unsure_high.pk, rejected.pk, less_sure.pk]
    # Flagging from the queue works as anywhere and takes the image out of it.
    client.post(
        url + "?review=todo",
        {
            "action": "flag_selected",
            "_selected_action": [unsure_high.pk],
            "apply": "1",
            "correct_number": "9",
            "confirm": "on",
        },
    )
    assert [image.pk for image in review_queue()] == [rejected.pk, less_sure.pk]
    stats = site_stats()
    assert stats.totals["to_review"] == 2 and stats.review_queue_per_day[-1] == 2


def test_the_statistics_page_counts_uncertain_predictions_per_version(client, user, png):
    judged(user, png, digit=7, verdict="digit", confidence=0.99)
    judged(user, png, digit=4, verdict="unsure", confidence=0.62)
    judged(user, png, digit=4, verdict="unsure", confidence=0.52)
    judged(user, png, digit=4, verdict="not_a_digit", confidence=0.97, reason=REASON)
    version = site_stats().versions[0]
    assert (version.predictions, version.unsure, version.not_a_digit) == (4, 2, 1)
    client.force_login(ReviewerFactory())
    page = text(client.get(reverse("classifier:stats")))
    assert "Not sure or not a digit, per model version" in page and "2 not sure and 1 not a digit of 4" in page
    assert "Review queue at the end of each day" in page


def test_staff_can_say_an_image_is_not_a_digit_from_the_list_and_the_change_page(client, user, png):
    from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
    from django.db import IntegrityError, transaction

    from classifier.models import Flag

    staff = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(staff)
    word = judged(user, png, digit=4, verdict="not_a_digit", confidence=0.97, reason=REASON)
    doodle = judged(user, png, digit=0, verdict="unsure", confidence=0.5)
    url = reverse("admin:classifier_digitimage_changelist")
    page = client.post(url, {"action": "flag_selected", ACTION_CHECKBOX_NAME: [word.pk]})
    assert b"not a digit" in page.content
    done = client.post(
        url,
        {
            "action": "flag_selected",
            ACTION_CHECKBOX_NAME: [word.pk],
            "apply": "1",
            "correct_number": "not a digit",
            "confirm": "on",
        },
        follow=True,
    )
    assert "Flagged 1 image as not a digit." in text(done)
    flag = Flag.objects.get(image=word)
    assert flag.not_a_digit and flag.correct_digit is None and flag.says == "is not a digit"

    change = reverse("admin:classifier_digitimage_change", args=[doodle.pk])
    form = {
        "flag-TOTAL_FORMS": "1",
        "flag-INITIAL_FORMS": "0",
        "flag-MIN_NUM_FORMS": "0",
        "flag-MAX_NUM_FORMS": "1",
        "flag-0-image": str(doodle.pk),
        "flag-0-note": "",
    }
    assert client.post(change, form).status_code == 302  # an empty correction form is no flag
    assert not Flag.objects.filter(image=doodle).exists()
    refused = client.post(change, form | {"flag-0-note": "hmm"})  # neither a digit nor "not a digit"
    assert refused.status_code == 200 and not Flag.objects.filter(image=doodle).exists()
    assert "Give the correct digit or number, or say that it is not a digit" in text(refused)
    client.post(change, form | {"flag-0-not_a_digit": "on"})
    assert Flag.objects.get(image=doodle).not_a_digit
    # The database keeps the rule too: a digit and "not a digit" at once is refused.
    with pytest.raises(IntegrityError), transaction.atomic():
        Flag.objects.filter(image=doodle).update(correct_digit=3)
    listed = text(client.get(url, {"q": word.original_name}))
    assert "is not a digit" in listed
    flags = text(client.get(reverse("admin:classifier_flag_changelist"), {"not_a_digit__exact": "1"}))
    assert word.original_name in flags and doodle.original_name in flags


@pytest.mark.parametrize(
    ("probability", "shown"),
    [
        (1.0, "100%"),
        (0.99996, "99.9%"),
        (0.9987, "99.9%"),
        (0.991, "99.1%"),
        (0.99, "99.0%"),
        (0.873, "87%"),
        (0.0121, "1%"),
        (0.004, "<1%"),
        (0.0, "0%"),
    ],
)
def test_a_probability_is_never_shown_as_certain_or_impossible_when_it_is_not(probability, shown):
    from classifier.templatetags.digits import percent

    assert percent(probability) == shown


def test_card_detail_bars_and_history_show_the_same_figure_and_never_100_for_less(signed_in, user, png):
    image = judged(user, png, digit=7, verdict="digit", confidence=0.9987)
    card = text(signed_in.get(reverse("classifier:image_card", args=[image.pk])))
    detail = text(signed_in.get(image.get_absolute_url()))
    history = text(signed_in.get(reverse("classifier:history")))
    assert "99.9% sure" in card and "99.9% confidence" in detail and "99.9%" in history
    assert '<span class="bar-value">99.9%</span>' in detail
    assert not any("100%" in page for page in (card, detail, history))


def test_a_number_not_sure_says_why_beside_its_figures(signed_in, user, png):
    """Every digit at 98% and still not sure: the page gives the reason the reader stored, not
    "not sure of every digit" beside a 98% that says the opposite; with the reason, the figure
    that speaks for it: the chance the whole number is right, or where a digit is itself in
    doubt, the least sure digit, and never a 98% digit beside a reason about something else."""
    from classifier.tests.test_views import number_image
    from ml.serving.numbers import UNSURE_REASONS

    image = number_image(user, png, number="47", confidences=(0.98, 0.99))
    reason = UNSURE_REASONS["line"].format(line="41")
    Prediction.objects.filter(image=image).update(verdict=Prediction.Verdict.UNSURE, verdict_reason=reason)
    detail = text(signed_in.get(image.get_absolute_url()))
    assert "not sure</span> read as one line instead of digit by digit, it looks like 41." in detail
    assert "of every digit" not in detail and "least sure digit" not in detail
    Prediction.objects.filter(image=image).update(number_confidence=0.42)
    detail = text(signed_in.get(image.get_absolute_url()))
    assert "it looks like 41. The chance that the whole number is right: 42%." in detail
    unclear = UNSURE_REASONS["digit"]
    prediction = Prediction.objects.get(image=image)
    digits = [prediction.digits[0] | {"verdict": "unsure"}, prediction.digits[1]]
    Prediction.objects.filter(image=image).update(number_confidence=None, verdict_reason=unclear, digits=digits)
    assert f"{unclear} The least sure digit is 98%." in text(signed_in.get(image.get_absolute_url()))
    # Stored before readers gave reasons: the old words, which were then always true.
    Prediction.objects.filter(image=image).update(verdict_reason="")
    assert "not sure</span> of every digit." in text(signed_in.get(image.get_absolute_url()))
