import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from classifier.models import DigitImage, Prediction
from classifier.services import model_version_ensure_initial
from classifier.tests.factories import DigitImageFactory, UserFactory
from ml.tests.conftest import encode

pytestmark = pytest.mark.django_db


@pytest.fixture
def user():
    return UserFactory()


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def png(mnist):
    return encode(255 - mnist.test.images[0])


def done_image(owner, data, digit=7):
    image = DigitImageFactory(owner=owner, data=data, status=DigitImage.Status.DONE)
    probabilities = [0.01] * 10
    probabilities[digit] = 0.91
    Prediction.objects.create(
        image=image,
        digit=digit,
        confidence=0.91,
        probabilities=probabilities,
        model_version=model_version_ensure_initial(),
        model_input=bytes(784),
        inference_ms=1.5,
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
    assert client.get(reverse("classifier:home")).status_code == 200
    client.post(reverse("logout"))
    assert client.get(reverse("classifier:home")).status_code == 302


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


@pytest.mark.parametrize("name", ["classifier:home", "classifier:history", "password_change"])
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


def test_detail_page_shows_prediction_model_input_and_ten_bars(signed_in, user, png):
    image = done_image(user, png, digit=7)
    response = signed_in.get(image.get_absolute_url())
    assert response.status_code == 200
    assert len(response.context["bars"]) == 10
    assert [bar["top"] for bar in response.context["bars"]].index(True) == 7
    assert reverse("classifier:image_model_input", args=[image.pk]).encode() in response.content
    picture = signed_in.get(reverse("classifier:image_model_input", args=[image.pk]))
    assert picture["Content-Type"] == "image/png"


def test_image_file_is_served_to_its_owner_with_its_type(signed_in, user, png):
    image = DigitImageFactory(owner=user, data=png)
    response = signed_in.get(reverse("classifier:image_file", args=[image.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"".join(response.streaming_content) == png


@pytest.mark.parametrize("name", ["image_detail", "image_file", "image_card", "image_model_input"])
def test_other_users_images_answer_404(signed_in, png, name):
    theirs = done_image(UserFactory(), png)
    assert signed_in.get(reverse(f"classifier:{name}", args=[theirs.pk])).status_code == 404


@pytest.mark.parametrize("name", ["image_detail", "image_file", "image_card", "image_model_input"])
def test_anonymous_visitors_are_sent_to_log_in(client, png, name):
    image = done_image(UserFactory(), png)
    response = client.get(reverse(f"classifier:{name}", args=[image.pk]))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_staff_may_see_everyones_images(client, png):
    staff = UserFactory(is_staff=True)
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
