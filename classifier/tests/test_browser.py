"""Journeys through the site in real Chromium (Playwright), against a live server and a real
Celery worker. Each journey saves screenshots to ``docs/screenshots`` (``make screenshots``
regenerates the ones the README shows)."""

import os
import re
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command

from classifier.models import DigitImage, Flag, ModelVersion
from classifier.tests.factories import ModelVersionFactory, UserFactory
from ml.synth import render_upload
from ml.tests.conftest import encode

# Playwright's sync API runs an event loop in this thread; Django's ORM calls from the test
# body are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

playwright = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(os.environ.get("SCREENSHOT_DIR", REPO / "var" / "screenshots"))
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Chromium is not installed at {CHROMIUM}; .ci/run installs it")
        pytest.skip("Chromium is not installed")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def log_in(page, username: str, password: str = PASSWORD) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/$"))


def digit_files(tmp_path, mnist) -> list[Path]:
    """A clean digit, a photo-like dark-on-light digit and a transparent canvas drawing."""
    rng = np.random.default_rng(4)
    clean = tmp_path / "clean-7.png"
    clean.write_bytes(encode(mnist.test.images[0]))  # a 7
    photo = tmp_path / "photo-2.jpg"
    photo.write_bytes(render_upload(mnist.test.images[1], scenario="photo", rng=rng).data)  # a 2
    canvas = tmp_path / "canvas-1.png"
    canvas.write_bytes(render_upload(mnist.test.images[2], scenario="canvas", rng=rng).data)  # a 1
    return [clean, photo, canvas]


def wait_for_cards(page, count: int) -> None:
    """Every card shows a digit (or a failure): htmx swapped them in without a reload."""
    page.wait_for_function(
        "n => document.querySelectorAll('.digit-card').length === n && "
        "[...document.querySelectorAll('.digit-card')].every(c => ['done', 'failed'].includes(c.dataset.status))",
        arg=count,
        timeout=90_000,
    )


def test_sign_up_log_out_and_log_in_again(page):
    page.goto("/")
    assert "/accounts/login/" in page.url  # anonymous visitors are sent to log in
    page.get_by_role("link", name="Sign up").click()
    page.get_by_label("Username").fill("grace")
    page.locator("#id_password1").fill(PASSWORD)
    page.locator("#id_password2").fill(PASSWORD)
    shot(page, "01-sign-up")
    page.get_by_role("button", name="Sign up").click()
    page.get_by_text("Welcome, grace!").wait_for()
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/accounts/login/$"))
    assert page.goto("/history/").url.endswith("/accounts/login/?next=/history/")
    log_in(page, "grace")
    assert page.get_by_role("heading", name="Your gallery").is_visible()


def test_upload_three_and_watch_them_classified(page, worker, tmp_path, mnist):
    user = UserFactory()
    log_in(page, user.username)
    page.get_by_label("Digit images").set_input_files([str(p) for p in digit_files(tmp_path, mnist)])
    page.get_by_role("button", name="Upload and classify").click()
    page.get_by_text("3 images uploaded").wait_for()
    loaded_at = page.evaluate("performance.timeOrigin")
    wait_for_cards(page, 3)
    assert page.evaluate("performance.timeOrigin") == loaded_at  # no reload
    digits = page.locator(".predicted-digit").all_inner_texts()
    assert sorted(digits) == ["1", "2", "7"]
    shot(page, "02-gallery")

    page.locator(".digit-card", has_text="photo-2.jpg").click()
    page.locator("#predicted-digit").wait_for()
    assert page.locator("#predicted-digit").inner_text() == "2"
    page.wait_for_function("document.querySelector('img.model-input').complete")
    assert page.locator("img.model-input").evaluate("img => img.naturalWidth") == 224
    assert page.locator(".bar-row").count() == 10
    shot(page, "02-detail")


def test_a_broken_file_gets_a_message_and_the_rest_are_classified(page, worker, tmp_path, mnist):
    user = UserFactory()
    log_in(page, user.username)
    broken = tmp_path / "holiday.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this JPEG stops here")
    files = [*digit_files(tmp_path, mnist)[:2], broken]
    page.get_by_label("Digit images").set_input_files([str(p) for p in files])
    page.get_by_role("button", name="Upload and classify").click()
    page.get_by_text("holiday.jpg: This file is not an image we can read").wait_for()
    wait_for_cards(page, 2)
    assert sorted(page.locator(".predicted-digit").all_inner_texts()) == ["2", "7"]
    shot(page, "03-refused-file")


def test_another_user_cannot_open_the_image_or_its_file(page, worker, tmp_path, mnist):
    owner = UserFactory()
    log_in(page, owner.username)
    page.get_by_label("Digit images").set_input_files([str(digit_files(tmp_path, mnist)[0])])
    page.get_by_role("button", name="Upload and classify").click()
    wait_for_cards(page, 1)
    image = DigitImage.objects.get(owner=owner)
    page.get_by_role("button", name="Log out").click()

    log_in(page, UserFactory().username)
    assert page.goto(f"/images/{image.pk}/").status == 404
    assert page.goto(f"/images/{image.pk}/file/").status == 404
    shot(page, "04-not-yours")


def test_staff_flag_in_the_admin_then_retrain(page, worker, tmp_path, mnist, settings, tiny_model_dir):
    settings.RETRAIN_TRAIN_LIMIT = 2000
    settings.RETRAIN_TEST_LIMIT = 1000
    settings.RETRAIN_EPOCHS = 1
    settings.MODEL_VERSIONS_DIR = tmp_path / "versions"
    user = UserFactory()
    log_in(page, user.username)
    page.get_by_label("Digit images").set_input_files([str(p) for p in digit_files(tmp_path, mnist)])
    page.get_by_role("button", name="Upload and classify").click()
    wait_for_cards(page, 3)
    page.get_by_role("button", name="Log out").click()

    staff = UserFactory(is_staff=True, is_superuser=True)
    log_in(page, staff.username)
    page.goto("/admin/classifier/digitimage/")
    page.locator("tr", has_text="photo-2.jpg").locator("input.action-select").check()
    page.locator("select[name=action]").select_option("flag_selected")
    page.get_by_role("button", name="Go").click()
    page.get_by_text("really show").wait_for()
    page.get_by_label("Correct digit").select_option("3")
    page.get_by_label("Note").fill("the loop is closed: a 3")
    shot(page, "05-admin-flag")
    page.get_by_role("button", name="Flag with this digit").click()
    page.get_by_text("Flagged 1 image as 3").wait_for()
    flag = Flag.objects.get()
    assert (flag.correct_digit, flag.flagged_by) == (3, staff)

    # Retrain from a small model, sized for a test, as `manage.py retrain` does.
    tiny = ModelVersionFactory(architecture="basic", path=str(tiny_model_dir))
    call_command("activate_model", str(tiny.number), stdout=StringIO())
    call_command("retrain", "--force", stdout=StringIO())
    newest = ModelVersion.objects.order_by("-number").first()
    assert newest.parent == tiny
    page.goto("/admin/classifier/modelversion/")
    row = page.locator("tr", has=page.locator(f"th a:text-is('{newest.number}')"))
    assert row.count() == 1
    shot(page, "05-model-versions")


def test_pages_fit_a_phone_and_upload_works_there(browser, live_server, worker, tmp_path, mnist):
    context = browser.new_context(
        base_url=live_server.url,
        viewport={"width": 375, "height": 740},
        is_mobile=True,
        has_touch=True,
        device_scale_factor=2,
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    user = UserFactory()
    log_in(page, user.username)
    page.get_by_label("Digit images").set_input_files([str(digit_files(tmp_path, mnist)[1])])
    page.get_by_role("button", name="Upload and classify").click()
    wait_for_cards(page, 1)
    for path in ("/", "/history/", DigitImage.objects.get(owner=user).get_absolute_url()):
        page.goto(path)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{path} overflows a 375 px screen by {overflow} px"
    shot(page, "06-phone-detail")
    page.goto("/")
    shot(page, "06-phone-gallery")
    context.close()
