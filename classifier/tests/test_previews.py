"""The draw page's live answer: drawings in progress, read by a worker, never stored as uploads."""

import time
from datetime import timedelta

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from classifier.models import DigitImage, DrawingPreview
from classifier.services import PreviewError, drawing_preview_create, drawing_preview_run
from classifier.tests.conftest import broker_down
from classifier.tests.factories import UserFactory
from ml.tests.conftest import encode

pytestmark = pytest.mark.django_db


def canvas(mnist, index: int = 0) -> bytes:
    """An MNIST test digit as the canvas sends it: 280x280, dark ink on white, PNG."""
    digit = np.kron(mnist.test.images[index], np.ones((10, 10), dtype=np.uint8))
    return encode(255 - digit)


def test_a_drawing_replaces_the_same_persons_previous_one_and_no_one_elses(mnist):
    alice, bob = UserFactory(), UserFactory()
    first = drawing_preview_create(owner=alice, drawing=canvas(mnist))
    bobs = drawing_preview_create(owner=bob, drawing=canvas(mnist))
    second = drawing_preview_create(owner=alice, drawing=canvas(mnist, 1))
    assert set(DrawingPreview.objects.values_list("pk", flat=True)) == {bobs.pk, second.pk}
    assert drawing_preview_run(preview_id=first.pk) is None  # replaced: its task ends at once
    assert not DigitImage.objects.exists()  # a preview is never an upload


def test_old_previews_are_deleted_when_anyone_draws(mnist, settings):
    old = drawing_preview_create(owner=UserFactory(), drawing=canvas(mnist))
    DrawingPreview.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.DRAW_PREVIEW_KEEP_SECONDS + 1)
    )
    recent = drawing_preview_create(owner=UserFactory(), drawing=canvas(mnist))
    drawing_preview_create(owner=UserFactory(), drawing=canvas(mnist))
    assert not DrawingPreview.objects.filter(pk=old.pk).exists()
    assert DrawingPreview.objects.filter(pk=recent.pk).exists()


@pytest.mark.parametrize(
    ("drawing", "message"),
    [(b"GIF89a not a png", "Send the drawing as a PNG image."), (b"\x89PNG\r\n\x1a\n" + bytes(300_000), "larger than")],
)
def test_what_a_preview_refuses(drawing, message, settings):
    settings.DRAW_PREVIEW_MAX_BYTES = 200_000
    with pytest.raises(PreviewError, match=message):
        drawing_preview_create(owner=UserFactory(), drawing=drawing)
    assert not DrawingPreview.objects.exists()


def test_the_worker_reads_a_drawing_with_the_active_model(mnist):
    preview = drawing_preview_create(owner=UserFactory(), drawing=canvas(mnist))  # a 7
    done = drawing_preview_run(preview_id=preview.pk)
    answer = done.result
    assert done.is_finished and done.model_version.is_active and done.inference_ms > 0
    assert answer["digit"] == 7 and answer["verdict"] == "digit" and answer["confidence"] > 0.9
    assert sum(answer["probabilities"]) == pytest.approx(1, abs=1e-4)
    assert max(answer["probabilities"]) == answer["confidence"]
    finished_at = done.finished_at
    assert drawing_preview_run(preview_id=preview.pk).finished_at == finished_at  # idempotent


def number_canvas(mnist, indices: list[int]) -> bytes:
    """MNIST test digits side by side on the 280x280 canvas, dark ink on white, PNG."""
    row = np.hstack([part for i in indices for part in (mnist.test.images[i], np.zeros((28, 6), dtype=np.uint8))])
    side = row.shape[1] + 6
    square = np.zeros((side, side), dtype=np.uint8)
    top = (side - 28) // 2
    square[top : top + 28, 6:] = row
    scale = 280 // side
    return encode(255 - np.pad(np.kron(square, np.ones((scale, scale), dtype=np.uint8)), (0, 280 - scale * side)))


def test_the_worker_reads_a_number_drawn_side_by_side(mnist):
    preview = drawing_preview_create(owner=UserFactory(), drawing=number_canvas(mnist, [0, 1]))  # 7 then 2
    answer = drawing_preview_run(preview_id=preview.pk).result
    assert answer["number"] == "72" and answer["verdict"] in ("number", "unsure")
    assert [reading["digit"] for reading in answer["digits"]] == [7, 2]
    lefts = [reading["box"][0] for reading in answer["digits"]]
    assert lefts == sorted(lefts)
    weakest = min(answer["digits"], key=lambda reading: reading["confidence"])
    assert (answer["digit"], answer["confidence"]) == (weakest["digit"], weakest["confidence"])


def test_a_single_digit_drawing_carries_its_number_too(mnist):
    answer = drawing_preview_run(
        preview_id=drawing_preview_create(owner=UserFactory(), drawing=canvas(mnist)).pk
    ).result
    assert answer["number"] == "7" and len(answer["digits"]) == 1 and answer["verdict"] == "digit"


def test_a_drawing_that_cannot_be_read_gets_the_reason(mnist):
    cut_short = canvas(mnist)[:60]  # its header whole, its pixels cut off
    preview = drawing_preview_create(owner=UserFactory(), drawing=cut_short)
    assert "error" in drawing_preview_run(preview_id=preview.pk).result


def blank_drawing(side: int) -> bytes:
    """A white ``side`` x ``side`` drawing: 72 KB as PNG at 8000x8000, within the byte limit."""
    return encode(np.full((side, side), 255, dtype=np.uint8))


def test_a_drawing_larger_than_any_canvas_is_refused_from_its_header(signed_in, settings):
    """Issue 42: an 8000x8000 drawing of 140 KB took a worker to 2 GB, the live answer having no
    pixel limit of its own. The 280x280 canvas drawn at three device pixels to one is 840x840;
    up to 2 megapixels is read, anything larger refused before any worker sees it."""
    drawing = blank_drawing(8000)
    assert len(drawing) < settings.DRAW_PREVIEW_MAX_BYTES
    started = time.process_time()
    response = post(signed_in, drawing)
    assert time.process_time() - started < 0.5
    assert response.status_code == 400
    assert response.json() == {
        "error": "The drawing is 8000x8000 pixels; the live answer reads drawings of up to 2 megapixels."
    }
    assert not DrawingPreview.objects.exists()
    assert post(signed_in, blank_drawing(1414)).status_code == 202  # 1.999 megapixels
    assert post(signed_in, blank_drawing(1415)).status_code == 400


def test_the_worker_checks_a_drawings_size_before_decoding_it():
    """A drawing stored without the page's check is refused by the worker from its header too."""
    preview = DrawingPreview.objects.create(owner=UserFactory(), drawing=blank_drawing(8000))
    started = time.process_time()
    done = drawing_preview_run(preview_id=preview.pk)
    assert time.process_time() - started < 0.5
    assert done.is_finished and "live answer reads drawings of up to 2 megapixels" in done.result["error"]


# --- The pages ----------------------------------------------------------------------------------


def post(client, drawing: bytes):
    return client.post(reverse("classifier:draw_preview"), {"drawing": SimpleUploadedFile("drawing.png", drawing)})


def test_the_live_answer_through_the_pages(signed_in, user, mnist):
    response = post(signed_in, canvas(mnist, 1))  # a 2
    assert response.status_code == 202
    url = response.json()["url"]
    assert signed_in.get(url).status_code == 202  # no worker has read it yet

    drawing_preview_run(preview_id=DrawingPreview.objects.get(owner=user).pk)
    response = signed_in.get(url)
    assert response.status_code == 200 and response["Cache-Control"].startswith("max-age=0")
    html = response.content.decode()
    assert 'data-digit="2"' in html and 'data-verdict="digit"' in html
    assert html.count('class="live-bar-fill"') == 10

    # Another person, or the same person after drawing on: nothing to see.
    other = UserFactory()
    signed_in.force_login(other)
    assert signed_in.get(url).status_code == 404
    signed_in.force_login(user)
    post(signed_in, canvas(mnist, 2))
    assert signed_in.get(url).status_code == 404


def test_the_live_answer_shows_a_number_and_each_digit(signed_in, user, mnist):
    url = post(signed_in, number_canvas(mnist, [0, 1])).json()["url"]
    drawing_preview_run(preview_id=DrawingPreview.objects.get(owner=user).pk)
    html = signed_in.get(url).content.decode()
    assert 'data-number="72"' in html and ">72</span>" in html
    assert html.count('<li class="live-reading') == 2 and "live-bar-fill" not in html


def test_the_pages_refuse_what_is_not_a_drawing_with_a_message(signed_in, settings):
    assert signed_in.post(reverse("classifier:draw_preview")).json() == {"error": "No drawing was sent."}
    response = post(signed_in, encode(np.zeros((8, 8), dtype=np.uint8))[:-20])  # cut short: the worker says so
    assert response.status_code == 202
    response = post(signed_in, b"not an image at all")
    assert response.status_code == 400 and response.json()["error"] == "Send the drawing as a PNG image."
    settings.DRAW_PREVIEW_MAX_BYTES = 100
    response = post(signed_in, encode(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)))
    assert response.status_code == 400 and "too large" in response.json()["error"]


def test_a_broker_that_cannot_be_reached_answers_the_preview_with_a_reason(
    signed_in, mnist, django_capture_on_commit_callbacks
):
    with broker_down(), django_capture_on_commit_callbacks(execute=True):
        response = post(signed_in, canvas(mnist))
    assert response.status_code == 202
    html = signed_in.get(response.json()["url"]).content.decode()
    assert "The live answer is not available right now." in html


# --- With a real worker -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_answers_a_drawing_in_progress(client, worker, mnist):
    user = UserFactory()
    client.force_login(user)
    url = post(client, canvas(mnist, 1)).json()["url"]
    deadline = time.monotonic() + 90  # the worker loads the model first
    while (response := client.get(url)).status_code == 202:
        assert time.monotonic() < deadline, f"no live answer; see {worker.log_path}"
        assert worker.poll() is None, f"the worker died; see {worker.log_path}"
        time.sleep(0.05)
    assert response.status_code == 200 and 'data-digit="2"' in response.content.decode()
    assert not DigitImage.objects.exists()


def test_live_answers_are_rate_limited_per_person_with_a_reason(signed_in, client, mnist, settings):
    """A person (or a script) sending drawings faster than DRAW_PREVIEW_RATE_PER_WINDOW in the
    window gets 429 with the reason and when to come back; others draw on."""
    from classifier.tests.factories import UserFactory

    settings.DRAW_PREVIEW_RATE_PER_WINDOW = 5
    for _ in range(5):
        assert post(signed_in, canvas(mnist)).status_code == 202
    response = post(signed_in, canvas(mnist))
    assert response.status_code == 429 and response["Retry-After"] == str(settings.DRAW_PREVIEW_RATE_WINDOW_SECONDS)
    assert "live answer is paused" in response.json()["error"]
    signed_in.logout()
    signed_in.force_login(UserFactory())
    assert post(signed_in, canvas(mnist)).status_code == 202


def test_a_dot_grid_drawn_is_answered_at_once(signed_in, user, mnist):
    """Issue 42's 440-byte PNG of 15,000 specks held the only classifying worker for minutes:
    its live answer now costs milliseconds, in ``auto`` and when a number is asked for."""
    from ml.tests.test_bounded_reading import CPU_BOUND, ISSUE_GRID

    drawing_preview_run(preview_id=drawing_preview_create(owner=user, drawing=canvas(mnist)).pk)  # the model loads
    url = post(signed_in, ISSUE_GRID).json()["url"]
    started = time.process_time()
    drawing_preview_run(preview_id=DrawingPreview.objects.get(owner=user).pk)
    assert time.process_time() - started < CPU_BOUND
    assert signed_in.get(url).status_code == 200
    number = drawing_preview_create(owner=user, drawing=ISSUE_GRID, reading=DrawingPreview.Reading.NUMBER)
    started = time.process_time()
    answer = drawing_preview_run(preview_id=number.pk).result
    assert time.process_time() - started < CPU_BOUND
    assert "too many separate marks" in answer["error"]


def test_the_live_answer_says_what_a_non_digit_looks_like_in_one_sentence():
    """The reason is a sentence of its own ("…: it looks like a photo of something else."), never
    wrapped in brackets with its full stop inside them."""
    from django.template.loader import render_to_string

    from ml.serving.verdicts import REASONS

    answer = {"digit": 1, "verdict": "not_a_digit", "reason": REASONS["photo"], "confidence": 0.4}
    html = render_to_string("classifier/_live_answer.html", {"answer": answer, "bars": [], "readings": []})
    text = " ".join(html.split())
    assert "This does not look like a digit: it looks like a photo of something else. Best guess" in text
    assert ".)" not in text and "(it looks" not in text
    bare = render_to_string("classifier/_live_answer.html", {"answer": answer | {"reason": ""}, "bars": []})
    assert "This does not look like a digit. Best guess" in " ".join(bare.split())
