import csv
import io

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from classifier.models import DigitImage, Feedback, Prediction
from classifier.services import model_version_ensure_initial
from classifier.tests.factories import DigitImageFactory, ReviewerFactory, UserFactory

pytestmark = pytest.mark.django_db


def done_image(owner, data, digit=7, verdict=Prediction.Verdict.DIGIT):
    image = DigitImageFactory(owner=owner, data=data, status=DigitImage.Status.DONE)
    probabilities = [0.01] * 10
    probabilities[digit] = 0.91
    Prediction.objects.create(
        image=image,
        digit=digit,
        verdict=verdict,
        confidence=0.91,
        probabilities=probabilities,
        model_version=model_version_ensure_initial(),
        model_input=bytes(784),
        inference_ms=1.5,
    )
    return image


def number_image(owner, data, number="583", confidences=None, width=120, height=48, boxes=None, **fields):
    """A finished image read as ``number``: each digit in a box of its own, left to right; the
    prediction's own fields are those of the least sure digit, as the worker stores them.
    ``confidences``: each digit's, 0.99 each unless given; ``boxes``: each digit's (x, y, width,
    height), 28x32 px side by side unless given; ``fields``: the image's own."""
    image = DigitImageFactory(
        owner=owner, data=data, status=DigitImage.Status.DONE, width=width, height=height, **fields
    )
    digits = []
    for k, (digit, confidence) in enumerate(zip(number, confidences or (0.99,) * len(number), strict=True)):
        probabilities = [(1 - confidence) / 9] * 10
        probabilities[int(digit)] = confidence
        verdict = Prediction.Verdict.DIGIT if confidence >= 0.9 else Prediction.Verdict.UNSURE
        box = list(boxes[k]) if boxes else [10 + 35 * k, 8, 28, 32]
        digits.append(
            {
                "digit": int(digit),
                "confidence": confidence,
                "probabilities": probabilities,
                "box": box,
                "verdict": verdict,
            }
        )
    weakest = min(digits, key=lambda reading: reading["confidence"])
    sure = all(reading["verdict"] == Prediction.Verdict.DIGIT for reading in digits)
    Prediction.objects.create(
        image=image,
        digit=weakest["digit"],
        confidence=weakest["confidence"],
        probabilities=weakest["probabilities"],
        verdict=Prediction.Verdict.NUMBER if sure else Prediction.Verdict.UNSURE,
        number=number,
        digits=digits,
        model_version=model_version_ensure_initial(),
        model_input=bytes(784),
        digit_inputs=b"".join(bytes([k]) * 784 for k in range(len(number))),
        inference_ms=2.5,
    )
    return image


def test_sign_up_logs_in_and_lands_on_the_gallery(client):
    response = client.post(
        reverse("classifier:signup"),
        {
            "username": "ada",
            "password1": "an unusual passphrase 42",
            "password2": "an unusual passphrase 42",
        },
        follow=True,
    )
    assert response.redirect_chain[-1][0] == reverse("classifier:home")
    assert response.context["user"].username == "ada"
    assert b"Your gallery" in response.content


def test_login_and_logout(client, user):
    response = client.post(reverse("login"), {"username": user.username, "password": "correct horse battery staple"})
    assert response.status_code == 302
    assert "Your gallery" in client.get(reverse("classifier:home")).content.decode()
    client.post(reverse("logout"))
    assert client.get(reverse("classifier:history")).status_code == 302
    assert "Your gallery" not in client.get(reverse("classifier:home")).content.decode()  # the landing page


def test_password_change(signed_in, user):
    response = signed_in.post(
        reverse("password_change"),
        {
            "old_password": "correct horse battery staple",
            "new_password1": "another long passphrase 7",
            "new_password2": "another long passphrase 7",
        },
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password("another long passphrase 7")


@pytest.mark.parametrize("name", ["classifier:draw", "classifier:history", "password_change"])
def test_pages_need_a_signed_in_user(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_upload_stores_good_files_queues_them_and_refuses_bad_ones(
    signed_in, user, png, settings, django_capture_on_commit_callbacks
):
    files = [
        SimpleUploadedFile("seven.png", png, content_type="image/png"),
        SimpleUploadedFile("notes.png", b"just some text, renamed", content_type="image/png"),
        SimpleUploadedFile("also-seven.png", png, content_type="image/png"),
    ]
    with django_capture_on_commit_callbacks() as callbacks:
        response = signed_in.post(reverse("classifier:home"), {"images": files}, follow=True)
    assert response.status_code == 200
    text = response.content.decode()
    assert "notes.png: This file is not an image we can read" in text
    assert "2 images uploaded" in text
    images = DigitImage.objects.filter(owner=user).order_by("id")
    assert [i.original_name for i in images] == ["seven.png", "also-seven.png"]
    image = images[0]
    assert image.status == DigitImage.Status.PENDING
    assert (image.width, image.height, image.image_format, image.content_type) == (28, 28, "PNG", "image/png")
    assert image.file.read() == png
    assert image.file.name != "seven.png" and "seven" not in image.file.name
    assert len(callbacks) == 1  # once committed, one callback queues both stored images


def test_upload_over_the_size_limit_is_refused(signed_in, settings, png):
    settings.UPLOAD_MAX_BYTES = 100
    response = signed_in.post(reverse("classifier:home"), {"images": [SimpleUploadedFile("big.png", png)]}, follow=True)
    assert "big.png: The file is larger than" in response.content.decode()
    assert not DigitImage.objects.exists()


def test_gallery_shows_own_cards_newest_first(signed_in, user, png):
    first = done_image(user, png, digit=3)
    second = DigitImageFactory(owner=user, data=png)
    DigitImageFactory(data=png, original_name="someone-else.png")
    response = signed_in.get(reverse("classifier:home"))
    assert [i.pk for i in response.context["images"]] == [second.pk, first.pk]
    assert b"someone-else.png" not in response.content


def test_pending_card_polls_and_a_finished_card_stops_polling(signed_in, user, png):
    pending = DigitImageFactory(owner=user, data=png)
    response = signed_in.get(reverse("classifier:image_card", args=[pending.pk]))
    assert response.status_code == 200 and b'hx-trigger="every 1s"' in response.content
    finished = done_image(user, png, digit=4)
    response = signed_in.get(reverse("classifier:image_card", args=[finished.pk]))
    assert response.status_code == 286  # htmx: stop polling
    assert b"hx-trigger" not in response.content and b">4<" in response.content


def test_the_card_shows_a_number_and_how_sure_its_least_sure_digit_is(signed_in, user, png):
    sure = number_image(user, png, number="583124", confidences=(0.99, 0.97, 0.995, 0.99, 0.98, 0.99))
    html = signed_in.get(reverse("classifier:image_card", args=[sure.pk])).content.decode()
    assert 'data-number="583124"' in html and 'data-verdict="number"' in html
    assert ">583124</div>" in html and "number · least sure digit 97%" in html
    assert "not sure" not in html
    doubtful = number_image(user, png, number="58", confidences=(0.99, 0.6))
    html = signed_in.get(reverse("classifier:image_card", args=[doubtful.pk])).content.decode()
    assert 'data-verdict="unsure"' in html and ">58</div>" in html
    assert "not sure</span>" in html and "least sure digit 60%" in html
    single = signed_in.get(reverse("classifier:image_card", args=[done_image(user, png, digit=4).pk])).content.decode()
    assert 'data-verdict="digit"' in single and "data-number" not in single


def test_detail_page_shows_prediction_model_input_and_ten_bars(signed_in, user, png):
    image = done_image(user, png, digit=7)
    response = signed_in.get(image.get_absolute_url())
    assert response.status_code == 200
    assert len(response.context["bars"]) == 10
    assert [bar["top"] for bar in response.context["bars"]].index(True) == 7
    assert reverse("classifier:image_model_input", args=[image.pk]).encode() in response.content
    picture = signed_in.get(reverse("classifier:image_model_input", args=[image.pk]))
    assert picture["Content-Type"] == "image/png"


def test_detail_page_boxes_each_digit_of_a_number_and_shows_its_input_and_bars(signed_in, user, png):
    import re

    image = number_image(user, png, number="583", confidences=(0.99, 0.6, 0.98), width=120, height=48)
    html = signed_in.get(image.get_absolute_url()).content.decode()
    assert 'viewBox="0 0 120 48"' in html and 'id="predicted-number">583<' in html
    assert re.findall(r'<rect x="(\d+)" y="8" width="28" height="32">', html) == ["10", "45", "80"]
    assert html.count('class="reading-box"') == 2 and html.count('class="reading-box reading-box-unsure"') == 1
    # Said in words, not by colour alone: in the label and to a screen reader.
    assert '>8<span class="reading-label-more"> 60% ?</span></li>' in html and "8 (60%, not sure)" in html
    assert html.count("<details") == 3 and html.count('class="bar-row') == 30
    assert 'Digit 2: <strong>8</strong>, 60% <span class="badge text-bg-warning">not sure</span>' in html
    assert html.count(reverse("classifier:image_file", args=[image.pk])) == 1  # the photo once, boxed
    for index in range(3):
        assert reverse("classifier:image_digit_input", args=[image.pk, index]) in html
    assert "hx-swap-oob" not in html


def test_a_reading_of_several_pieces_that_are_not_digits_says_so(signed_in, user, png):
    image = number_image(user, png, number="17")
    Prediction.objects.filter(image=image).update(
        verdict=Prediction.Verdict.NOT_A_DIGIT, number="", verdict_reason="it looks like letters, a word or a symbol."
    )
    html = signed_in.get(image.get_absolute_url()).content.decode()
    assert 'data-verdict="not_a_digit"' in html and "This does not look like a digit" in html
    assert "It looks like letters" in html and "its pieces would be 17" in html
    card = signed_in.get(reverse("classifier:image_card", args=[image.pk])).content.decode()
    assert "This does not look like a digit" in card


def test_a_number_finished_in_place_redraws_the_photo_with_its_boxes(signed_in, user, png):
    image = number_image(user, png)
    html = signed_in.get(reverse("classifier:image_detail_result", args=[image.pk])).content.decode()
    assert 'id="reading-photo" hx-swap-oob="true"' in html and html.count("<rect") == 3


def test_single_digits_keep_their_detail_page(signed_in, user, png):
    html = signed_in.get(done_image(user, png, digit=7).get_absolute_url()).content.decode()
    assert "<svg" not in html and "<details" not in html and 'id="predicted-digit">7<' in html


def test_each_digit_input_is_its_own_28x28_png_to_the_owner_only(signed_in, user, png, client):
    from io import BytesIO

    from PIL import Image

    image = number_image(user, png, number="58", confidences=(0.99, 0.98))
    for index in range(2):
        response = signed_in.get(reverse("classifier:image_digit_input", args=[image.pk, index]))
        picture = np.asarray(Image.open(BytesIO(response.content)))
        assert response["Content-Type"] == "image/png" and picture.shape == (224, 224)
        assert (picture == index).all()
    assert signed_in.get(reverse("classifier:image_digit_input", args=[image.pk, 2])).status_code == 404
    client.force_login(UserFactory())
    assert client.get(reverse("classifier:image_digit_input", args=[image.pk, 0])).status_code == 404


def test_card_and_detail_page_say_the_same_while_an_image_waits(signed_in, user, png):
    import re

    from django.utils import timezone

    from classifier.models import WorkerHeartbeat

    def badges(image) -> tuple[list[str], list[str]]:
        found = []
        for name in ("classifier:image_card", "classifier:image_detail_result"):
            html = signed_in.get(reverse(name, args=[image.pk])).content.decode()
            found.append(re.findall(r'status-badge"[^>]*>([^<]+)<', html))
        return tuple(found)

    image = DigitImageFactory(owner=user, data=png)
    assert badges(image) == (["warming up…"], ["warming up…"])
    now = timezone.now()
    WorkerHeartbeat.objects.create(hostname="celery@here", seen_at=now, started_at=now, ready_at=now)
    assert badges(image) == (["queued…"], ["queued…"])
    DigitImage.objects.filter(pk=image.pk).update(status=DigitImage.Status.PROCESSING)
    assert badges(image) == (["classifying…"], ["classifying…"])


def test_a_waiting_detail_page_shows_the_photo_once_and_finishes_in_place(signed_in, user, png):
    from django.utils import timezone

    from classifier.models import WorkerHeartbeat

    image = DigitImageFactory(owner=user, data=png)
    page = signed_in.get(image.get_absolute_url()).content.decode()
    assert page.count(reverse("classifier:image_file", args=[image.pk])) == 1  # the photo, once
    result_url = reverse("classifier:image_detail_result", args=[image.pk])
    assert f'hx-get="{result_url}"' in page and "warming up…" in page and "reload" not in page
    now = timezone.now()
    WorkerHeartbeat.objects.create(hostname="celery@here", seen_at=now, started_at=now, ready_at=now)
    waiting = signed_in.get(result_url)
    assert waiting.status_code == 200 and "queued…" in waiting.content.decode()
    # The worker is done: the answer, the bars and the feedback form replace the notice, and
    # htmx stops polling (286).
    Prediction.objects.create(
        image=image,
        digit=7,
        confidence=0.93,
        probabilities=[0.007] * 7 + [0.93] + [0.007] * 2,
        model_version=model_version_ensure_initial(),
        model_input=bytes(784),
        inference_ms=1.5,
    )
    DigitImage.objects.filter(pk=image.pk).update(status=DigitImage.Status.DONE)
    done = signed_in.get(result_url)
    html = done.content.decode()
    assert done.status_code == 286 and 'id="predicted-digit">7<' in html and html.count('class="bar-row') == 10
    assert "Tell us it is wrong" in html and "hx-get" not in html
    # Answer first: on a phone the result column comes before the photo.
    page = signed_in.get(image.get_absolute_url()).content.decode()
    assert page.index("order-1 order-md-2") < page.index('id="predicted-digit"')
    assert 'class="col-md-6 order-2 order-md-1"' in page


def test_image_file_is_served_to_its_owner_with_its_type(signed_in, user, png):
    image = DigitImageFactory(owner=user, data=png)
    response = signed_in.get(reverse("classifier:image_file", args=[image.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"".join(response.streaming_content) == png


@pytest.mark.parametrize(
    "name", ["image_detail", "image_detail_result", "image_file", "image_card", "image_model_input"]
)
def test_other_users_images_answer_404(signed_in, png, name):
    theirs = done_image(UserFactory(), png)
    assert signed_in.get(reverse(f"classifier:{name}", args=[theirs.pk])).status_code == 404


@pytest.mark.parametrize(
    "name", ["image_detail", "image_detail_result", "image_file", "image_card", "image_model_input"]
)
def test_anonymous_visitors_are_sent_to_log_in(client, png, name):
    image = done_image(UserFactory(), png)
    response = client.get(reverse(f"classifier:{name}", args=[image.pk]))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_staff_may_see_everyones_images(client, png):
    staff = ReviewerFactory()
    theirs = done_image(UserFactory(), png)
    client.force_login(staff)
    assert client.get(theirs.get_absolute_url()).status_code == 200
    listed = client.get(reverse("classifier:history"), {"everyone": "on"}).context["page"].object_list
    assert theirs in list(listed)
    assert theirs not in list(client.get(reverse("classifier:history")).context["page"].object_list)


def test_history_filters_and_paginates(signed_in, user, png):
    for digit in (1, 1, 2):
        done_image(user, png, digit=digit)
    low = done_image(user, png, digit=5)
    Prediction.objects.filter(image=low).update(confidence=0.3)
    failed = DigitImageFactory(owner=user, data=png, status=DigitImage.Status.FAILED, error_message="No digit found")

    def listed(**params):
        return [i.pk for i in signed_in.get(reverse("classifier:history"), params).context["page"].object_list]

    assert len(listed()) == 5
    assert len(listed(digit=1)) == 2
    assert listed(status="failed") == [failed.pk]
    assert listed(below=50) == [low.pk]
    from classifier.tests.factories import FlagFactory

    FlagFactory(image=low, correct_digit=6)
    assert listed(flagged="yes") == [low.pk]
    assert low.pk not in listed(flagged="no")


def test_history_searches_by_number_and_shows_it(signed_in, user, png):
    number_image(user, png, number="583124", confidences=(0.99,) * 6)
    number_image(user, png, number="90", confidences=(0.99, 0.5))
    done_image(user, png, digit=5)
    Prediction.objects.filter(image__owner=user, digit=5, number="").update(number="5")
    response = signed_in.get(reverse("classifier:history"), {"number": "58"})
    assert [image.prediction.number for image in response.context["page"]] == ["583124"]
    html = response.content.decode()
    assert '<span class="fs-5 history-number">583124</span>' in html and 'value="58"' in html
    response = signed_in.get(reverse("classifier:history"))
    html = response.content.decode()
    assert '<span class="fs-5 history-number">90</span> <span class="badge text-bg-warning">not sure</span>' in html
    assert '<span class="fs-5">5</span>' in html  # a single digit as before


@pytest.mark.parametrize("typed", ["5a", "-58", "12.5", "1234567890123"])
def test_a_number_search_takes_digits_only_and_says_so(signed_in, user, png, typed):
    number_image(user, png, number="583124", confidences=(0.99,) * 6)
    response = signed_in.get(reverse("classifier:history"), {"number": typed})
    assert len(response.context["page"].object_list) == 1  # the filter is left out, the list stays
    (reason,) = response.context["ignored"]
    assert reason.startswith(f'Number contains "{typed}": ')
    assert "digits only" in reason or "at most 12 characters" in reason


def test_history_pages(signed_in, user, png):
    for _ in range(30):
        DigitImageFactory(owner=user, data=png)
    first = signed_in.get(reverse("classifier:history"))
    assert first.context["page"].paginator.num_pages == 2
    second = signed_in.get(reverse("classifier:history"), {"page": 2})
    assert len(second.context["page"].object_list) == 5


def test_get_absolute_url_is_the_detail_page(png):
    image = DigitImageFactory(data=png)
    assert image.get_absolute_url() == reverse("classifier:image_detail", args=[image.pk])


def test_model_input_png_is_the_stored_28x28(signed_in, user, png):
    from io import BytesIO

    from PIL import Image

    image = done_image(user, png)
    pixels = np.arange(784, dtype=np.uint32) % 256
    Prediction.objects.filter(image=image).update(model_input=pixels.astype(np.uint8).tobytes())
    response = signed_in.get(reverse("classifier:image_model_input", args=[image.pk]))
    picture = np.asarray(Image.open(BytesIO(response.content)))
    assert picture.shape == (224, 224)
    assert picture[::8, ::8].ravel().tolist() == pixels.tolist()


def test_the_draw_page_has_a_labelled_canvas_and_controls(signed_in):
    html = signed_in.get(reverse("classifier:draw")).content.decode()
    assert 'id="draw-canvas"' in html and 'aria-label="Drawing area for a digit or a number"' in html
    assert '<label for="pen-width"' in html
    for button in ("Undo", "Clear", "Classify drawing"):
        assert f">{button}</button>" in html
    assert reverse("classifier:upload_inline") in html


def test_inline_upload_answers_with_cards_that_poll(signed_in, user, png):
    with_blank = [SimpleUploadedFile("drawing.png", png), SimpleUploadedFile("notes.png", b"not an image")]
    response = signed_in.post(reverse("classifier:upload_inline"), {"images": with_blank})
    assert response.status_code == 201
    html = response.content.decode()
    image = DigitImage.objects.get(owner=user)
    assert f'id="card-{image.pk}"' in html and 'hx-trigger="every 1s"' in html
    assert "notes.png: This file is not an image we can read" in html

    response = signed_in.post(reverse("classifier:upload_inline"), {"images": [SimpleUploadedFile("x.png", b"")]})
    assert response.status_code == 400 and "x.png: The file is empty." in response.content.decode()
    response = signed_in.post(reverse("classifier:upload_inline"), {})
    assert response.status_code == 400 and "This field is required." in response.content.decode()


def test_owner_feedback_is_recorded_and_shown(signed_in, user, png):
    image = done_image(user, png, digit=7)
    detail = signed_in.get(image.get_absolute_url()).content.decode()
    assert "Is this wrong?" in detail and "Tell us it is wrong" in detail
    # Not prefilled with the reading they say is wrong, and no browser pattern: the server says
    # in words what is wrong with an answer, and "not a digit" is a box to tick.
    assert 'name="number" value=' not in detail and 'inputmode="numeric"' in detail
    assert "pattern=" not in detail and "It is not a digit or a number" in detail

    response = signed_in.post(reverse("classifier:image_feedback", args=[image.pk]), {"number": "1"}, follow=True)
    text = response.content.decode()
    assert "you said this is a 1" in text and "staff will review" in text
    assert "You said this <strong>is a 1</strong>" in text
    assert Feedback.objects.get(image=image).suggested_digit == 1
    assert Prediction.objects.get(image=image).digit == 7
    assert 'name="number" value="1"' in text  # their answer, to change

    response = signed_in.post(reverse("classifier:image_feedback", args=[image.pk]), {"number": "7"}, follow=True)
    assert "The model already reads 7; write what it really reads." in response.content.decode()
    for refused, reason in (
        ({"number": "A"}, "digits only, left to right"),
        ({"number": "7a"}, "digits only, left to right"),
        ({"number": ""}, "Write what it really reads"),
        ({"number": "3", "not_a_digit": "on"}, "or tick &quot;It is not a digit or a number&quot;"),
    ):
        response = signed_in.post(reverse("classifier:image_feedback", args=[image.pk]), refused, follow=True)
        assert reason in response.content.decode(), refused
    assert Feedback.objects.get(image=image).suggested_digit == 1


def test_an_owner_says_an_image_is_not_a_digit(signed_in, user, png):
    image = done_image(user, png, digit=7)
    url = reverse("classifier:image_feedback", args=[image.pk])
    text = signed_in.post(url, {"not_a_digit": "on"}, follow=True).content.decode()
    assert "Thank you: you said this is not a digit." in text
    assert "You said this <strong>is not a digit</strong>" in text and 'name="not_a_digit" ' in text
    feedback = Feedback.objects.get(image=image)
    assert (feedback.not_a_digit, feedback.suggested_number, feedback.suggested_digit) == (True, "", None)
    assert Prediction.objects.get(image=image).digit == 7  # the prediction stays

    # Said of an image the model already calls not a digit, it is refused with the reason.
    refused = done_image(user, png, digit=4, verdict=Prediction.Verdict.NOT_A_DIGIT)
    text = signed_in.post(
        reverse("classifier:image_feedback", args=[refused.pk]), {"not_a_digit": "on"}, follow=True
    ).content.decode()
    assert "The model already says this is not a digit." in text
    assert not Feedback.objects.filter(image=refused).exists()
    # A number read from a word: "not a number" is the same box.
    word = number_image(user, png, "14")
    signed_in.post(reverse("classifier:image_feedback", args=[word.pk]), {"not_a_digit": "on"})
    assert Feedback.objects.get(image=word).not_a_digit


def test_owner_feedback_on_a_number(signed_in, user, png):
    image = number_image(user, png, "583")
    assert 'name="number" value=' not in signed_in.get(image.get_absolute_url()).content.decode()
    url = reverse("classifier:image_feedback", args=[image.pk])
    assert "The model already reads 583" in signed_in.post(url, {"number": "583"}, follow=True).content.decode()
    text = signed_in.post(url, {"number": "5831"}, follow=True).content.decode()
    assert "you said this is 5831" in text and "You said this <strong>is 5831</strong>" in text
    assert 'name="number" value="5831"' in text  # their own answer, to change
    assert (Feedback.objects.get().suggested_number, Feedback.objects.get().suggested_digit) == ("5831", None)


def test_staff_correct_a_reading_from_the_images_page(client, user, png):
    from classifier.models import Flag

    image = number_image(user, png, "583")
    url = reverse("classifier:image_flag", args=[image.pk])
    client.force_login(user)
    assert "Staff: correct the reading" not in client.get(image.get_absolute_url()).content.decode()
    assert client.post(url, {"flag-number": "1"}).status_code == 404  # staff only
    client.force_login(ReviewerFactory())
    detail = client.get(image.get_absolute_url()).content.decode()
    assert "Staff: correct the reading" in detail and 'name="flag-number" value=' not in detail  # no default

    text = client.post(url, {"flag-number": "588"}, follow=True).content.decode()
    assert "Flagged: this is 588." in text and Flag.objects.get().correct_number == "588"
    assert 'name="flag-number" value="588"' in text  # the flag there is, to change
    text = client.post(url, {"flag-number": "5880"}, follow=True).content.decode()
    assert "Flagged: this is 5880." in text and "4 digits given, 3 found: kept, not trained on." in text
    for form, reason in (
        ({"flag-number": "5a"}, "digits only, left to right"),
        ({"flag-number": "", "flag-not_a_digit": ""}, "or tick &quot;It is not a digit&quot; (not both)"),
        ({"flag-number": "5", "flag-not_a_digit": "on"}, "(not both)"),
    ):
        assert reason in client.post(url, form, follow=True).content.decode(), form
    assert Flag.objects.get().correct_number == "5880"
    text = client.post(url, {"flag-not_a_digit": "on", "flag-note": "a scribble"}, follow=True).content.decode()
    # Not a digit teaches the reject option whatever the reader found: no "kept, not trained on".
    assert "Flagged: this is not a digit." in text and 'id="flag-training"' not in text
    assert "digits found" not in text  # never "Not a digit, 3 digits found: kept, not trained on."
    assert Flag.objects.get().not_a_digit


def test_staff_see_no_feedback_form_on_other_peoples_images(client, user, png):
    image = done_image(user, png)
    client.force_login(ReviewerFactory())
    assert "Is this wrong?" not in client.get(image.get_absolute_url()).content.decode()


def test_grad_cam_image_is_a_png_overlay(signed_in, user, png):
    image = done_image(user, png)
    Prediction.objects.filter(image=image).update(saliency=bytes(range(256)) * 3 + bytes(16))
    response = signed_in.get(reverse("classifier:image_grad_cam", args=[image.pk]))
    assert response["Content-Type"] == "image/png" and response["X-Content-Type-Options"] == "nosniff"
    from PIL import Image as PILImage

    picture = PILImage.open(io.BytesIO(response.content))
    assert picture.size == (224, 224) and picture.mode == "RGB"
    assert "What the model looked at" in signed_in.get(image.get_absolute_url()).content.decode()


def test_history_exports_as_csv_with_the_pages_filters(signed_in, user, png):
    seven = done_image(user, png, digit=7)
    done_image(user, png, digit=3)
    DigitImageFactory(owner=user, data=png, original_name="=HYPERLINK(evil).png")
    DigitImageFactory(data=png, original_name="someone-else.png")
    Feedback.objects.create(image=seven, suggested_digit=1)

    response = signed_in.get(reverse("classifier:history_export"))
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="digitsite-history-')
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 3
    assert "someone-else.png" not in {row["file_name"] for row in rows}
    assert "'=HYPERLINK(evil).png" in {row["file_name"] for row in rows}  # no formula in a spreadsheet
    by_digit = {row["digit"]: row for row in rows}
    assert by_digit["7"]["your_feedback"] == "1" and by_digit["7"]["model_version"] == "v1"
    assert float(by_digit["7"]["p7"]) == pytest.approx(0.91) and float(by_digit["7"]["confidence"]) == 0.91
    assert by_digit[""]["status"] == "pending"

    filtered = signed_in.get(reverse("classifier:history_export"), {"digit": 3})
    rows = list(csv.DictReader(io.StringIO(b"".join(filtered.streaming_content).decode())))
    assert [row["digit"] for row in rows] == ["3"]
    assert (
        'href="/history/export.csv?digit=3"'
        in signed_in.get(reverse("classifier:history"), {"digit": 3}).content.decode()
    )


def test_the_csv_carries_each_images_number_and_its_digits_as_json(signed_in, user, png):
    import json

    number_image(user, png, number="58", confidences=(0.99, 0.6))
    done_image(user, png, digit=3)  # read before numbers: one digit, no box
    response = signed_in.get(reverse("classifier:history_export"), {"number": "58"})
    (row,) = csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))
    assert row["number"] == "58" and row["digit"] == "8" and row["verdict"] == "unsure"
    digits = json.loads(row["digits"])
    assert [(d["digit"], d["verdict"], d["box"]) for d in digits] == [
        (5, "digit", [10, 8, 28, 32]),
        (8, "unsure", [45, 8, 28, 32]),
    ]
    assert digits[1]["confidence"] == 0.6 and len(digits[1]["probabilities"]) == 10
    response = signed_in.get(reverse("classifier:history_export"), {"digit": 3})
    (row,) = csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))
    assert row["number"] == "" and [(d["digit"], d["box"]) for d in json.loads(row["digits"])] == [(3, None)]


def test_an_invalid_history_filter_is_named_and_the_valid_ones_still_apply(signed_in, user, png):
    done_image(user, png, digit=1)
    failed = DigitImageFactory(owner=user, data=png, status=DigitImage.Status.FAILED)
    response = signed_in.get(reverse("classifier:history"), {"digit": "-1", "status": "failed"})
    assert [i.pk for i in response.context["page"].object_list] == [failed.pk]
    text = response.content.decode()
    assert "Ignored the filter Predicted digit" in text and "&quot;-1&quot;" in text
    # The CSV link carries only the filters the page applied.
    assert 'href="/history/export.csv?status=failed"' in text
    assert "Ignored the filter" not in signed_in.get(reverse("classifier:history"), {"digit": 1}).content.decode()


def test_the_csv_export_refuses_an_invalid_filter_with_the_reason(signed_in, user, png):
    done_image(user, png, digit=1)
    response = signed_in.get(reverse("classifier:history_export"), {"digit": "-1", "below": "500"})
    assert response.status_code == 400
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    text = response.content.decode()
    assert 'Predicted digit "-1"' in text and 'Confidence below (%) "500"' in text
    assert "file_name" not in text


def test_statistics_page_shows_charts_and_numbers_to_staff(client, user, png):
    from classifier.models import Flag

    seven = done_image(user, png, digit=7)
    done_image(user, png, digit=7)
    Flag.objects.create(image=seven, correct_digit=1)
    Feedback.objects.create(image=seven, suggested_digit=1)
    client.force_login(ReviewerFactory())
    response = client.get(reverse("classifier:stats"))
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" viewBox=') == 8
    assert html.count("<summary>The numbers</summary>") == 8
    for title in (
        "Uploads per day",
        "Predictions per digit",
        "Confidence of predictions",
        "Flagged share per model version",
        "Not sure or not a digit, per model version",
        "Review queue at the end of each day",
        "Flagged corrections: predicted vs correct",
        "MNIST test accuracy per model version",
    ):
        assert f'<figcaption class="fw-semibold mb-1">{title}</figcaption>' in html
    assert "50% (1 of 2)" in html  # the flagged share, as text in the chart
    # The versions table scrolls in its own box on a phone, which a keyboard reaches and a screen reader names.
    assert '<div class="table-responsive" tabindex="0" role="region" aria-labelledby="versions-heading">' in html
    stats = response.context["stats"]
    assert stats.predictions_per_digit[7] == 2 and stats.uploads_per_day[-1] == 2
    assert stats.confidence_bins[18] == 2  # 91%
    assert stats.corrections[7][1] == 1
    assert (stats.versions[0].flagged, stats.versions[0].predictions) == (1, 2)
    assert stats.totals["open_feedback"] == 1


def test_statistics_page_counts_corrected_numbers_and_digits(client, user, png):
    from classifier.models import Flag

    Flag.objects.create(image=number_image(user, png, "583"), correct_number="588")
    Flag.objects.create(image=number_image(user, png, "72"), correct_number="721")
    client.force_login(ReviewerFactory())
    html = client.get(reverse("classifier:stats")).content.decode()
    assert '<dd class="fs-4 mb-0" id="corrected-numbers">2</dd>' in html
    assert '<dd class="fs-4 mb-0" id="corrected-digits">3</dd>' in html
    assert '<dd class="fs-4 mb-0" id="not-trained">1</dd>' in html


def test_a_mistyped_address_gets_the_sites_404_page_with_a_way_back(signed_in):
    response = signed_in.get("/gallery/nothing-here/")
    page = response.content.decode()
    assert response.status_code == 404
    assert "This page does not exist" in page and 'class="navbar' in page
    assert f'href="{reverse("classifier:home")}"' in page and "Back to your gallery" in page
    assert "/gallery/nothing-here/" in page


def test_the_500_page_uses_the_sites_look_and_needs_nothing_that_may_have_failed(rf):
    from classifier.views.site import server_error

    response = server_error(rf.get("/history/"))
    page = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong on our side" in page and 'class="navbar' in page and 'href="/"' in page


def test_the_favicon_is_served_to_anyone(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"].endswith("favicon.svg")
    assert 'rel="icon"' in client.get(reverse("login")).content.decode()


def test_the_token_page_says_what_happened_and_offers_a_copy_button(signed_in):
    page = reverse("classifier:api_token")
    first = signed_in.post(page, {"action": "create"}, follow=True).content.decode()
    assert "Your API token is ready" in first and "no longer works" not in first
    assert 'id="api-token-copy"' in first and "js/copy.js" in first
    again = signed_in.post(page, {"action": "create"}, follow=True).content.decode()
    assert "The old one no longer works" in again


def test_sign_up_errors_sit_under_the_field_they_concern(client):
    import html
    import re

    def errors_of(page: str) -> dict[str, str]:
        """The error messages crispy-forms renders for each field (ids error_N_id_FIELD)."""
        return {
            name: html.unescape(
                " ".join(re.findall(rf'id="error_\d+_id_{name}"[^>]*>\s*<strong>(.*?)</strong>', page, re.S))
            )
            for name in ("username", "password1", "password2")
        }

    weak = client.post(
        reverse("classifier:signup"), {"username": "ada", "password1": "password", "password2": "password"}
    )
    errors = errors_of(weak.content.decode())
    assert "too common" in errors["password1"] and not errors["password2"]
    assert 'value="password"' not in weak.content.decode()  # a refused password is typed anew

    UserFactory(username="taken")
    good = "a long and unusual passphrase 42"
    taken = client.post(reverse("classifier:signup"), {"username": "taken", "password1": good, "password2": good})
    errors = errors_of(taken.content.decode())
    assert "already exists" in errors["username"] and not errors["password1"] and not errors["password2"]
    assert taken.content.decode().count(f'value="{good}"') == 2  # only the username needs typing again

    mismatch = client.post(
        reverse("classifier:signup"), {"username": "bob", "password1": good, "password2": good + "!"}
    )
    errors = errors_of(mismatch.content.decode())
    assert "match" in errors["password2"] and not errors["password1"]


def test_visitors_get_the_landing_page_with_the_models_own_examples(client):
    from classifier.landing import examples

    shown = examples()
    assert {example["verdict"] for example in shown} == {"digit", "unsure", "not_a_digit"}
    response = client.get(reverse("classifier:home"))
    page = " ".join(response.content.decode().split())
    assert response.status_code == 200 and "Handwritten digits, read honestly" in page
    assert f'href="{reverse("classifier:signup")}"' in page and f'href="{reverse("login")}"' in page
    assert page.count('class="card h-100 landing-example') == 3
    assert "This does not look like a digit" in page and "not sure" in page
    # Uploading still needs an account: nothing is stored for a visitor.
    before = DigitImage.objects.count()
    upload = client.post(reverse("classifier:home"), {"images": [SimpleUploadedFile("a.png", b"x")]})
    assert upload.status_code == 302 and upload["Location"].startswith(reverse("login"))
    assert DigitImage.objects.count() == before


def test_history_shows_the_persons_own_feedback(signed_in, user, png):
    from classifier.services import feedback_give

    image = done_image(user, png, digit=7)
    feedback_give(image=image, user=user, suggested_number="1")
    row = " ".join(signed_in.get(reverse("classifier:history")).content.decode().split())
    assert "you said it <strong>is a 1</strong>" in row and "staff agreed" not in row


def test_sign_up_takes_an_optional_e_mail_address_for_password_reset(client):
    from django.contrib.auth import get_user_model

    good = "a long and unusual passphrase 42"
    client.post(
        reverse("classifier:signup"),
        {"username": "ada", "email": "ada@example.com", "password1": good, "password2": good},
    )
    client.post(reverse("logout"))
    client.post(reverse("classifier:signup"), {"username": "bob", "password1": good, "password2": good})
    users = get_user_model().objects
    assert users.get(username="ada").email == "ada@example.com" and users.get(username="bob").email == ""
    login = client.get(reverse("login")).content.decode()
    assert f'href="{reverse("password_reset")}"' in login and "Forgot your password?" in login


def test_the_owner_can_retry_a_failed_image(signed_in, user, png, django_capture_on_commit_callbacks):
    image = DigitImageFactory(owner=user, data=png, status=DigitImage.Status.FAILED)
    DigitImage.objects.filter(pk=image.pk).update(error_message="the worker died on it", attempts=3)
    url = reverse("classifier:image_retry", args=[image.pk])
    assert f'action="{url}"' in signed_in.get(image.get_absolute_url()).content.decode()
    with django_capture_on_commit_callbacks() as callbacks:
        response = signed_in.post(url, follow=True)
    assert "Trying again" in response.content.decode()
    image.refresh_from_db()
    assert (image.status, image.error_message, image.attempts) == (DigitImage.Status.PENDING, "", 0)
    assert len(callbacks) == 1 and callbacks[0].args == ([image.pk],)  # queued once committed
    # Only a failed image is tried again, and only by its owner.
    again = signed_in.post(url, follow=True)
    assert "nothing to try again" in again.content.decode()
    theirs = DigitImageFactory(owner=UserFactory(), data=png, status=DigitImage.Status.FAILED)
    assert signed_in.post(reverse("classifier:image_retry", args=[theirs.pk])).status_code == 404


def test_a_digit_that_is_not_one_offers_to_be_read_as_a_number_and_is_read_again(
    signed_in, user, png, django_capture_on_commit_callbacks
):
    image = done_image(user, png, verdict=Prediction.Verdict.NOT_A_DIGIT)
    reason = "it looks like several digits (47), not one: read it as a number instead."
    DigitImage.objects.filter(pk=image.pk).update(reading="digit")
    Prediction.objects.filter(image=image).update(verdict_reason=reason)
    url = reverse("classifier:image_read_as", args=[image.pk])
    page = signed_in.get(image.get_absolute_url()).content.decode()
    assert f'action="{url}"' in page and "Read it as a number" in page and "several digits (47)" in page
    with django_capture_on_commit_callbacks() as callbacks:
        response = signed_in.post(url, {"reading": "number"}, follow=True)
    assert "Reading it again (a number)" in response.content.decode()
    image.refresh_from_db()
    assert (image.status, image.reading) == (DigitImage.Status.PENDING, "number")
    assert not Prediction.objects.filter(image=image).exists()
    assert len(callbacks) == 1 and callbacks[0].args == ([image.pk],)
    # Still being read, or asked the way it is read already: nothing changes.
    assert "nothing to do yet" in signed_in.post(url, {"reading": "number"}, follow=True).content.decode()
    assert "Choose how to read it" in signed_in.post(url, {"reading": "roman"}, follow=True).content.decode()
    theirs = DigitImageFactory(owner=UserFactory(), data=png, status=DigitImage.Status.DONE, reading="digit")
    theirs_url = reverse("classifier:image_read_as", args=[theirs.pk])
    assert signed_in.post(theirs_url, {"reading": "number"}).status_code == 404
    # A digit read as one is offered nothing.
    read = done_image(user, png)
    DigitImage.objects.filter(pk=read.pk).update(reading="digit")
    assert "Read it as a number" not in signed_in.get(read.get_absolute_url()).content.decode()


def test_what_people_say_they_sent_is_stored_shown_and_filtered(signed_in, user, png):
    signed_in.post(reverse("classifier:home"), {"images": [SimpleUploadedFile("n.png", png)], "reading": "number"})
    inline = {"images": [SimpleUploadedFile("d.png", png)], "reading": "digit"}
    signed_in.post(reverse("classifier:upload_inline"), inline)
    signed_in.post(reverse("classifier:home"), {"images": [SimpleUploadedFile("a.png", png)]})
    readings = dict(DigitImage.objects.filter(owner=user).values_list("original_name", "reading"))
    assert readings == {"n.png": "number", "d.png": "digit", "a.png": "auto"}
    home = signed_in.get(reverse("classifier:home")).content.decode()
    assert 'data-reading="number">read as a number<' in home and 'data-reading="digit">read as one digit<' in home
    assert home.count("reading-asked") == 2  # "auto" is the default, not worth a line
    history = signed_in.get(reverse("classifier:history"), {"reading": "digit"}).content.decode()
    assert "d.png" in history and "n.png" not in history and "a.png" not in history
    draw = signed_in.get(reverse("classifier:draw")).content.decode()
    assert 'name="reading"' in draw and 'value="number"' in draw
    image = DigitImage.objects.get(original_name="n.png")
    detail = signed_in.get(reverse("classifier:image_detail", args=[image.pk])).content.decode()
    assert "Read as a number, as you said at upload." in detail
    drawing = {"drawing": SimpleUploadedFile("c.png", png), "reading": "x"}
    refused = signed_in.post(reverse("classifier:draw_preview"), drawing)
    assert refused.status_code == 400


def test_sign_up_states_the_password_rules_but_not_the_api_token_one(client):
    page = client.get(reverse("classifier:signup")).content.decode()
    assert "at least" in page.lower()  # the length rule, as Django words it
    assert "API token" not in page  # a new account has none to revoke
    # The password change page, for an account that may have one, still says it.
    client.force_login(UserFactory())
    assert "revokes your API token" in client.get(reverse("password_change")).content.decode()


def test_the_check_your_inbox_page_says_where_mail_goes_without_a_mail_server(client, settings):
    settings.EMAIL_BACKEND = settings.CONSOLE_EMAIL_BACKEND  # make run's default
    assert "printed in the terminal" in client.get(reverse("password_reset_done")).content.decode()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    assert "printed in the terminal" not in client.get(reverse("password_reset_done")).content.decode()
