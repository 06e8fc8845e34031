"""The REST API: every endpoint, its permissions, throttling, and a schemathesis run."""

import numpy as np
import pytest
import schemathesis
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from classifier.api.views import UploadThrottle
from classifier.models import DigitImage, Feedback, Prediction
from classifier.services import model_version_ensure_initial, prediction_run
from classifier.tests.factories import DigitImageFactory, ReviewerFactory, UserFactory
from ml.tests.conftest import encode

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    cache.clear()  # throttling counts live in the cache; each test starts from zero


@pytest.fixture
def user():
    return UserFactory()


@pytest.fixture
def api(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def png(mnist):
    return encode(255 - mnist.test.images[0])  # a 7


def classified(owner, png):
    image = DigitImageFactory(owner=owner, data=png)
    prediction_run(image_id=image.pk)
    image.refresh_from_db()
    return image


def test_without_credentials_every_endpoint_answers_401(png):
    image = DigitImageFactory(data=png)
    client = APIClient()
    for method, url in [
        ("get", reverse("api:image-list")),
        ("post", reverse("api:image-list")),
        ("get", reverse("api:image-detail", args=[image.pk])),
        ("get", reverse("api:image-file", args=[image.pk])),
        ("post", reverse("api:image-feedback", args=[image.pk])),
        ("get", reverse("api:model-list")),
    ]:
        response = getattr(client, method)(url)
        assert response.status_code == 401, url
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert bad.get(reverse("api:image-list")).status_code == 401


def test_upload_one_or_many_answers_202_with_ids_and_per_file_errors(
    api, user, png, django_capture_on_commit_callbacks
):
    files = [SimpleUploadedFile("a.png", png), SimpleUploadedFile("b.png", png), SimpleUploadedFile("c.png", b"text")]
    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post(reverse("api:image-list"), {"images": files}, format="multipart")
    assert response.status_code == 202
    body = response.json()
    assert [image["original_name"] for image in body["images"]] == ["a.png", "b.png"]
    first = body["images"][0]
    assert first["status"] == "pending" and first["prediction"] is None
    assert first["url"] == f"http://testserver/api/v1/images/{first['id']}/"
    assert body["errors"] == [
        {"file": "c.png", "error": "This file is not an image we can read (PNG, JPEG, GIF, BMP, WEBP, TIFF or HEIC)."}
    ]
    assert DigitImage.objects.filter(owner=user).count() == 2
    assert len(callbacks) == 1  # both queued once the upload is committed

    refused = api.post(reverse("api:image-list"), {"images": [SimpleUploadedFile("e.png", b"")]}, format="multipart")
    assert refused.status_code == 400 and refused.json() == {
        "images": [],
        "errors": [{"file": "e.png", "error": "The file is empty."}],
    }
    assert api.post(reverse("api:image-list"), {}, format="multipart").status_code == 400


def test_status_and_prediction_of_an_image(api, user, png):
    pending = DigitImageFactory(owner=user, data=png)
    body = api.get(reverse("api:image-detail", args=[pending.pk])).json()
    assert body["status"] == "pending" and body["prediction"] is None and body["error"] == ""

    done = classified(user, png)
    body = api.get(reverse("api:image-detail", args=[done.pk])).json()
    assert body["status"] == "done"
    prediction = body["prediction"]
    assert prediction["digit"] == 7 and prediction["model_version"] == 1
    assert len(prediction["probabilities"]) == 10 and sum(prediction["probabilities"]) == pytest.approx(1, abs=1e-4)
    assert prediction["confidence"] == max(prediction["probabilities"])

    file = api.get(body["file_url"])
    assert file.status_code == 200 and file["Content-Type"] == "image/png"
    assert b"".join(file.streaming_content) == png


def test_a_prediction_carries_its_number_and_each_digit_with_its_box(api, user, mnist):
    image = classified(user, encode(255 - np.pad(np.hstack([mnist.test.images[0], mnist.test.images[1]]), 10)))
    prediction = api.get(reverse("api:image-detail", args=[image.pk])).json()["prediction"]
    assert prediction["number"] == "72" and prediction["verdict"] in ("number", "unsure")
    digits = prediction["digits"]
    assert [d["digit"] for d in digits] == [7, 2] and all(len(d["probabilities"]) == 10 for d in digits)
    assert [len(d["box"]) for d in digits] == [4, 4] and digits[0]["box"][0] < digits[1]["box"][0]
    weakest = min(digits, key=lambda d: d["confidence"])
    assert (prediction["digit"], prediction["confidence"]) == (weakest["digit"], weakest["confidence"])
    assert [i["id"] for i in api.get(reverse("api:image-list"), {"number": "2"}).json()["results"]] == [image.pk]
    assert api.get(reverse("api:image-list"), {"number": "2x"}).status_code == 400


def test_feedback_and_flags_on_a_number_as_strings_of_digits(api, user, mnist):
    from classifier.services import image_flag

    image = classified(user, encode(255 - np.pad(np.hstack([mnist.test.images[0], mnist.test.images[1]]), 10)))
    url = reverse("api:image-feedback", args=[image.pk])
    response = api.post(url, {"number": "721"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json() | {"image": 0} == {
        "image": 0,
        "suggested_digit": None,
        "suggested_number": "721",
        "not_a_digit": False,
        "predicted_digit": Prediction.objects.get(image=image).digit,
        "predicted_number": "72",
        "confirmed": False,
    }
    assert api.post(url, {"number": "72"}, format="json").status_code == 400  # what it already reads
    for refused in ({"number": "7a"}, {"number": "1" * 13}, {"digit": 1, "number": "1"}, {}):
        assert api.post(url, refused, format="json").status_code == 400, refused
    image_flag(image=image, correct_number="721", flagged_by=ReviewerFactory())
    detail = api.get(reverse("api:image-detail", args=[image.pk])).json()
    assert (detail["your_feedback"], detail["your_feedback_number"]) == (None, "721")
    assert (detail["flagged_as"], detail["flagged_number"], detail["flagged_not_a_digit"]) == (None, "721", False)


def test_a_prediction_made_before_numbers_is_its_one_digit_without_a_box(api, user, png):
    image = classified(user, png)
    Prediction.objects.filter(image=image).update(digits=[])
    prediction = api.get(reverse("api:image-detail", args=[image.pk])).json()["prediction"]
    assert prediction["number"] == "7"
    assert [(d["digit"], d["box"], d["verdict"]) for d in prediction["digits"]] == [(7, None, prediction["verdict"])]


def test_other_users_images_answer_404_and_staff_see_them(api, png):
    stranger_image = classified(UserFactory(), png)
    for name in ("api:image-detail", "api:image-file"):
        assert api.get(reverse(name, args=[stranger_image.pk])).status_code == 404
    assert api.post(reverse("api:image-feedback", args=[stranger_image.pk]), {"digit": 1}).status_code == 404
    staff = APIClient()
    staff.force_authenticate(ReviewerFactory())
    assert staff.get(reverse("api:image-detail", args=[stranger_image.pk])).status_code == 200
    assert staff.post(reverse("api:image-feedback", args=[stranger_image.pk]), {"digit": 1}).status_code == 404


def test_list_is_the_callers_history_with_its_filters_and_pages(api, user, png, mnist):
    seven = classified(user, png)
    two = classified(user, encode(255 - mnist.test.images[1]))
    DigitImageFactory(owner=user, data=png)  # pending
    classified(UserFactory(), png)  # someone else's

    body = api.get(reverse("api:image-list")).json()
    assert body["count"] == 3 and body["next"] is None
    assert {image["id"] for image in body["results"]} >= {seven.pk, two.pk}
    assert [i["id"] for i in api.get(reverse("api:image-list"), {"digit": 2}).json()["results"]] == [two.pk]
    assert api.get(reverse("api:image-list"), {"status": "pending"}).json()["count"] == 1
    assert api.get(reverse("api:image-list"), {"digit": 12}).status_code == 400
    assert api.get(reverse("api:image-list"), {"page": 2}).status_code == 404


def test_feedback_is_recorded_and_the_prediction_stays(api, user, png):
    image = classified(user, png)
    url = reverse("api:image-feedback", args=[image.pk])
    response = api.post(url, {"digit": 1}, format="json")
    assert response.status_code == 200
    assert response.json() == {
        "image": image.pk,
        "suggested_digit": 1,
        "suggested_number": "1",
        "not_a_digit": False,
        "predicted_digit": 7,
        "predicted_number": "7",
        "confirmed": False,
    }
    assert Feedback.objects.get(image=image).suggested_digit == 1
    assert Prediction.objects.get(image=image).digit == 7
    detail = api.get(reverse("api:image-detail", args=[image.pk])).json()
    assert (detail["your_feedback"], detail["your_feedback_number"]) == (1, "1")

    assert api.post(url, {"digit": 7}, format="json").status_code == 400  # what the model already says
    assert api.post(url, {"digit": 10}, format="json").status_code == 400
    pending = DigitImageFactory(owner=user, data=png)
    response = api.post(reverse("api:image-feedback", args=[pending.pk]), {"digit": 1}, format="json")
    assert response.status_code == 400 and "no prediction yet" in response.json()["detail"]


def test_feedback_says_an_image_is_not_a_digit(api, user, png):
    image = classified(user, png)
    url = reverse("api:image-feedback", args=[image.pk])
    response = api.post(url, {"not_a_digit": True}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json() | {"image": 0, "predicted_digit": 0} == {
        "image": 0,
        "suggested_digit": None,
        "suggested_number": "",
        "not_a_digit": True,
        "predicted_digit": 0,
        "predicted_number": "7",
        "confirmed": False,
    }
    detail = api.get(reverse("api:image-detail", args=[image.pk])).json()
    assert (detail["your_feedback"], detail["your_feedback_number"], detail["your_feedback_not_a_digit"]) == (
        None,
        None,
        True,
    )
    for both in ({"not_a_digit": True, "digit": 1}, {"not_a_digit": False}, {}):
        response = api.post(url, both, format="json")
        assert response.status_code == 400 and "one of digit, number or not_a_digit" in str(response.json()), both


def test_model_versions_say_which_is_active(api):
    model_version_ensure_initial()
    versions = api.get(reverse("api:model-list")).json()
    assert versions[0]["number"] == 1 and versions[0]["is_active"] is True
    assert versions[0]["architecture"] == "deep" and versions[0]["test_accuracy"] >= 0.996


def test_uploads_are_throttled_per_user(api, png, monkeypatch):
    monkeypatch.setattr(UploadThrottle, "THROTTLE_RATES", {"uploads": "2/minute"})
    url = reverse("api:image-list")
    for _ in range(2):
        assert api.post(url, {"images": [SimpleUploadedFile("a.png", png)]}, format="multipart").status_code == 202
    response = api.post(url, {"images": [SimpleUploadedFile("a.png", png)]}, format="multipart")
    assert response.status_code == 429 and "Retry-After" in response
    assert api.get(url).status_code == 200  # reading is not throttled
    other = APIClient()
    other.force_authenticate(UserFactory())
    assert other.post(url, {"images": [SimpleUploadedFile("a.png", png)]}, format="multipart").status_code == 202


def test_a_request_over_the_size_limit_gets_413(api, png, settings):
    settings.UPLOAD_MAX_REQUEST_BYTES = 1000
    response = api.post(
        reverse("api:image-list"), {"images": [SimpleUploadedFile("a.png", png + bytes(5000))]}, format="multipart"
    )
    assert response.status_code == 413 and "one upload can carry at most" in response.json()["detail"]


def test_tokens_are_created_replaced_and_revoked_on_the_site(client, user):
    client.force_login(user)
    page = reverse("classifier:api_token")
    assert "You have no API token." in client.get(page).content.decode()
    client.post(page, {"action": "create"})
    first = Token.objects.get(user=user).key
    assert first in client.get(page).content.decode()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {first}")
    assert api.get(reverse("api:image-list")).status_code == 200

    client.post(page, {"action": "create"})
    assert api.get(reverse("api:image-list")).status_code == 401  # the old one stops working
    second = Token.objects.get(user=user).key
    client.post(page, {"action": "revoke"})
    api.credentials(HTTP_AUTHORIZATION=f"Token {second}")
    assert api.get(reverse("api:image-list")).status_code == 401
    assert not Token.objects.filter(user=user).exists()


def test_schema_and_offline_documentation_are_served_to_signed_in_users(client, user, api):
    assert client.get(reverse("api:schema"), HTTP_ACCEPT="application/json").status_code == 401
    docs = client.get(reverse("api:docs"))
    assert docs.status_code == 302 and docs["Location"].startswith(reverse("login"))
    assert api.get(reverse("api:schema"), HTTP_ACCEPT="application/json").status_code == 200  # a token will do
    client.force_login(user)
    schema = client.get(reverse("api:schema"), HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/api/v1/images/", "/api/v1/images/{id}/", "/api/v1/images/{id}/feedback/", "/api/v1/models/"} <= set(paths)
    docs = client.get(reverse("api:docs")).content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in docs
    assert "cdn.jsdelivr" not in docs and "unpkg.com" not in docs
    bundle = client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert bundle.status_code == 200  # served by this site, so the page works offline


# --- schemathesis: generated requests against the schema, in process ------------------------


def _schema():
    """The schema the app serves, read in-process; generated requests go to the WSGI app.

    The schema needs a signed-in user, and no database is open while tests are collected: the
    request is authenticated as an unsaved user, which touches no table."""
    from django.contrib.auth import get_user_model
    from django.urls import resolve
    from rest_framework.test import APIRequestFactory, force_authenticate

    from digitsite.wsgi import application

    request = APIRequestFactory().get("/api/schema/", {"format": "json"})
    force_authenticate(request, user=get_user_model()(username="schemathesis"))
    response = resolve("/api/schema/").func(request)
    assert response.status_code == 200, response.data
    loaded = schemathesis.openapi.from_dict(response.data)
    loaded.app = application
    return loaded


schema = _schema()


@pytest.fixture
def _connection_stays_open():
    """As Django's test client does: a request must not close the test's database connection."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def schemathesis_token(png):
    owner = UserFactory()
    for _ in range(2):
        classified(owner, png)
    return Token.objects.create(user=owner).key


@pytest.mark.slow
@pytest.mark.usefixtures("_connection_stays_open")
@schema.parametrize()
@hypothesis_settings(
    max_examples=100,
    derandomize=True,  # the same examples every run: CI never fails by chance
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_the_api_matches_its_schema_and_never_fails(case, schemathesis_token, monkeypatch):
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    monkeypatch.setattr(UploadThrottle, "THROTTLE_RATES", {"uploads": "10000/minute"})
    case.call_and_validate(
        headers={"Authorization": f"Token {schemathesis_token}"},
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
    )


def test_reading_is_taken_at_upload_returned_and_a_filter(api, user, png):
    upload = {"images": [SimpleUploadedFile("n.png", png)], "reading": "number"}
    number = api.post(reverse("api:image-list"), upload, format="multipart")
    assert number.status_code == 202 and number.json()["images"][0]["reading"] == "number"
    auto = api.post(reverse("api:image-list"), {"images": [SimpleUploadedFile("a.png", png)]}, format="multipart")
    assert auto.json()["images"][0]["reading"] == "auto"
    refused = api.post(
        reverse("api:image-list"), {"images": [SimpleUploadedFile("x.png", png)], "reading": "two"}, format="multipart"
    )
    assert refused.status_code == 400
    assert refused.json()["errors"] == [{"file": "", "error": "reading is auto, digit or number, not two."}]
    listed = api.get(reverse("api:image-list"), {"reading": "number"}).json()
    assert [image["original_name"] for image in listed["results"]] == ["n.png"]
    assert api.get(reverse("api:image-list"), {"reading": "several"}).status_code == 400


def test_text_in_the_images_field_gets_a_message_a_person_understands(api):
    response = api.post("/api/v1/images/", {"images": "not a file"}, format="multipart")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert errors == [{"file": "", "error": "`images` must be files sent as multipart/form-data, not text."}]


def test_a_refused_value_is_never_echoed_back_whole(api, png):
    """Issue 42: a 100 KB invalid `reading` came back whole in the refusal. The answer quotes
    only its start and says which values are accepted; the same for a history filter."""
    huge = "x" * 100_000
    upload = {"images": [SimpleUploadedFile("x.png", png)], "reading": huge}
    refused = api.post(reverse("api:image-list"), upload, format="multipart")
    assert refused.status_code == 400 and len(refused.content) < 1_000
    assert refused.json()["errors"] == [
        {"file": "", "error": "reading is auto, digit or number, not xxxxxxxxxxxxxxxxxxx…."}
    ]
    listed = api.get(reverse("api:image-list"), {"reading": huge, "status": huge})
    assert listed.status_code == 400 and len(listed.content) < 1_000
    assert listed.json()["reading"] == [
        "Select a valid choice. xxxxxxxxxxxxxxxxxxx… is not one of the available choices. "
        "Accepted: auto, digit, number."
    ]
    assert not DigitImage.objects.exists()
