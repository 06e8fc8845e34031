"""Deleting an image or an account, keeping a correction only with consent, and "download my
data": real files in the temp MEDIA_ROOT, the real database, the shipped model."""

import csv
import io
import tracemalloc
import zipfile

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.authtoken.models import Token

from classifier.models import DigitImage, Feedback, Flag, Prediction, TrainingExample
from classifier.services import (
    AccountDeleteRefused,
    account_delete,
    api_token_create,
    feedback_give,
    image_delete,
    image_flag,
    image_upload_create,
    prediction_run,
    predictions_run,
)
from classifier.services.images import _files_read
from classifier.tests.factories import DigitImageFactory, ReviewerFactory, UserFactory
from ml.serving.preprocessing import to_model_input
from ml.tests.conftest import encode

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


def uploaded(owner, data: bytes, *, consent: bool, name: str = "seven.png") -> DigitImage:
    """An image stored through the upload service, as the site and the API store them."""
    outcome = image_upload_create(
        owner=owner, files=[SimpleUploadedFile(name, data, content_type="image/png")], training_consent=consent
    )
    assert outcome.created, outcome.refused
    return DigitImage.objects.get(pk=outcome.created[0].pk)


def classified_and_corrected(owner, data: bytes, *, consent: bool, digit: int = 1) -> DigitImage:
    image = uploaded(owner, data, consent=consent)
    assert prediction_run(image_id=image.pk) is not None
    image_flag(image=image, correct_number=str(digit), flagged_by=ReviewerFactory())
    return DigitImage.objects.get(pk=image.pk)


def file_exists(image: DigitImage) -> bool:
    return image.file.storage.exists(image.file.name)


# --- Services -------------------------------------------------------------------------------


def test_deleting_an_image_removes_its_file_prediction_feedback_and_flag(user, png, django_capture_on_commit_callbacks):
    image = uploaded(user, png, consent=False)
    prediction_run(image_id=image.pk)
    feedback_give(image=image, user=user, suggested_number="1")
    image_flag(image=image, correct_number="1", flagged_by=ReviewerFactory())
    assert file_exists(image) and Prediction.objects.get(image=image).saliency
    with django_capture_on_commit_callbacks(execute=True):
        kept = image_delete(image=image)
    assert kept == []  # no consent: nothing survives
    assert not DigitImage.objects.filter(pk=image.pk).exists()
    assert not Prediction.objects.exists() and not Feedback.objects.exists() and not Flag.objects.exists()
    assert not file_exists(image)
    assert not TrainingExample.objects.exists()


def test_the_file_goes_only_once_the_rows_are_gone_for_good(user, png, django_capture_on_commit_callbacks):
    image = uploaded(user, png, consent=False)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        image_delete(image=image)
    assert file_exists(image) and len(callbacks) == 1  # a rolled-back delete would keep its file
    callbacks[0]()
    assert not file_exists(image)


def test_a_missing_file_or_a_second_delete_is_no_error(user, png, django_capture_on_commit_callbacks):
    image = uploaded(user, png, consent=False)
    image.file.storage.delete(image.file.name)
    with django_capture_on_commit_callbacks(execute=True):
        assert image_delete(image=image) == []
        assert image_delete(image=image) == []
    assert not DigitImage.objects.exists()


def test_a_consented_correction_survives_as_exactly_the_input_the_model_took(
    user, mnist, django_capture_on_commit_callbacks
):
    data = encode(255 - mnist.test.images[0])
    image = classified_and_corrected(user, data, consent=True, digit=1)
    with django_capture_on_commit_callbacks(execute=True):
        kept = image_delete(image=image)
    assert not DigitImage.objects.exists() and not file_exists(image)
    example = TrainingExample.objects.get()
    assert kept == [example]
    assert (example.correct_digit, example.not_a_digit, example.source) == (1, False, "flag")
    # Bit for bit what the model took (and what retraining reads from a stored file), not the
    # 8-bit picture shown to people.
    expected = to_model_input(data).array
    assert example.array().dtype == np.float32 and np.array_equal(example.array(), expected)
    assert not np.array_equal(np.round(expected * 255) / 255, expected)  # rounding would have lost this
    # Nothing leads back to the person or the upload.
    fields = {field.name for field in TrainingExample._meta.get_fields()}
    assert fields == {"id", "model_input", "correct_digit", "not_a_digit", "source", "created_at", "trained_in"}


def test_without_consent_or_without_a_correction_nothing_is_kept(user, mnist, django_capture_on_commit_callbacks):
    data = encode(255 - mnist.test.images[0])
    refused = classified_and_corrected(user, data, consent=False)
    assert Prediction.objects.get(image=refused).model_input_exact is None  # not even stored
    agreed_but_right = uploaded(user, data, consent=True)
    prediction_run(image_id=agreed_but_right.pk)
    with django_capture_on_commit_callbacks(execute=True):
        image_delete(image=refused)
        image_delete(image=agreed_but_right)
    assert not DigitImage.objects.exists() and not TrainingExample.objects.exists()


def test_a_corrected_number_is_kept_as_one_example_per_box_when_the_counts_match(
    user, mnist, django_capture_on_commit_callbacks
):
    from classifier.selectors import account_summary, images_kept_on_delete
    from classifier.tests.test_services import _number_page

    staff = ReviewerFactory()
    data = encode(_number_page(mnist, [0, 1, 2, 3]))
    fits, too_long, not_a_digit = (uploaded(user, data, consent=True) for _ in range(3))
    for image in (fits, too_long, not_a_digit):
        assert prediction_run(image_id=image.pk).number == "7210"
    image_flag(image=fits, correct_number="7219", flagged_by=staff)
    image_flag(image=too_long, correct_number="72190", flagged_by=staff)
    image_flag(image=not_a_digit, correct_number=None, flagged_by=staff)  # four boxes: nothing says which
    assert list(images_kept_on_delete(DigitImage.objects.order_by("pk"))) == [fits]
    assert account_summary(user).kept == 1
    exact = Prediction.objects.get(image=fits).exact_inputs().copy()

    with django_capture_on_commit_callbacks(execute=True):
        kept = image_delete(image=fits)
        assert image_delete(image=too_long) == [] and image_delete(image=not_a_digit) == []
    assert kept == list(TrainingExample.objects.order_by("pk"))
    assert [(example.correct_digit, example.not_a_digit) for example in kept] == [
        (7, False),
        (2, False),
        (1, False),
        (9, False),
    ]
    for example, digit_input in zip(kept, exact, strict=True):
        assert np.array_equal(example.array(), digit_input)  # each box's input, bit for bit


def test_a_not_a_digit_correction_is_kept_as_such(user, mnist, django_capture_on_commit_callbacks):
    image = classified_and_corrected(user, encode(255 - mnist.test.images[0]), consent=True)
    image_flag(image=image, correct_number=None, flagged_by=ReviewerFactory())
    with django_capture_on_commit_callbacks(execute=True):
        image_delete(image=image)
    example = TrainingExample.objects.get()
    assert example.not_a_digit and example.correct_digit is None and example.says == "is not a digit"


# --- The worker and an image deleted under it ------------------------------------------------


def test_an_image_deleted_while_it_is_classified_is_skipped_and_the_batch_goes_on(
    user, mnist, monkeypatch, django_capture_on_commit_callbacks
):
    import ml.serving.numbers

    images = [uploaded(user, encode(255 - mnist.test.images[i]), consent=False, name=f"{i}.png") for i in range(3)]
    victim = images[1]
    real = ml.serving.numbers.read_numbers

    def delete_then_predict(predictor, blobs, readings=None):
        # The owner deletes one image after the worker has read its file, before the results
        # are stored: the model runs on it, its prediction must not be stored.
        with django_capture_on_commit_callbacks(execute=True):
            image_delete(image=victim)
        return real(predictor, blobs, readings)

    monkeypatch.setattr(ml.serving.numbers, "read_numbers", delete_then_predict)
    predictions = predictions_run(image_ids=[image.pk for image in images])
    assert set(predictions) == {images[0].pk, images[2].pk}
    assert {p.digit for p in predictions.values()} == {int(mnist.test.labels[0]), int(mnist.test.labels[2])}
    assert not DigitImage.objects.filter(pk=victim.pk).exists()
    assert not Prediction.objects.filter(image_id=victim.pk).exists()
    assert DigitImage.objects.filter(status=DigitImage.Status.DONE).count() == 2


def test_an_image_deleted_before_its_file_is_read_is_left_out_not_failed(user, png, django_capture_on_commit_callbacks):
    image = uploaded(user, png, consent=False)
    with django_capture_on_commit_callbacks(execute=True):
        image_delete(image=image)
    assert _files_read([image]) == ([], [])  # no FAILED update of a row that is gone, no error
    assert prediction_run(image_id=image.pk) is None


# --- Pages ---------------------------------------------------------------------------------


def test_the_owner_deletes_an_image_after_a_confirmation_page(signed_in, user, png, django_capture_on_commit_callbacks):
    image = uploaded(user, png, consent=False, name="my seven.png")
    url = reverse("classifier:image_delete", args=[image.pk])
    detail = signed_in.get(image.get_absolute_url()).content.decode()
    assert f'href="{url}"' in detail and "nothing about it is kept" in detail
    page = signed_in.get(url).content.decode()
    assert "Delete my seven.png?" in page and 'method="post"' in page and "Nothing about it is kept." in page
    assert DigitImage.objects.filter(pk=image.pk).exists()  # the page itself deletes nothing
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in.post(url, follow=True)
    assert response.redirect_chain[-1][0] == reverse("classifier:home")
    assert "Deleted my seven.png, with its prediction and everything about it." in response.content.decode()
    assert not DigitImage.objects.filter(pk=image.pk).exists() and not file_exists(image)
    assert signed_in.post(url).status_code == 404  # already gone


def test_the_confirmation_says_when_a_correction_is_kept(signed_in, user, mnist, django_capture_on_commit_callbacks):
    image = classified_and_corrected(user, encode(255 - mnist.test.images[0]), consent=True, digit=3)
    url = reverse("classifier:image_delete", args=[image.pk])
    assert "its answer (is a 3) stay to train the model" in signed_in.get(url).content.decode()
    assert "may be kept to train the model" in signed_in.get(image.get_absolute_url()).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in.post(url, follow=True)
    assert "its corrected 28x28 version is kept to train the model" in response.content.decode()
    assert TrainingExample.objects.get().correct_digit == 3


def test_nobody_else_may_delete_an_image_not_even_staff(client, user, png):
    image = uploaded(user, png, consent=False)
    url = reverse("classifier:image_delete", args=[image.pk])
    for outsider in (UserFactory(), ReviewerFactory()):
        client.force_login(outsider)
        assert client.get(url).status_code == 404
        assert client.post(url).status_code == 404
    assert DigitImage.objects.filter(pk=image.pk).exists() and file_exists(image)
    client.force_login(ReviewerFactory())
    assert "image-delete-link" not in client.get(image.get_absolute_url()).content.decode()


def test_consent_is_asked_on_the_upload_form_and_taken_by_site_and_api(signed_in, user, png):
    form = signed_in.get(reverse("classifier:home")).content.decode()
    assert 'name="training_consent"' in form and "keep the corrected 28x28 version" in form
    assert 'name="training_consent"' in signed_in.get(reverse("classifier:draw")).content.decode()
    signed_in.post(reverse("classifier:home"), {"images": [SimpleUploadedFile("a.png", png)], "training_consent": "on"})
    signed_in.post(reverse("classifier:home"), {"images": [SimpleUploadedFile("b.png", png)]})
    signed_in.post(
        reverse("classifier:upload_inline"), {"images": [SimpleUploadedFile("c.png", png)], "training_consent": "on"}
    )
    token = api_token_create(user=user)
    api = signed_in.post(
        reverse("api:image-list"),
        {"images": [SimpleUploadedFile("d.png", png)], "training_consent": "true"},
        HTTP_AUTHORIZATION=f"Token {token.key}",
    )
    assert api.status_code == 202 and api.json()["images"][0]["training_consent"] is True
    consent = dict(DigitImage.objects.values_list("original_name", "training_consent"))
    assert consent == {"a.png": True, "b.png": False, "c.png": True, "d.png": True}


# --- Download my data ----------------------------------------------------------------------


def test_download_my_data_holds_the_history_csv_and_every_file(
    signed_in, user, png, mnist, django_capture_on_commit_callbacks
):
    done = uploaded(user, png, consent=False, name="=cmd|calc.png")  # a hostile name stays harmless
    prediction_run(image_id=done.pk)
    waiting = uploaded(user, encode(mnist.test.images[3]), consent=True, name="drawing 2026-11-27 16:40.png")
    gone = uploaded(user, png, consent=False, name="lost.png")
    gone.file.storage.delete(gone.file.name)  # storage lost it: the rest still comes
    DigitImageFactory(owner=UserFactory(), data=b"not yours")
    history_link = f'href="{reverse("classifier:account_data")}"'
    assert history_link in signed_in.get(reverse("classifier:history")).content.decode()
    assert history_link in signed_in.get(reverse("classifier:account")).content.decode()

    response = signed_in.get(reverse("classifier:account_data"))
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith('attachment; filename="digitsite-data-')
    assert "no-cache" in response["Cache-Control"] or "no-store" in response["Cache-Control"]
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert archive.testzip() is None
    rows = list(csv.DictReader(io.StringIO(archive.read("history.csv").decode())))
    export = signed_in.get(reverse("classifier:history_export"))
    same = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert list(rows[0])[:-1] == same[0] and list(rows[0])[-1] == "file_in_zip"  # the history CSV, plus where
    assert [row["file_name"] for row in rows] == ["lost.png", "drawing 2026-11-27 16:40.png", "'=cmd|calc.png"]
    by_name = {row["file_name"]: row for row in rows}
    assert by_name["'=cmd|calc.png"]["digit"] == str(mnist.test.labels[0]) and by_name["'=cmd|calc.png"]["p7"]
    assert by_name["drawing 2026-11-27 16:40.png"]["status"] == "pending"
    assert archive.read(f"images/{done.pk}-=cmd_calc.png") == png
    assert by_name["'=cmd|calc.png"]["file_in_zip"] == f"images/{done.pk}-=cmd_calc.png"
    assert archive.read(f"images/{waiting.pk}-drawing 2026-11-27 16_40.png") == encode(mnist.test.images[3])
    names = archive.namelist()
    assert sorted(n for n in names if n.startswith("images/")) == sorted(
        [f"images/{done.pk}-=cmd_calc.png", f"images/{waiting.pk}-drawing 2026-11-27 16_40.png"]
    )
    readme = archive.read("README.txt").decode()
    assert f"images/{gone.pk}-lost.png" in readme and "could not be read" in readme


def test_download_my_data_keeps_memory_bounded_whatever_the_number_of_images(signed_in, user):
    count, size = 200, 100_000
    rng = np.random.default_rng(0)
    for i in range(count):
        DigitImageFactory(owner=user, data=rng.bytes(size), original_name=f"photo-{i}.jpg")

    def download() -> int:
        return sum(len(chunk) for chunk in signed_in.get(reverse("classifier:account_data")).streaming_content)

    download()  # once untraced: the modules a first request imports are not the download's memory
    tracemalloc.start()
    try:
        total = download()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total > count * size  # every file went through, stored as it is
    print(f"download of {count} images of {size // 1000} kB: {total / 1e6:.1f} MB streamed, peak {peak / 1e6:.2f} MB")
    assert peak < 3_000_000  # a few chunks and a page of rows, never the archive (20 MB)


# --- Deleting an account -------------------------------------------------------------------


@pytest.fixture
def account_with_data(user, mnist):
    """Three images (one corrected with consent, one corrected without), a token."""
    kept = classified_and_corrected(user, encode(255 - mnist.test.images[0]), consent=True, digit=2)
    dropped = classified_and_corrected(user, encode(255 - mnist.test.images[1]), consent=False, digit=5)
    plain = uploaded(user, encode(255 - mnist.test.images[2]), consent=True)
    api_token_create(user=user)
    return [kept, dropped, plain]


def test_the_account_page_explains_and_the_password_confirms(signed_in, user, account_with_data):
    nav = signed_in.get(reverse("classifier:home")).content.decode()
    assert f'href="{reverse("classifier:account")}"' in nav
    assert (
        f'href="{reverse("classifier:account_delete")}"'
        in signed_in.get(reverse("classifier:account")).content.decode()
    )
    page = " ".join(signed_in.get(reverse("classifier:account_delete")).content.decode().split())
    assert "your 3 images and their files, 2 predictions with the 28\N{MULTIPLICATION SIGN}28 pictures" in page
    assert "your API token: scripts that use it stop working" in page
    assert "staff corrected 1 of your images that you agreed" in page
    wrong = signed_in.post(reverse("classifier:account_delete"), {"password": "not it"})
    assert wrong.status_code == 400 and "That is not your password; nothing was deleted." in wrong.content.decode()
    assert get_user_model().objects.filter(pk=user.pk).exists() and DigitImage.objects.count() == 3


def test_deleting_the_account_deletes_everything_but_consented_corrections(
    signed_in, user, account_with_data, django_capture_on_commit_callbacks
):
    images = account_with_data
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in.post(reverse("classifier:account_delete"), {"password": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("classifier:home")
    page = response.content.decode()
    assert "Your account was deleted, with its 3 images and everything about them." in page
    assert "1 corrected image is kept as a 28x28 training example" in page
    assert not response.context["user"].is_authenticated  # signed out, on the landing page
    assert not get_user_model().objects.filter(pk=user.pk).exists()
    assert not DigitImage.objects.exists() and not Prediction.objects.exists() and not Flag.objects.exists()
    assert not Token.objects.exists()
    assert not any(file_exists(image) for image in images)
    assert TrainingExample.objects.get().correct_digit == 2
    assert signed_in.get(reverse("classifier:history")).status_code == 302  # the session is gone


def test_staff_may_delete_their_account_but_not_the_last_superuser(client, png, django_capture_on_commit_callbacks):
    staff = ReviewerFactory()
    flagged = uploaded(UserFactory(), png, consent=False)
    image_flag(image=flagged, correct_number="3", flagged_by=staff)
    with django_capture_on_commit_callbacks(execute=True):
        assert account_delete(user=staff).images == 0
    assert Flag.objects.get().flagged_by is None  # their corrections stay, without their name

    only = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(only)
    page = client.get(reverse("classifier:account_delete")).content.decode()
    assert "You are the only superuser" in page and "account-delete-confirm" not in page
    assert client.post(reverse("classifier:account_delete"), {"password": PASSWORD}).status_code == 200
    with pytest.raises(AccountDeleteRefused):
        account_delete(user=only)
    assert get_user_model().objects.filter(pk=only.pk).exists()
    UserFactory(is_staff=True, is_superuser=True)
    response = client.post(reverse("classifier:account_delete"), {"password": PASSWORD})
    assert response.status_code == 302 and not get_user_model().objects.filter(pk=only.pk).exists()


def test_the_admin_deletes_images_through_the_same_service(client, user, png, django_capture_on_commit_callbacks):
    image = uploaded(user, png, consent=False)
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    url = reverse("admin:classifier_digitimage_delete", args=[image.pk])
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(url, {"post": "yes"}).status_code == 302
    assert not DigitImage.objects.exists() and not file_exists(image)


def test_deleting_a_user_in_the_admin_deletes_their_files_too(client, user, mnist, django_capture_on_commit_callbacks):
    kept = classified_and_corrected(user, encode(255 - mnist.test.images[0]), consent=True, digit=4)
    plain = uploaded(user, encode(255 - mnist.test.images[1]), consent=False)
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    url = reverse("admin:auth_user_delete", args=[user.pk])
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(url, {"post": "yes"}).status_code == 302
    assert not get_user_model().objects.filter(pk=user.pk).exists()
    assert not file_exists(kept) and not file_exists(plain) and not DigitImage.objects.exists()
    assert TrainingExample.objects.get().correct_digit == 4


def test_the_admin_offers_no_delete_for_the_last_superuser(client):
    only = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(only)
    assert client.get(reverse("admin:auth_user_delete", args=[only.pk])).status_code == 403
    assert get_user_model().objects.filter(pk=only.pk).exists()


def test_the_admin_lists_kept_examples_with_their_picture(client, user, mnist, django_capture_on_commit_callbacks):
    image = classified_and_corrected(user, encode(255 - mnist.test.images[0]), consent=True, digit=6)
    with django_capture_on_commit_callbacks(execute=True):
        image_delete(image=image)
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    page = client.get(reverse("admin:classifier_trainingexample_changelist")).content.decode()
    assert "is a 6" in page and 'src="data:image/png;base64,' in page
