import html
import re

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from classifier.models import Flag, ModelVersion
from classifier.services import model_version_ensure_initial, prediction_run
from classifier.tests.factories import DigitImageFactory, FlagFactory, ModelVersionFactory, UserFactory
from classifier.tests.test_services import _number_page
from ml.tests.conftest import encode

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    staff = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(staff)
    client.staff = staff
    return client


@pytest.fixture
def classified(mnist):
    images = [DigitImageFactory(data=encode(255 - mnist.test.images[i])) for i in range(3)]
    for image in images:
        prediction_run(image_id=image.pk)
    return images


def opened_feedback_list(client) -> dict[str, str]:
    """What the feedback list showed of each row: the hidden fields its action form posts (as a
    browser would: those inside the form)."""
    page = client.get(reverse("admin:classifier_feedback_changelist")).content.decode()
    form = page[page.index('<form id="changelist-form"') :]
    found = re.findall(r'<input type="hidden" name="(seen_\d+)" value="([^"]*)">', form[: form.index("</form>")])
    return {name: html.unescape(value) for name, value in found}


def confirm_feedback(client, feedback, shown: dict[str, str]):
    """Tick ``feedback`` on the list ``shown`` and confirm them as flags."""
    form = {"action": "confirm_as_flags", ACTION_CHECKBOX_NAME: [item.pk for item in feedback]} | shown
    return client.post(reverse("admin:classifier_feedback_changelist"), form, follow=True)


def test_image_list_shows_thumbnails_digits_and_filters(staff_client, classified):
    response = staff_client.get(reverse("admin:classifier_digitimage_changelist"))
    assert response.status_code == 200
    html = response.content.decode()
    assert reverse("classifier:image_file", args=[classified[0].pk]) in html
    for title in ("predicted digit", "confidence", "flagged", "status"):
        assert f"By {title}" in html
    digit = classified[0].prediction.digit
    filtered = staff_client.get(reverse("admin:classifier_digitimage_changelist"), {"digit": digit})
    assert all(obj.prediction.digit == digit for obj in filtered.context["cl"].result_list)
    searched = staff_client.get(reverse("admin:classifier_digitimage_changelist"), {"q": classified[1].original_name})
    assert list(searched.context["cl"].result_list) == [classified[1]]


def test_image_list_and_page_show_a_numbers_reading(staff_client, mnist):
    number = DigitImageFactory(data=encode(_number_page(mnist, [0, 1, 2])))
    prediction = prediction_run(image_id=number.pk)
    assert prediction.is_number and len(prediction.number) == 3
    listed = staff_client.get(reverse("admin:classifier_digitimage_changelist")).content.decode()
    assert f"<strong>{prediction.number}</strong> · {prediction.confidence:.1%}" in listed
    page = staff_client.get(reverse("admin:classifier_digitimage_change", args=[number.pk])).content.decode()
    assert f"{prediction.number} at {prediction.confidence:.1%} for its least sure digit" in page


def test_flag_action_asks_for_the_digit_then_flags(staff_client, classified):
    url = reverse("admin:classifier_digitimage_changelist")
    chosen = [classified[0].pk, classified[2].pk]
    page = staff_client.post(url, {"action": "flag_selected", ACTION_CHECKBOX_NAME: chosen})
    assert page.status_code == 200
    assert b"really read" in page.content  # the intermediate page
    html = page.content.decode()
    for pk in chosen:  # no answer written for anyone
        assert f'name="number_{pk}"' in html and f'name="number_{pk}" value=' not in html
    assert not Flag.objects.exists()
    form = {"action": "flag_selected", ACTION_CHECKBOX_NAME: chosen, "apply": "1", "note": "staff review"}
    # No answer at all: asked again, nothing flagged.
    again = staff_client.post(url, form)
    assert b"Write what each image reads" in again.content and not Flag.objects.exists()
    # Overruling predictions the model was at least 99% sure of needs a tick.
    sure = [image for image in classified if image.pk in chosen and image.prediction.confidence >= 0.99]
    if sure:
        unconfirmed = staff_client.post(url, form | {"correct_number": "4"})
        assert "at least 99% sure of" in unconfirmed.content.decode() and not Flag.objects.exists()
    done = staff_client.post(url, form | {"correct_number": "4", "confirm": "on"}, follow=True)
    assert b"Flagged 2 images as 4" in done.content
    flags = Flag.objects.order_by("image_id")
    assert [(f.image_id, f.correct_digit, f.flagged_by, f.note) for f in flags] == [
        (chosen[0], 4, staff_client.staff, "staff review"),
        (chosen[1], 4, staff_client.staff, "staff review"),
    ]


def test_flag_a_single_image_from_its_change_page(staff_client, classified):
    image = classified[1]
    url = reverse("admin:classifier_digitimage_change", args=[image.pk])
    page = staff_client.get(url)
    assert page.status_code == 200 and b"Correction (flag)" in page.content
    response = staff_client.post(
        url,
        {
            "flag-TOTAL_FORMS": "1",
            "flag-INITIAL_FORMS": "0",
            "flag-MIN_NUM_FORMS": "0",
            "flag-MAX_NUM_FORMS": "1",
            "flag-0-correct_number": "9",
            "flag-0-note": "a 9, surely",
            "flag-0-image": str(image.pk),
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    flag = Flag.objects.get(image=image)
    assert (flag.correct_digit, flag.flagged_by, flag.note) == (9, staff_client.staff, "a 9, surely")


def test_model_versions_in_the_admin(staff_client, classified):
    active = model_version_ensure_initial()
    child = ModelVersionFactory(parent=active, flags_used=3, metrics={"test_accuracy": 0.9951})
    FlagFactory(image=classified[0], trained_in=child)
    response = staff_client.get(reverse("admin:classifier_modelversion_changelist"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "99.51%" in html and "Flags learned" in html
    staff_client.post(
        reverse("admin:classifier_modelversion_changelist"), {"action": "activate", ACTION_CHECKBOX_NAME: [child.pk]}
    )
    assert ModelVersion.objects.get(is_active=True) == child


def test_the_admin_is_for_staff_only(client):
    client.force_login(UserFactory())
    response = client.get(reverse("admin:classifier_digitimage_changelist"))
    assert response.status_code == 302 and "login" in response.url


def test_staff_confirm_owner_feedback_into_flags(staff_client, classified):
    from classifier.models import Feedback
    from classifier.services import feedback_give

    first, second, _ = classified
    feedback_give(image=first, user=first.owner, suggested_number=str((first.prediction.digit + 1) % 10))
    feedback_give(image=second, user=second.owner, suggested_number=str((second.prediction.digit + 1) % 10))
    url = reverse("admin:classifier_feedback_changelist")
    waiting = staff_client.get(url, {"confirmed": "no"})
    assert len(waiting.context["cl"].result_list) == 2
    html = waiting.content.decode()
    for title in ("confirmed", "suggested digit", "predicted digit"):
        assert f"By {title}" in html

    chosen = Feedback.objects.get(image=first)
    response = confirm_feedback(staff_client, [chosen], opened_feedback_list(staff_client))
    assert "1 suggestion confirmed as flags." in response.content.decode()
    flag = Flag.objects.get(image=first)
    assert flag.correct_digit == chosen.suggested_digit and flag.flagged_by == staff_client.staff
    assert not Flag.objects.filter(image=second).exists()
    assert len(staff_client.get(url, {"confirmed": "no"}).context["cl"].result_list) == 1


def test_a_suggestion_changed_after_the_list_was_opened_is_not_confirmed(staff_client, classified):
    """Issue 42, finding 5: a person suggests a digit, staff open the list (it shows that digit),
    the person switches to "not a digit" through the API, staff confirm: that was confirmed
    as a not-a-digit flag in staff's name. Staff confirm what they saw; the rest still goes."""
    from rest_framework.test import APIClient

    from classifier.models import Feedback
    from classifier.services import feedback_give

    changing, steady, unseen = classified
    for image in classified:
        feedback_give(image=image, user=image.owner, suggested_number=str((image.prediction.digit + 1) % 10))
    said = Feedback.objects.get(image=changing).says.removeprefix("is ")
    shown = opened_feedback_list(staff_client)
    owner = APIClient()
    owner.force_authenticate(changing.owner)
    switched = owner.post(reverse("api:image-feedback", args=[changing.pk]), {"not_a_digit": True}, format="json")
    assert switched.status_code == 200 and switched.json()["not_a_digit"]

    response = confirm_feedback(staff_client, Feedback.objects.filter(image__in=[changing, steady]), shown)
    text = html.unescape(response.content.decode())
    assert not Flag.objects.filter(image=changing).exists()
    assert not Feedback.objects.get(image=changing).is_confirmed
    assert (
        f"The suggestion on {changing.original_name} changed after you opened the list: it now says "
        f'"not a digit", where the list said "{said}". It was not confirmed: look again before confirming.'
    ) in text
    assert "1 suggestion confirmed as flags." in text
    assert Flag.objects.get(image=steady).flagged_by == staff_client.staff

    # Selected without being shown ("select all" across pages): not confirmed either, and said.
    response = confirm_feedback(staff_client, Feedback.objects.filter(image=unseen), {})
    assert "1 selected suggestion was not on the page, so it was not confirmed" in response.content.decode()
    assert not Flag.objects.filter(image=unseen).exists()

    # The list opened again shows the change; confirming it now confirms what staff saw.
    assert opened_feedback_list(staff_client)[f"seen_{Feedback.objects.get(image=changing).pk}"] == "is not a digit"
    confirm_feedback(staff_client, Feedback.objects.filter(image=changing), opened_feedback_list(staff_client))
    assert Flag.objects.get(image=changing).not_a_digit


def test_the_image_list_shows_the_owners_waiting_feedback(staff_client, classified):
    from classifier.services import feedback_confirm, feedback_give

    first, second, third = classified
    waiting = feedback_give(image=first, user=first.owner, suggested_number=str((first.prediction.digit + 1) % 10))
    confirmed = feedback_give(image=second, user=second.owner, suggested_number=str((second.prediction.digit + 1) % 10))
    feedback_confirm(feedback=[confirmed], confirmed_by=staff_client.staff)
    url = reverse("admin:classifier_digitimage_changelist")
    html = staff_client.get(url).content.decode()
    assert f"{waiting.suggested_number} <small>(waiting)</small>" in html
    assert f"{confirmed.suggested_number} <small>(confirmed)</small>" in html
    for value, expected in (("waiting", [first]), ("confirmed", [second]), ("none", [third])):
        listed = staff_client.get(url, {"owner_feedback": value}).context["cl"].result_list
        assert list(listed) == expected, value


def test_flag_action_takes_one_answer_per_image(staff_client, classified):
    url = reverse("admin:classifier_digitimage_changelist")
    first, second = classified[0], classified[1]
    form = {
        "action": "flag_selected",
        ACTION_CHECKBOX_NAME: [first.pk, second.pk],
        "apply": "1",
        "correct_number": "",
        f"number_{first.pk}": "5",
        f"number_{second.pk}": "not a digit",
        "confirm": "on",
    }
    done = staff_client.post(url, form, follow=True)
    assert "Flagged 2 images:" in done.content.decode()
    flags = {flag.image_id: flag for flag in Flag.objects.all()}
    assert flags[first.pk].correct_digit == 5 and flags[second.pk].not_a_digit


@pytest.fixture
def number_image(mnist):
    from classifier.tests.test_services import _number_page

    image = DigitImageFactory(data=encode(_number_page(mnist, [0, 1, 2, 3])), original_name="7210.png")
    assert prediction_run(image_id=image.pk).number == "7210"
    return image


def test_flag_action_takes_a_number_and_says_which_corrections_train(staff_client, classified, number_image):
    url = reverse("admin:classifier_digitimage_changelist")
    chosen = [number_image.pk, classified[0].pk]
    page = staff_client.post(url, {"action": "flag_selected", ACTION_CHECKBOX_NAME: chosen}).content.decode()
    assert "<td>7210 (" in page and "<td>4</td>" in page  # the reading and its digits found
    form = {"action": "flag_selected", ACTION_CHECKBOX_NAME: chosen, "apply": "1", "confirm": "on"}
    refused = staff_client.post(url, form | {f"number_{number_image.pk}": "72 10", "correct_number": "7"})
    assert "Write the digits only" in refused.content.decode() and not Flag.objects.exists()
    done = staff_client.post(url, form | {f"number_{number_image.pk}": "72190", "correct_number": "7"}, follow=True)
    html = done.content.decode()
    assert "Flagged 2 images: 7210.png as 72190" in html
    assert "7210.png: 5 digits given, 4 found: kept, not trained on." in html
    flags = {flag.image_id: flag for flag in Flag.objects.all()}
    assert (flags[number_image.pk].correct_number, flags[number_image.pk].correct_digit) == ("72190", None)
    assert flags[classified[0].pk].correct_digit == 7

    listed = staff_client.get(url).content.decode()
    assert "is 72190 <small>(not trained on)</small>" in listed and "<strong>7210</strong>" in listed
    flag_list = staff_client.get(reverse("admin:classifier_flag_changelist")).content.decode()
    assert "5 digits given, 4 found: kept, not trained on." in flag_list and "trained on" in flag_list


def test_flag_a_number_from_its_change_page(staff_client, number_image):
    url = reverse("admin:classifier_digitimage_change", args=[number_image.pk])
    form = {
        "flag-TOTAL_FORMS": "1",
        "flag-INITIAL_FORMS": "0",
        "flag-MIN_NUM_FORMS": "0",
        "flag-MAX_NUM_FORMS": "1",
        "flag-0-note": "",
        "flag-0-image": str(number_image.pk),
    }
    refused = staff_client.post(url, form | {"flag-0-correct_number": "7x10"})
    assert refused.status_code == 200 and "Write the digits only" in refused.content.decode()
    assert staff_client.post(url, form | {"flag-0-correct_number": "7219"}).status_code == 302
    flag = Flag.objects.get(image=number_image)
    assert (flag.correct_number, flag.correct_digit, flag.flagged_by) == ("7219", None, staff_client.staff)
    page = staff_client.get(url).content.decode()
    assert "Retraining:" in page and "trained on" in page


def test_feedback_list_shows_suggested_numbers_and_confirming_flags_them(staff_client, number_image):
    from classifier.models import Feedback
    from classifier.services import feedback_give

    feedback_give(image=number_image, user=number_image.owner, suggested_number="721")
    url = reverse("admin:classifier_feedback_changelist")
    html = staff_client.get(url).content.decode()
    assert '<td class="field-owner_says">721<input type="hidden"' in html
    assert "3 digits given, 4 found: kept, not trained on." in html
    confirm_feedback(staff_client, [Feedback.objects.get()], opened_feedback_list(staff_client))
    assert Flag.objects.get(image=number_image).says == "is 721"


def test_a_person_s_not_a_digit_is_confirmed_into_a_flag_that_trains_whatever_was_read(staff_client, number_image):
    from classifier.models import Feedback
    from classifier.services import feedback_give

    feedback_give(image=number_image, user=number_image.owner, suggested_number=None)
    url = reverse("admin:classifier_feedback_changelist")
    html = staff_client.get(url).content.decode()
    assert '<td class="field-owner_says">not a digit<input type="hidden"' in html
    assert '<td class="field-training">trained on</td>' in html  # four digits were read: it trains all the same
    confirm_feedback(staff_client, [Feedback.objects.get()], opened_feedback_list(staff_client))
    flag = Flag.objects.get(image=number_image)
    assert (flag.not_a_digit, flag.correct_number, flag.says) == (True, "", "is not a digit")


def test_staff_start_a_retrain_from_the_model_versions_page_one_at_a_time(
    staff_client, client, broker_env, django_capture_on_commit_callbacks
):
    from classifier.models import RetrainRun

    model_version_ensure_initial()
    page = reverse("admin:classifier_modelversion_changelist")
    retrain = reverse("admin:classifier_modelversion_retrain")
    body = staff_client.get(page).content.decode()
    assert "Retrain now" in body and 'id="retrain-status"' not in body  # none asked for yet

    with django_capture_on_commit_callbacks(execute=True) as queued:
        response = staff_client.post(retrain, {"epochs": "3", "force": "on"}, follow=True)
    assert len(queued) == 1  # the task, sent once the run is stored
    run = RetrainRun.objects.get()
    assert (run.epochs, run.force, run.status, run.requested_by.is_staff) == (3, True, "queued", True)
    body = response.content.decode()
    assert "Retrain queued on the training queue" in body
    assert 'data-status="queued"' in body and "Queued: waiting for a trainer" in body
    # Followed by htmx polling of the section, not by reloading the page; no second button.
    assert 'hx-trigger="every 3s"' in body and '<meta http-equiv="refresh"' not in body and "disabled" in body

    response = staff_client.post(retrain, {"epochs": "", "force": ""}, follow=True)
    assert "A retrain is already queued" in response.content.decode()
    assert RetrainRun.objects.count() == 1

    from classifier.services.retrain_progress import run_recorder

    RetrainRun.objects.update(status="running", started_at=timezone.now())
    stages = run_recorder(run.pk, every=3)
    stages.begin("gathering")
    stages.begin("fine-tuning")
    stages.line("  epoch 2/3  50%  loss 0.1000  acc 0.9700  12 s")
    body = " ".join(staff_client.get(page).content.decode().split())
    assert "Running: fine-tuning, epoch 2 of 3." in body
    assert '<li data-stage="gathering" data-state="done">' in body
    assert '<li data-stage="fine-tuning" data-state="running">' in body and "running, 50% (epoch 2 of 3)" in body
    assert '<progress max="100" value="50"' in body and "left" in body
    # The section alone, as htmx asks for it every 3 s while the retrain runs.
    status = reverse("admin:classifier_modelversion_retrain_status")
    response = staff_client.get(status)
    fragment = " ".join(response.content.decode().split())
    assert response.status_code == 200 and 'hx-trigger="every 3s"' in fragment
    assert "running, 50% (epoch 2 of 3)" in fragment and "<html" not in fragment
    for later in ("calibrating", "judging", "storing"):
        assert f'<li data-stage="{later}" data-state="waiting">' in body
    assert RetrainRun.objects.get().epoch == 2  # the fine-tuning's epoch, not the detector's
    stages.begin("calibrating")
    stages.line("  epoch 1/8  25%  loss 0.3000  acc 0.9000  3 s")
    body = " ".join(staff_client.get(page).content.decode().split())
    assert "Running: calibrating its confidence and fitting the reject option, epoch 1 of 8." in body
    assert RetrainRun.objects.get().epoch == 2
    RetrainRun.objects.update(
        status="kept",
        in_progress=False,
        finished_at=timezone.now(),
        reason="not better on the corrections",
        explanation="With 2 digit corrections, fewer than the 10 it takes to hold a fifth out",
    )
    body = " ".join(staff_client.get(page).content.decode().split())
    assert "Kept the active version" in body and "not better on the corrections" in body
    assert "in all)" in body and "With 2 digit corrections, fewer than the 10" in body
    assert '<li data-stage="calibrating" data-state="stopped">' in body
    assert '<li data-stage="judging" data-state="not reached">' in body
    assert 'hx-trigger="every 3s"' not in body
    # Once it ended the section answers 286: htmx swaps the outcome in and stops polling.
    response = staff_client.get(status)
    assert response.status_code == 286 and "Kept the active version" in response.content.decode()
    assert 'hx-trigger="every 3s"' not in response.content.decode()
    assert Client().get(status).status_code == 302  # staff only: others go to the admin's log-in

    response = staff_client.post(retrain, {"epochs": "0"}, follow=True)  # refused with the reason
    assert "Not queued: epochs" in response.content.decode() and RetrainRun.objects.count() == 1
    client.force_login(UserFactory())
    assert client.post(retrain, {"epochs": "1"}).status_code == 302 and RetrainRun.objects.count() == 1


def test_retrain_now_without_mnist_on_the_trainer_says_so_and_queues_nothing(
    staff_client, broker_env, settings, tmp_path, monkeypatch
):
    from classifier.models import RetrainRun
    from classifier.tasks import trainer_ping

    model_version_ensure_initial()
    settings.MNIST_DATA_DIR = str(tmp_path)  # holds none of the four files
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    trainer_ping()  # the trainer answers beat's ping, saying what it lacks
    response = staff_client.post(reverse("admin:classifier_modelversion_retrain"), {"epochs": "1"}, follow=True)
    body = html.unescape(" ".join(response.content.decode().split()))
    assert "Retraining needs MNIST, and it cannot be had on the trainer" in body
    assert f"MNIST_DATA_DIR {tmp_path} lacks train-images-idx3-ubyte" in body and "set MNIST_DATA_DIR to" in body
    assert not RetrainRun.objects.exists()
