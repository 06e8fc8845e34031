"""Journeys through the site in real Chromium (Playwright), against a live server and a real
Celery worker. Each journey saves screenshots to ``docs/screenshots`` (``make screenshots``
regenerates the ones the README shows)."""

import os
import re
import time
import zipfile
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command

from classifier.models import DigitImage, Flag, ModelVersion, Prediction, RetrainRun
from classifier.tests.conftest import Worker, _database_url, broker
from classifier.tests.factories import DigitImageFactory, ModelVersionFactory, ReviewerFactory, UserFactory
from classifier.tests.test_selectors import flag, predicted
from classifier.tests.test_training_apart import _procfile_queues
from ml.fitting.synth import render_upload
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
def chromium():
    """Playwright's handle on Debian's Chromium; it launches browsers with the flags we need."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Chromium is not installed at {CHROMIUM}; .ci/run installs it")
        pytest.skip("Chromium is not installed")
    with playwright.sync_playwright() as p:
        yield lambda *flags: p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                *flags,
            ],
        )


@pytest.fixture(scope="module")
def browser(chromium):
    browser = chromium()
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def module_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    """One real worker for the journeys of this module (a worker's start, TensorFlow and the
    model, costs more than most journeys), on the broker this environment configures, sharing
    the test database and the uploads' folder; each test empties the database after itself."""
    from django.conf import settings

    from classifier.models import WorkerHeartbeat

    folder = tmp_path_factory.mktemp("browser-worker")
    kind = "redis" if os.environ.get("CELERY_BROKER_URL", "").startswith("redis") else "embedded"
    with broker(kind, folder / "broker") as broker_env, django_db_blocker.unblock():
        env = (
            os.environ
            | broker_env
            | {
                "DATABASE_URL": _database_url(),
                "MEDIA_ROOT": str(folder / "shared-media"),
                "MODEL_CACHE_DIR": str(folder / "worker-model-cache"),
                "SHIPPED_MODEL_DIR": str(settings.SHIPPED_MODEL_DIR),
                "RETRAIN_CACHE_DIR": str(REPO / "var" / "retrain-cache"),
                "TF_CPP_MIN_LOG_LEVEL": "2",
            }
            | ({"MNIST_DATA_DIR": os.environ["MNIST_DATA_DIR"]} if os.environ.get("MNIST_DATA_DIR") else {})
        )
        worker = Worker(env, folder / "worker.log").start()
        try:
            deadline = time.monotonic() + 180
            while not WorkerHeartbeat.objects.filter(ready_at__isnull=False).exists():
                assert time.monotonic() < deadline and worker.poll() is None, f"see {worker.log_path}"
                time.sleep(0.3)
            worker.hostname = WorkerHeartbeat.objects.get().hostname
            yield worker
        finally:
            worker.stop()
            call_command("flush", interactive=False, verbosity=0)  # what it wrote after the last test


@pytest.fixture
def worker_env(module_worker, settings) -> dict:
    settings.MEDIA_ROOT = module_worker.env["MEDIA_ROOT"]
    return module_worker.env


@pytest.fixture
def worker(module_worker, worker_env):
    """The module's worker, ready as it was when the test began: the database it recorded that
    in was emptied after the test before."""
    from classifier.queueing import worker_ready_record

    assert module_worker.poll() is None, f"the worker died; see {module_worker.log_path}"
    worker_ready_record(hostname=module_worker.hostname)
    return module_worker


# Chromium reports each Content-Security-Policy refusal as a console error, and the page
# fires `securitypolicyviolation`; Playwright's init script runs outside the page's policy.
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => window.__cspViolations.push(
  `${e.violatedDirective} blocked ${e.blockedURI || 'inline'} on ${e.documentURI}`));
"""


def csp_violations(page, console: list[str]) -> list[str]:
    return [*console, *page.evaluate("window.__cspViolations || []")]


def record_csp_console(page) -> list[str]:
    console = []
    page.on(
        "console",
        lambda m: console.append(m.text) if m.type == "error" and "Content Security Policy" in m.text else None,
    )
    return console


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.add_init_script(RECORD_CSP_VIOLATIONS)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.csp_console = record_csp_console(page)
    yield page
    context.close()


def wait_until(page, expression: str, arg=None, timeout: float = 20_000) -> None:
    """Poll until ``expression`` (with ``arg``) is true in the page.

    Playwright's wait_for_function runs its predicate through eval() inside the page, which the
    site's Content-Security-Policy refuses; page.evaluate goes through the debugging protocol,
    outside the page's policy."""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression, arg):
        assert time.monotonic() < deadline, f"not true within {timeout / 1000:.0f} s: {expression}"
        page.wait_for_timeout(100)


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
    wait_until(
        page,
        "n => document.querySelectorAll('.digit-card').length === n && "
        "[...document.querySelectorAll('.digit-card')].every(c => ['done', 'failed'].includes(c.dataset.status))",
        arg=count,
        timeout=90_000,
    )


def upload(page, files, count: int) -> None:
    """Upload through the form and wait until every card in the gallery is finished."""
    page.get_by_label("Digit images").set_input_files(files)
    page.get_by_role("button", name="Upload and classify").click()
    wait_for_cards(page, count)


def test_sign_up_log_out_and_log_in_again(page):
    page.goto("/")
    page.get_by_role("heading", name="Handwritten digits, read honestly").wait_for()  # the landing page
    assert page.locator(".landing-example img").count() == 3
    wait_until(
        page, "[...document.querySelectorAll('.landing-example img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    shot(page, "00-landing")
    page.get_by_role("link", name="Sign up, it is free").click()
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


@pytest.mark.parametrize("width", [1280, 390])
def test_reset_a_forgotten_password_by_e_mail(page, mailoutbox, width):
    user = UserFactory(email="ada@example.com")
    page.set_viewport_size({"width": width, "height": 844})
    page.goto("/accounts/login/")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_role("button", name="Send the link").click()
    page.get_by_role("heading", name="Check your inbox").wait_for()
    assert page.locator("link[href*='bootstrap']").count() == 1  # the site's look, not the admin's
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["ada@example.com"]
    link = re.search(r"https?://\S+", mailoutbox[0].body).group(0)
    page.goto(link)
    new = "a brand new passphrase 19"
    page.locator("#id_new_password1").fill(new)
    page.locator("#id_new_password2").fill(new)
    page.get_by_role("button", name="Set the new password").click()
    page.get_by_role("heading", name="Your new password is set").wait_for()
    page.get_by_role("link", name="Log in", exact=True).last.click()
    log_in(page, user.username, new)
    assert page.get_by_role("heading", name="Your gallery").is_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


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
    wait_until(page, "document.querySelector('img.model-input')?.complete")
    assert page.get_by_alt_text("The 28 by 28 image the model saw").evaluate("img => img.naturalWidth") == 224
    assert page.locator(".bar-row").count() == 10
    shot(page, "02-detail")


@pytest.mark.parametrize("width", [1280, 390])
def test_a_waiting_detail_page_finishes_in_place_answer_first_on_a_phone(page, worker, mnist, width):
    from classifier.tasks import classify_images
    from classifier.tests.factories import DigitImageFactory

    user = UserFactory()
    log_in(page, user.username)
    image = DigitImageFactory(owner=user, data=encode(255 - mnist.test.images[0]))  # a 7, not queued yet
    page.set_viewport_size({"width": width, "height": 844})
    page.goto(image.get_absolute_url())
    page.locator(".wait .status-badge").wait_for()
    assert page.locator("img.detail-original").count() == 1  # the photo once, no second card
    loaded_at = page.evaluate("performance.timeOrigin")
    classify_images.delay([image.pk])
    page.locator("#predicted-digit").wait_for(timeout=90_000)
    assert page.evaluate("performance.timeOrigin") == loaded_at  # no reload
    assert page.locator("#predicted-digit").inner_text() == "7"
    assert page.locator(".bar-row").count() == 10 and page.locator(".wait").count() == 0
    page.get_by_role("button", name="Tell us it is wrong").wait_for()
    # Answer first: on the first screen; on a phone above the photo, on a desktop beside it.
    digit = page.locator("#predicted-digit").bounding_box()
    photo = page.locator("img.detail-original").bounding_box()
    assert digit["y"] < 844
    if width < 576:
        assert digit["y"] < photo["y"]
        shot(page, "06-phone-detail-live")
    else:
        assert digit["x"] >= photo["x"] + photo["width"]


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
    upload(page, [str(digit_files(tmp_path, mnist)[0])], 1)
    image = DigitImage.objects.get(owner=owner)
    page.get_by_role("button", name="Log out").click()

    log_in(page, UserFactory().username)
    assert page.goto(f"/images/{image.pk}/").status == 404
    assert page.goto(f"/images/{image.pk}/file/").status == 404
    shot(page, "04-not-yours")


def test_staff_flag_in_the_admin(page, worker, tmp_path, mnist):
    """Staff flag an upload from the admin's list; retraining from the admin is the journey of
    ``test_people_and_staff_say_not_a_digit_and_a_retrain_teaches_it_while_uploads_are_answered``."""
    user = UserFactory()
    log_in(page, user.username)
    upload(page, [str(p) for p in digit_files(tmp_path, mnist)], 3)
    page.get_by_role("button", name="Log out").click()

    staff = UserFactory(is_staff=True, is_superuser=True)
    log_in(page, staff.username)
    # A phone's long file name, an unsure verdict and a long username, as real lists have them.
    long_named = DigitImageFactory(
        owner=UserFactory(username="a.person.with.a.long.name@example.org"),
        original_name="IMG_20261127_164012345_HDR_portrait.jpg",
        status=DigitImage.Status.DONE,
    )
    Prediction.objects.create(
        image=long_named,
        digit=4,
        confidence=0.512,
        verdict=Prediction.Verdict.UNSURE,
        probabilities=[0.05] * 4 + [0.512] + [0.4 / 5] * 5,
        model_version=ModelVersion.objects.get(is_active=True),
        model_input=bytes(784),
        inference_ms=1.0,
    )
    page.goto("/admin/classifier/digitimage/")
    # Every column of the changelist, beside its filters, on a 1280 px screen.
    assert page.evaluate("document.querySelector('#result_list').getBoundingClientRect().right") <= 1280
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    page.locator("tr", has_text="photo-2.jpg").locator("input.action-select").check()
    page.locator("select[name=action]").select_option("flag_selected")
    page.get_by_role("button", name="Go").click()
    page.get_by_text("really read").wait_for()
    page.get_by_label("Answer for photo-2.jpg").fill("3")
    page.get_by_label("Note").fill("the loop is closed: a 3")
    shot(page, "05-admin-flag")
    page.get_by_role("button", name="Flag with these answers").click()
    # Either the flag is stored, or the page asks to confirm overruling a confident prediction:
    # wait for the answer before looking (a busy machine answers after the click returns).
    page.get_by_text("Flagged 1 image as 3").or_(page.get_by_text("at least 99% sure of")).first.wait_for()
    if page.get_by_text("at least 99% sure of").count():  # overruling a confident prediction: tick, again
        page.get_by_label("these corrections overrule").check()
        page.get_by_role("button", name="Flag with these answers").click()
    page.get_by_text("Flagged 1 image as 3").wait_for()
    flag = Flag.objects.get()
    assert (flag.correct_digit, flag.flagged_by) == (3, staff)


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
    upload(page, [str(digit_files(tmp_path, mnist)[1])], 1)
    for path in ("/", "/history/", DigitImage.objects.get(owner=user).get_absolute_url()):
        page.goto(path)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{path} overflows a 375 px screen by {overflow} px"
    shot(page, "06-phone-detail")
    page.goto("/")
    shot(page, "06-phone-gallery")
    context.close()


# --- Drawing, camera, feedback, export, statistics, accessibility (issue 6) ----------------

SEVEN = [[(60, 60), (220, 60)], [(220, 60), (120, 240)]]  # canvas coordinates of 280x280
ONE = [[(140, 40), (140, 240)]]


def canvas_strokes(page, strokes, steps: int = 12) -> None:
    """Draw with the mouse: each stroke is a polyline in the canvas' own 280x280 pixels."""
    box = page.locator("#draw-canvas").bounding_box()
    scale = box["width"] / 280
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x * scale, box["y"] + y * scale)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=steps)
        page.mouse.up()


def canvas_ink(page) -> int:
    """How many canvas pixels are ink (dark)."""
    return page.evaluate(
        """() => {
        const c = document.getElementById('draw-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] < 128) n++;
        return n;
    }"""
    )


def wait_for_result(page, selector: str = "#draw-results .digit-card") -> str:
    wait_until(
        page,
        "s => { const c = document.querySelector(s); return c && ['done', 'failed'].includes(c.dataset.status); }",
        arg=selector,
        timeout=90_000,
    )
    return page.locator(selector).first.get_attribute("data-status")


def test_draw_a_digit_with_the_mouse_undo_clear_and_see_it_classified_live(page, worker):
    user = UserFactory()
    log_in(page, user.username)
    page.get_by_role("link", name="Draw", exact=True).click()
    submit = page.get_by_role("button", name="Classify drawing")
    assert submit.is_disabled()  # nothing drawn yet

    page.get_by_label("Pen width").fill("22")
    canvas_strokes(page, SEVEN)
    seven_ink = canvas_ink(page)
    canvas_strokes(page, [[(40, 250), (250, 250)]])  # a slip of the hand
    assert canvas_ink(page) > seven_ink
    page.get_by_role("button", name="Undo").click()
    assert canvas_ink(page) == seven_ink
    # The live answer beside the canvas follows the drawing (here: after the undo), before any
    # "Classify drawing", and keeps nothing.
    wait_until(page, "document.querySelector('#live-verdict')?.dataset.digit === '7'", timeout=60_000)
    assert page.locator("#live-answer .live-bar-fill").count() == 10
    canvas_box, live_box = page.locator("#draw-canvas").bounding_box(), page.locator("#live-panel").bounding_box()
    assert live_box["x"] >= canvas_box["x"] + canvas_box["width"]  # beside it on a desktop
    assert not DigitImage.objects.filter(owner=user).exists()
    loaded_at = page.evaluate("performance.timeOrigin")
    submit.click()
    assert wait_for_result(page) == "done"
    assert page.locator("#draw-results .predicted-digit").inner_text() == "7"
    assert page.evaluate("performance.timeOrigin") == loaded_at  # live: no reload
    image = DigitImage.objects.get(owner=user)
    assert re.fullmatch(r"drawing \d{4}-\d\d-\d\d \d\d:\d\d\.png", image.original_name), image.original_name
    assert image.image_format == "PNG"
    # The status beside the button ends with the answer, not "Classifying…".
    wait_until(page, "!document.getElementById('draw-status').textContent.includes('Classifying')")
    assert "7" in page.locator("#draw-status").inner_text()
    shot(page, "07-draw")

    page.get_by_role("button", name="Clear").click()
    assert canvas_ink(page) == 0 and submit.is_disabled()
    assert page.locator("#live-verdict").count() == 0  # the live answer went with the drawing


def test_draw_with_a_finger_on_a_phone(browser, live_server, worker):
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    log_in(page, UserFactory().username)
    page.goto("/draw/")
    box = page.locator("#draw-canvas").bounding_box()
    scale = box["width"] / 280
    touch = context.new_cdp_session(page)  # real touch input, as a finger gives it

    def finger(kind, x, y):
        points = [] if kind == "touchEnd" else [{"x": box["x"] + x * scale, "y": box["y"] + y * scale}]
        touch.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    finger("touchStart", 140, 40)
    for step in range(1, 21):
        finger("touchMove", 140, 40 + step * 10)
    finger("touchEnd", 140, 240)
    assert canvas_ink(page) > 500
    assert page.evaluate("window.scrollY") == 0  # the finger drew instead of scrolling the page
    # The live answer above the canvas, where the finger does not cover it.
    wait_until(page, "document.querySelector('#live-verdict')?.dataset.digit === '1'", timeout=60_000)
    assert page.locator("#live-panel").bounding_box()["y"] < box["y"]
    page.get_by_role("button", name="Classify drawing").click()
    assert wait_for_result(page) == "done"
    assert page.locator("#draw-results .predicted-digit").inner_text() == "1"
    # The answer is on the first screen, under the button, where the finger was.
    wait_until(page, "!document.getElementById('draw-status').textContent.includes('Classifying')")
    status = page.locator("#draw-status")
    assert "1" in status.inner_text() and status.bounding_box()["y"] + status.bounding_box()["height"] < 740
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0
    shot(page, "07-draw-phone")
    context.close()


def phone(browser, live_server):
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    return context, page


def test_try_a_failed_image_again_and_find_the_way_back_from_a_404(page, browser, live_server, worker, mnist):
    """Desktop and phone: "Try again" on a failed image's page classifies it in place; a
    mistyped address gets the site's 404 page with a way back; a visitor's landing page fits a
    phone with its way in on the first screen."""
    user = UserFactory()
    failed = [
        DigitImageFactory(
            owner=user,
            data=encode(255 - mnist.test.images[i]),  # a 7, then a 2
            status=DigitImage.Status.FAILED,
            error_message="This image could not be classified after 3 attempts.",
            attempts=3,
        )
        for i in (0, 1)
    ]
    phone_context, phone_page = phone(browser, live_server)
    for screen, digit, image in ((page, "7", failed[0]), (phone_page, "2", failed[1])):
        log_in(screen, user.username)
        screen.goto(image.get_absolute_url())
        screen.get_by_text("could not be classified after 3 attempts").wait_for()
        screen.get_by_role("button", name="Try again").click()
        screen.get_by_text("Trying again").wait_for()
        wait_until(
            screen, "(digit) => document.getElementById('predicted-digit')?.textContent.trim() === digit", digit, 60_000
        )

        assert screen.goto("/no-such-page/").status == 404
        screen.get_by_role("heading", name="This page does not exist").wait_for()
        assert screen.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        screen.get_by_role("link", name="Back to your gallery").click()
        screen.wait_for_url(re.compile(r"/$"))
    shot(phone_page, "18-retry-phone")

    # A visitor on a phone: what the site does, the examples, and the way in on the first screen.
    phone_context.clear_cookies()  # signed out
    phone_page.goto("/")
    phone_page.get_by_role("heading", name="Handwritten digits, read honestly").wait_for()
    sign_up = phone_page.get_by_role("link", name=re.compile("sign up", re.IGNORECASE)).first
    assert sign_up.bounding_box()["y"] + sign_up.bounding_box()["height"] <= 844
    assert phone_page.locator(".landing-example img").count() == 3
    assert phone_page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(phone_page, "00-landing-phone")
    phone_context.close()


@pytest.fixture(scope="module")
def camera_browser(chromium):
    """Chromium with a fake camera (a moving test pattern) instead of a real one."""
    camera = chromium("--use-fake-device-for-media-stream")
    yield camera
    camera.close()


def test_take_a_photo_with_the_webcam(camera_browser, live_server, worker):
    context = camera_browser.new_context(base_url=live_server.url, permissions=["camera"])
    page = context.new_page()
    page.set_default_timeout(20_000)
    user = UserFactory()
    log_in(page, user.username)
    page.get_by_role("button", name="Take photo with webcam").click()
    page.get_by_label("Camera preview").wait_for()
    wait_until(page, "document.getElementById('camera-video').videoWidth > 0")
    page.get_by_role("button", name="Capture").click()
    # The fake camera shows a test pattern, not a digit: what matters is the way through.
    assert wait_for_result(page, "#gallery .digit-card") in ("done", "failed")
    image = DigitImage.objects.get(owner=user)
    assert re.fullmatch(r"photo \d{4}-\d\d-\d\d \d\d:\d\d\.jpg", image.original_name), image.original_name
    assert image.image_format == "JPEG"
    shot(page, "08-camera")
    page.get_by_role("button", name="Close camera").click()
    assert page.locator("#camera-panel").is_hidden()
    context.close()


def test_a_refused_camera_gets_a_clear_message(camera_browser, live_server):
    context = camera_browser.new_context(base_url=live_server.url)  # permission not granted
    page = context.new_page()
    page.set_default_timeout(20_000)
    log_in(page, UserFactory().username)
    page.get_by_role("button", name="Take photo with webcam").click()
    page.get_by_text("Camera permission was refused").wait_for()
    assert page.locator("#camera-panel").is_hidden()
    context.close()


def test_a_phone_takes_a_photo_through_its_camera_input(browser, live_server, worker, tmp_path, mnist):
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    log_in(page, UserFactory().username)
    camera_input = page.locator("#camera-input")
    assert camera_input.get_attribute("capture") == "environment"  # the phone opens its camera
    assert page.get_by_text("Take a photo").is_visible()
    assert page.get_by_role("button", name="Take photo with webcam").is_hidden()
    # What the phone's camera hands back: a photo, sent at once without a form submit.
    camera_input.set_input_files(str(digit_files(tmp_path, mnist)[1]))
    assert wait_for_result(page, "#gallery .digit-card") == "done"
    assert page.locator("#gallery .predicted-digit").inner_text() == "2"
    context.close()


def test_feedback_grad_cam_and_staff_confirmation(page, worker, tmp_path, mnist):
    user = UserFactory()
    log_in(page, user.username)
    upload(page, [str(digit_files(tmp_path, mnist)[0])], 1)
    page.locator(".digit-card").first.click()
    page.locator("#predicted-digit").wait_for()  # the detail page, not the gallery it left
    # Its heat map may still be on its way.
    wait_until(page, "document.querySelector('img[alt^=\"Grad-CAM\"]')?.complete")
    assert page.locator("img[alt^='Grad-CAM']").evaluate("img => img.naturalWidth") == 224
    page.get_by_label("It really reads").fill("1")
    page.get_by_role("button", name="Tell us it is wrong").click()
    page.get_by_text("you said this is a 1").first.wait_for()
    assert page.locator("#predicted-digit").inner_text() == "7"  # the prediction stays
    shot(page, "09-feedback")
    page.get_by_role("button", name="Log out").click()

    log_in(page, UserFactory(is_staff=True, is_superuser=True).username)
    page.goto("/admin/classifier/feedback/?confirmed=no")
    page.locator("tr", has_text="clean-7.png").locator("input.action-select").check()
    page.locator("select[name=action]").select_option("confirm_as_flags")
    page.get_by_role("button", name="Go").click()
    page.get_by_text("1 suggestion confirmed as flags.").wait_for()
    assert Flag.objects.get().correct_digit == 1
    shot(page, "09-feedback-admin")


def test_delete_images_from_their_page_on_a_desktop_and_a_phone(page, worker, tmp_path, mnist):
    user = UserFactory()
    log_in(page, user.username)
    upload(page, [str(p) for p in digit_files(tmp_path, mnist)[:2]], 2)
    for width, name in ((1280, "clean-7.png"), (390, "photo-2.jpg")):
        page.set_viewport_size({"width": width, "height": 844})
        image = DigitImage.objects.get(owner=user, original_name=name)
        stored = Path(image.file.path)
        page.goto(image.get_absolute_url())
        page.get_by_role("link", name="Delete this image…").click()
        page.get_by_role("heading", name=f"Delete {name}?").wait_for()
        page.get_by_text("Nothing about it is kept.").wait_for()
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the confirmation overflows a {width} px screen by {overflow} px"
        shot(page, f"12-delete-image-{width}")
        page.get_by_role("button", name="Delete this image").click()
        page.get_by_text(f"Deleted {name}, with its prediction and everything about it.").wait_for()
        assert page.locator(".digit-card", has_text=name).count() == 0
        assert not DigitImage.objects.filter(pk=image.pk).exists() and not stored.exists()
    page.get_by_text("Nothing here yet.").wait_for()


def test_download_my_data_then_delete_the_account(page, tmp_path, mnist):
    from classifier.tests.factories import DigitImageFactory

    user = UserFactory(email="ada@example.com")
    image = DigitImageFactory(owner=user, data=encode(mnist.test.images[0]), original_name="seven.png")
    log_in(page, user.username)
    page.get_by_role("link", name=user.username).click()  # the navigation's way to the account
    page.get_by_role("heading", name="Your account", exact=True).wait_for()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download my data (zip)").click()
    with zipfile.ZipFile(download.value.path()) as archive:
        assert archive.read(f"images/{image.pk}-seven.png") == encode(mnist.test.images[0])
        assert "seven.png" in archive.read("history.csv").decode()
    page.get_by_role("link", name="Delete my account…").click()
    page.get_by_text("your 1 image and its file;").wait_for()
    page.get_by_label("Your password").fill("not my password")
    page.get_by_role("button", name="Delete my account and my data").click()
    page.get_by_text("That is not your password; nothing was deleted.").wait_for()
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "13-delete-account-phone")
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Delete my account and my data").click()
    page.get_by_text("Your account was deleted, with its 1 image and everything about it.").wait_for()
    page.get_by_role("heading", name="Handwritten digits, read honestly").wait_for()  # signed out, the landing page
    assert not DigitImage.objects.exists() and not Path(image.file.path).exists()
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    assert page.url.endswith("/accounts/login/")  # the account is gone


def test_download_history_as_csv(page, worker, tmp_path, mnist):
    user = UserFactory()
    log_in(page, user.username)
    upload(page, [str(p) for p in digit_files(tmp_path, mnist)], 3)
    page.goto("/history/")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0].startswith("file_name,uploaded_at,status,number,digit,confidence,verdict,verdict_reason,p0,")
    assert sorted(line.split(",")[0] for line in lines[1:]) == ["canvas-1.png", "clean-7.png", "photo-2.jpg"]


def test_staff_statistics_page_shows_charts(page, worker, tmp_path, mnist):
    user = ReviewerFactory()
    log_in(page, user.username)
    upload(page, [str(p) for p in digit_files(tmp_path, mnist)], 3)
    page.get_by_role("link", name="Statistics").click()
    assert page.locator("figure.chart").count() == 8
    charts = page.locator("figure.chart svg")
    assert charts.count() == 7  # no flags yet: the corrections chart says "No data yet"
    assert page.locator("figure.chart", has_text="No data yet").count() == 1
    assert min(page.evaluate(CHART_TEXT_SIZES)) >= 12
    shot(page, "10-statistics")


# The size each chart's text is drawn at: its font size in the SVG's units times the scale from
# the viewBox to the box the page gives the chart.
CHART_TEXT_SIZES = """() => [...document.querySelectorAll('figure.chart svg text')].map((text) => {
  const svg = text.ownerSVGElement;
  return parseFloat(getComputedStyle(text).fontSize) * svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
})"""


def test_the_statistics_page_reads_on_a_phone(browser, live_server):
    staff = ReviewerFactory()
    second = ModelVersionFactory(number=2)
    for index in range(12):
        image = predicted(owner=staff, version=second if index % 3 else None, digit=index % 10)
        if index % 4 == 0:
            flag(image, correct_digit=(index + 3) % 10)
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    log_in(page, staff.username)
    page.goto("/stats/")
    assert page.locator("figure.chart svg").count() == 8
    sizes = page.evaluate(CHART_TEXT_SIZES)
    assert len(sizes) > 50 and min(sizes) >= 12, min(sizes)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing sticks out sideways
    # The versions table scrolls in its own box, and its last column comes into view.
    active = page.get_by_role("columnheader", name="Active")
    active.scroll_into_view_if_needed()
    box = active.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390
    # The numbers behind a chart open under it.
    digits = page.locator("figure.chart", has_text="Predictions per digit")
    digits.get_by_text("The numbers").click()
    assert digits.get_by_role("table").is_visible() and digits.get_by_role("row").count() == 1 + 10
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "10-statistics-phone")
    context.close()


ACCESSIBILITY_PROBLEMS = """() => {
  const problems = [];
  const named = (el) => {
    const label = el.labels && [...el.labels].map((l) => l.textContent.trim()).join(' ');
    const by = el.getAttribute('aria-labelledby');
    return label || el.getAttribute('aria-label') || (by && document.getElementById(by)?.textContent.trim())
      || (el.tagName === 'BUTTON' && el.textContent.trim()) || el.getAttribute('title');
  };
  for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea, button, canvas, video')) {
    if (!named(el)) problems.push('no label: ' + el.outerHTML.slice(0, 100));
  }
  for (const img of document.querySelectorAll('img')) {
    if (!img.hasAttribute('alt')) problems.push('no alt: ' + img.outerHTML.slice(0, 100));
  }
  return problems;
}"""


def test_every_control_is_labelled_every_image_has_alt_and_the_keyboard_works(page, worker, tmp_path, mnist):
    # A visitor's pages: the landing page, sign-up, log-in, password reset (an expired link
    # included) and a mistyped address.
    visitor = (
        "/",
        "/signup/",
        "/accounts/login/",
        "/accounts/password_reset/",
        "/accounts/password_reset/done/",
        "/accounts/reset/MQ/expired-token/",
        "/no-such-page/",
    )
    for path in visitor:
        page.goto(path)
        assert page.evaluate(ACCESSIBILITY_PROBLEMS) == [], path
    staff = ReviewerFactory()
    log_in(page, staff.username)
    upload(page, [str(digit_files(tmp_path, mnist)[0])], 1)
    image = DigitImage.objects.get(owner=staff)
    pages = ("/", "/draw/", "/history/", image.get_absolute_url(), "/stats/", "/account/api-token/", "/api/docs/")
    mine = ("/account/", "/account/delete/", f"/images/{image.pk}/delete/")
    for path in (*pages, *mine, "/accounts/password_change/", "/no-such-page/", "/images/999999/"):
        page.goto(path)
        assert page.evaluate(ACCESSIBILITY_PROBLEMS) == [], path
    # The draw page with its live answer showing.
    page.goto("/draw/")
    canvas_strokes(page, SEVEN)
    wait_until(page, "document.querySelector('#live-verdict') !== null", timeout=60_000)
    assert page.evaluate(ACCESSIBILITY_PROBLEMS) == [], "/draw/ with a live answer"

    # The keyboard alone reaches every drawing control, and Enter presses them.
    page.goto("/draw/")
    reached = set()
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()"))
    assert {"pen-width", "draw-undo", "draw-clear", "Draw"} <= reached
    page.goto("/")
    # On a desktop the phone's camera input is no invisible tab stop: Tab goes from the upload
    # button to the webcam button.
    page.get_by_role("button", name="Upload and classify").focus()
    tabbed = []
    for _ in range(3):
        page.keyboard.press("Tab")
        tabbed.append(page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()"))
    assert "camera-input" not in tabbed and tabbed[0] == "camera-open", tabbed
    page.get_by_role("link", name="History", exact=True).focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/history/$"))


def test_every_page_works_under_the_content_security_policy_with_no_violation(page, worker, tmp_path, mnist):
    """The site, the canvas, htmx polling, the admin and the offline Swagger UI run under the
    policy: none of them is refused anything (nothing inline without a nonce, no eval)."""
    staff = UserFactory(is_staff=True, is_superuser=True)
    log_in(page, staff.username)
    upload(page, [str(digit_files(tmp_path, mnist)[0])], 1)  # htmx polled the card
    image = DigitImage.objects.get(owner=staff)
    response = page.goto("/")
    policy = response.headers["content-security-policy"]
    script_src = policy.split("script-src ")[1].split(";")[0].split()
    assert "'self'" in script_src and not {"'unsafe-inline'", "'unsafe-eval'", "*"} & set(script_src)
    found = {}
    pages = (
        "/",
        "/history/",
        image.get_absolute_url(),
        "/stats/",
        "/account/api-token/",
        "/account/",
        "/account/delete/",
        f"/images/{image.pk}/delete/",
        "/accounts/password_change/",
        "/admin/",
        "/admin/classifier/digitimage/",
        f"/admin/classifier/digitimage/{image.pk}/change/",
    )
    for path in pages:
        page.goto(path)
        page.wait_for_load_state("networkidle")
        found[path] = csp_violations(page, page.csp_console)
        page.csp_console.clear()

    page.goto("/draw/")
    canvas_strokes(page, ONE)
    page.get_by_role("button", name="Classify drawing").click()
    assert wait_for_result(page) == "done"
    found["/draw/"] = csp_violations(page, page.csp_console)
    page.csp_console.clear()

    page.goto("/api/docs/")
    page.wait_for_load_state("networkidle")
    found["/api/docs/"] = csp_violations(page, page.csp_console)
    assert {path: violations for path, violations in found.items() if violations} == {}
    page.locator(".swagger-ui .opblock").first.wait_for()  # Swagger UI rendered the schema
    assert page.locator(".swagger-ui .opblock").count() >= 4
    shot(page, "11-api-docs")


def test_the_webcam_works_under_the_content_security_policy(camera_browser, live_server, worker):
    context = camera_browser.new_context(base_url=live_server.url, permissions=["camera"])
    context.add_init_script(RECORD_CSP_VIOLATIONS)
    page = context.new_page()
    page.set_default_timeout(20_000)
    console = record_csp_console(page)
    log_in(page, UserFactory().username)
    page.get_by_role("button", name="Take photo with webcam").click()
    wait_until(page, "document.getElementById('camera-video').videoWidth > 0")
    page.get_by_role("button", name="Capture").click()
    assert wait_for_result(page, "#gallery .digit-card") in ("done", "failed")
    assert csp_violations(page, console) == []
    context.close()


def test_verdicts_on_the_card_and_the_detail_page(page, worker, tmp_path, mnist):
    """A digit is a digit, a drawing is not, and an unsure guess says so with the runner-up."""
    from classifier.models import Prediction
    from classifier.services import model_version_ensure_initial
    from classifier.tests.factories import DigitImageFactory
    from ml.fitting.negatives import _shape

    user = UserFactory()
    rng = np.random.default_rng(1)
    word = tmp_path / "shape.jpg"
    word.write_bytes(render_upload(_shape(rng), scenario="photo", rng=rng).data)
    digit = tmp_path / "seven.png"
    digit.write_bytes(encode(255 - mnist.test.images[0]))
    guessed = DigitImageFactory(owner=user, data=encode(255 - mnist.test.images[1]), original_name="blurry.png")
    probabilities = [0.0] * 10
    probabilities[4], probabilities[9] = 0.58, 0.42
    Prediction.objects.create(
        image=guessed,
        digit=4,
        confidence=0.58,
        probabilities=probabilities,
        verdict=Prediction.Verdict.UNSURE,
        model_version=model_version_ensure_initial(),
        model_input=bytes(784),
        inference_ms=1.0,
    )
    DigitImage.objects.filter(pk=guessed.pk).update(status=DigitImage.Status.DONE)
    log_in(page, user.username)
    upload(page, [str(word), str(digit)], 3)

    cards = {name: page.locator(".digit-card", has_text=name) for name in ("shape.jpg", "seven.png", "blurry.png")}
    assert cards["seven.png"].locator("[data-verdict]").get_attribute("data-verdict") == "digit"
    assert cards["seven.png"].locator(".predicted-digit").inner_text() == "7"
    assert "This does not look like a digit" in cards["shape.jpg"].inner_text()
    assert "probably" in cards["blurry.png"].inner_text() and "not sure" in cards["blurry.png"].inner_text()
    shot(page, "17-verdicts-gallery")

    cards["shape.jpg"].click()
    page.locator("#verdict").wait_for()
    assert page.locator("#verdict").get_attribute("data-verdict") == "not_a_digit"
    assert "It looks like" in page.locator("#verdict").inner_text()
    shot(page, "17-verdict-not-a-digit")
    page.go_back()
    page.locator(".digit-card", has_text="blurry.png").click()
    page.locator("#runner-up").wait_for()
    assert page.locator("#runner-up").inner_text() == "9"
    assert csp_violations(page, page.csp_console) == []


# --- Whole numbers (issue 19) ----------------------------------------------------------------

ONE_THEN_SEVEN = [[(70, 50), (70, 230)], [(140, 60), (240, 60)], [(240, 60), (175, 230)]]  # apart on the canvas


def boxes_inside_the_photo(page) -> list[bool]:
    """Whether each digit's box lies on the photo as drawn (the SVG scaled with it)."""
    photo = page.locator("img.detail-original").bounding_box()
    inside = []
    for rect in page.locator("svg.reading-boxes rect").all():
        box = rect.bounding_box()
        inside.append(
            photo["x"] - 1 <= box["x"]
            and box["x"] + box["width"] <= photo["x"] + photo["width"] + 1
            and photo["y"] - 1 <= box["y"]
            and box["y"] + box["height"] <= photo["y"] + photo["height"] + 1
        )
    return inside


def test_a_number_on_the_card_and_its_digits_boxed_on_the_detail_page_on_a_desktop_and_a_phone(
    page, browser, live_server, worker, tmp_path, mnist
):
    from classifier.tests.test_services import _number_page
    from classifier.tests.test_views import number_image

    indices = [0, 1, 2, 3]
    number = "".join(str(mnist.test.labels[i]) for i in indices)  # 7210
    picture = tmp_path / f"number-{number}.png"
    picture.write_bytes(encode(_number_page(mnist, indices)))
    user = UserFactory()
    log_in(page, user.username)
    upload(page, [str(picture)], 1)
    card = page.locator(".digit-card").first
    assert card.locator(".predicted-number").inner_text() == number
    # How sure of the whole number, or (where a doubt keeps it unsure) its least sure digit.
    assert re.search(r"number · (\d+% sure of all 4|least sure digit \d)", card.inner_text())

    card.click()
    page.locator("#predicted-number").wait_for()
    assert page.locator("#predicted-number").inner_text() == number
    assert page.locator("svg.reading-boxes rect").count() == len(number)
    assert boxes_inside_the_photo(page) == [True] * len(number)
    labels = page.locator(".reading-label").all_text_contents()
    assert [label.split()[0] for label in labels] == list(number)
    digits = page.locator("details.reading-digit")
    assert digits.count() == len(number)
    second = digits.nth(1)
    assert not second.locator("img").is_visible()  # shown on demand
    second.locator("summary").click()
    second.locator("img").wait_for()
    wait_until(page, "img => img.complete && img.naturalWidth === 224", second.locator("img").element_handle())
    assert second.locator(".bar-row").count() == 10 and second.locator(".bar-row.top .bar-digit").inner_text() == "2"
    assert page.evaluate(ACCESSIBILITY_PROBLEMS) == []
    assert csp_violations(page, page.csp_console) == []
    shot(page, "19-number-detail")

    # The longest number there is, on a phone's card and in its history row.
    number_image(user, picture.read_bytes(), number="583124583124", confidences=(0.99,) * 11 + (0.6,))
    context, small = phone(browser, live_server)
    log_in(small, user.username)
    assert small.locator(".digit-card .predicted-number").all_inner_texts() == ["583124583124", number]
    small.goto(DigitImage.objects.get(owner=user, original_name=picture.name).get_absolute_url())
    small.locator("details.reading-digit").first.locator("summary").click()
    for path in ("/", "/history/", small.url):
        small.goto(path)
        overflow = small.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{path} overflows a 390 px screen by {overflow} px"
    assert small.locator("svg.reading-boxes rect").count() == len(number)
    assert boxes_inside_the_photo(small) == [True] * len(number)
    shot(small, "19-number-detail-phone")
    small.goto("/")
    shot(small, "19-number-gallery-phone")
    small.goto(f"/history/?number={number[1:3]}")
    assert small.locator(".history-number").all_inner_texts() == [number]  # 583124583124 does not hold "21"
    context.close()


def test_draw_two_digits_side_by_side_and_read_them_as_a_number(page, worker):
    user = UserFactory()
    log_in(page, user.username)
    page.goto("/draw/")
    canvas_strokes(page, ONE_THEN_SEVEN)
    wait_until(page, "(document.querySelector('#live-verdict')?.dataset.number || '').length === 2", timeout=60_000)
    live = page.locator("#live-verdict").get_attribute("data-number")
    assert page.locator("#live-answer .live-reading").count() == 2
    assert page.evaluate(ACCESSIBILITY_PROBLEMS) == []
    page.get_by_role("button", name="Classify drawing").click()
    assert wait_for_result(page) == "done"
    assert page.locator("#draw-results .predicted-number").inner_text() == live
    shot(page, "19-draw-number")
    image = DigitImage.objects.get(owner=user)
    assert image.prediction.number == live and len(image.prediction.digits) == 2
    page.goto(image.get_absolute_url())
    assert page.locator("svg.reading-boxes rect").count() == 2


def test_say_what_the_images_show_a_digit_and_a_number_each_read_both_ways(page, worker, tmp_path, mnist):
    from classifier.tests.test_services import _number_page

    digit = tmp_path / "digit-7.png"
    digit.write_bytes(encode(mnist.test.images[0]))
    number = tmp_path / "number-7210.png"
    number.write_bytes(encode(_number_page(mnist, [0, 1, 2, 3])))
    user = UserFactory()
    log_in(page, user.username)
    # Left to the site ("Work it out", the default): one digit stays one digit, a number is a number.
    assert page.get_by_label("Work it out").is_checked()
    upload(page, [str(digit), str(number)], 2)
    auto = {image.original_name: image for image in DigitImage.objects.filter(owner=user)}
    assert auto["digit-7.png"].prediction.number == "7" and len(auto["digit-7.png"].prediction.digits) == 1
    assert auto["number-7210.png"].prediction.number == "7210"
    assert page.locator(".digit-card .predicted-number").all_inner_texts() == ["7210"]
    assert page.locator(".digit-card .reading-asked").count() == 0

    # Told otherwise: the digit read as a number is still one digit; the number read as one digit
    # is one digit, and each card says what it was read as.
    page.get_by_label("A number").check()
    upload(page, [str(digit)], 3)
    page.get_by_label("One digit").check()
    upload(page, [str(number)], 4)
    told = DigitImage.objects.filter(owner=user).exclude(pk__in=[image.pk for image in auto.values()])
    as_number = told.get(original_name="digit-7.png")
    as_digit = told.get(original_name="number-7210.png")
    assert (as_number.reading, as_number.prediction.number) == ("number", "7")
    assert as_digit.reading == "digit" and len(as_digit.prediction.digits) == 1
    assert len(as_digit.prediction.number) <= 1
    asked = page.locator(".digit-card .reading-asked")
    assert sorted(asked.all_inner_texts()) == ["read as a number", "read as one digit"]
    page.goto(as_digit.get_absolute_url())
    assert "one digit" in page.locator("#reading-asked").inner_text()
    assert page.evaluate(ACCESSIBILITY_PROBLEMS) == []
    shot(page, "30-reading-asked")


def _printed(text: str, side: int = 160) -> bytes:
    """A sign printed dark on white paper: a percent sign, a letter g, which the digit model
    takes for an 8 and a 9."""
    import cv2

    paper = np.full((side, side), 255, np.uint8)
    cv2.putText(paper, text, (35, 125), cv2.FONT_HERSHEY_SIMPLEX, 4, 0, 8, cv2.LINE_AA)
    return encode(paper)


def test_people_and_staff_say_not_a_digit_and_a_retrain_teaches_it_while_uploads_are_answered(
    page, browser, live_server, worker, worker_env, tmp_path, mnist, settings, tiny_rejecting_model_dir
):
    percent = tmp_path / "percent.png"
    percent.write_bytes(_printed("%"))
    letter = tmp_path / "letter-g.png"
    letter.write_bytes(_printed("g"))
    blank = tmp_path / "blank-photo.png"  # a photo of an empty sheet: light, uneven, grainy
    sheet = np.linspace(226, 242, 240)[None, :] + np.random.default_rng(3).normal(0, 1.5, (180, 240))
    blank.write_bytes(encode(np.clip(sheet, 0, 255).astype(np.uint8)))
    person = UserFactory()
    log_in(page, person.username)
    upload(page, [str(percent), str(letter), str(blank)], 3)
    # The digit model takes both signs for digits: what people and staff are here to correct.
    for name in ("percent.png", "letter-g.png"):
        assert DigitImage.objects.get(original_name=name).prediction.verdict != "not_a_digit", name

    # Nothing to read is a calm verdict like any other, not a red "failed" with "Try again".
    card = page.locator(".digit-card", has_text="blank-photo.png")
    assert card.get_attribute("data-status") == "done" and "Nothing to read" in card.inner_text()
    assert card.locator(".badge.text-bg-danger").count() == 0
    card.click()
    page.get_by_text("There is nothing to read here").wait_for()
    assert page.get_by_role("button", name="Try again").count() == 0
    shot(page, "34-blank-photo")

    # The person: "Is this wrong?" is not filled in with the answer they say is wrong, and
    # "not a digit or a number" is a box to tick.
    page.goto(DigitImage.objects.get(original_name="percent.png").get_absolute_url())
    page.locator("#feedback-heading").wait_for()
    assert page.get_by_label("It really reads").input_value() == ""
    page.get_by_label("It really reads").fill("%")
    page.get_by_role("button", name="Tell us it is wrong").click()
    page.get_by_text("Write what it reads as digits only").first.wait_for()  # in words, not a browser bubble
    page.get_by_label("It really reads").fill("")
    page.get_by_label("It is not a digit or a number").check()
    page.get_by_role("button", name="Tell us it is wrong").click()
    page.get_by_text("Thank you: you said this is not a digit.").wait_for()
    assert "is not a digit" in page.locator("#feedback-status").inner_text()
    shot(page, "34-feedback-not-a-digit")
    page.get_by_role("button", name="Log out").click()

    # Staff: confirm the person's word in the admin, and say it of the letter on its page.
    staff = UserFactory(is_staff=True, is_superuser=True)
    log_in(page, staff.username)
    page.goto("/admin/classifier/feedback/?confirmed=no")
    row = page.locator("tr", has_text="percent.png")
    assert "not a digit" in row.locator("td.field-owner_says").inner_text()
    assert row.locator("td.field-training").inner_text() == "trained on"  # whatever the reader found
    row.locator("input.action-select").check()
    page.locator("select[name=action]").select_option("confirm_as_flags")
    page.get_by_role("button", name="Go").click()
    page.get_by_text("1 suggestion confirmed as flags.").wait_for()
    page.goto(DigitImage.objects.get(original_name="letter-g.png").get_absolute_url())
    page.get_by_label("It is not a digit", exact=True).check()
    page.locator("#flag-heading").locator("..").get_by_role("button", name="Flag").click()
    page.get_by_text("Flagged: this is not a digit.").wait_for()
    assert page.locator("#flag-training").count() == 0  # no "kept, not trained on"
    assert Flag.objects.filter(not_a_digit=True).count() == 2

    # A retrain from the admin, on a trainer of its own, of a model with a reject option.
    settings.MODEL_VERSIONS_DIR = tmp_path / "versions"
    rejecting = ModelVersionFactory(architecture="basic", path=str(tiny_rejecting_model_dir))
    call_command("activate_model", str(rejecting.number), stdout=StringIO())
    sized = {
        "RETRAIN_TRAIN_LIMIT": "5000",
        "RETRAIN_TEST_LIMIT": "1000",
        "RETRAIN_JUDGING_PER_SET": "20",
        "WORKER_WARM_UP": "false",
    }
    trainer_env = worker_env | sized | {"MODEL_VERSIONS_DIR": str(tmp_path / "trainer-versions")}
    # The queues `make run` gives its classifying worker and its trainer (the Procfile's).
    queues = _procfile_queues()
    assert set(worker.queues.split(",")) == set(queues["worker"].split(","))
    trainer = Worker(trainer_env, tmp_path / "trainer.log", args=("-n", "trainer@%h"), queues=queues["trainer"]).start()
    context, someone = phone(browser, live_server)
    try:
        page.goto("/admin/classifier/modelversion/")
        page.get_by_label("Epochs").fill("1")
        page.get_by_label(RetrainRun.FORCE_LABEL).check()
        page.get_by_role("button", name="Retrain now").click()
        page.get_by_text("Retrain queued on the training queue").wait_for()
        # The page follows the retrain by polling its section (htmx), never by reloading itself.
        page.evaluate("() => { window.followedWithoutReload = true; }")
        page.locator('#retrain-status[data-status="running"]').wait_for(timeout=120_000)
        running = page.locator('#retrain-stages li[data-state="running"]')
        assert " so far, " in running.inner_text() and running.locator("progress").count() == 1
        shot(page, "34-retrain-running")

        # Meanwhile a person uploads a digit on a phone: answered within seconds.
        log_in(someone, person.username)
        digit = tmp_path / "during-retrain.png"
        digit.write_bytes(encode(255 - mnist.test.images[0]))
        started = time.monotonic()
        someone.get_by_label("Digit images").set_input_files([str(digit)])
        someone.get_by_role("button", name="Upload and classify").click()
        wait_until(
            someone,
            "() => [...document.querySelectorAll('.digit-card')].some(c => c.dataset.status === 'done' && "
            "c.textContent.includes('during-retrain.png'))",
            timeout=30_000,
        )
        answered = time.monotonic() - started
        run = RetrainRun.objects.get()
        assert run.status == RetrainRun.Status.RUNNING, "the retrain ended before the answer: no proof"
        assert answered < 30

        page.locator('#retrain-status[data-status="promoted"]').wait_for(timeout=180_000)
        assert page.evaluate("() => window.followedWithoutReload") is True
    finally:
        context.close()
        trainer.stop()
    # Every stage shown done, with its time; the images said not digits taught the reject option.
    for stage in ("gathering", "fine-tuning", "calibrating", "judging", "storing"):
        assert page.locator(f'#retrain-stages li[data-stage="{stage}"]').get_attribute("data-state") == "done"
        assert " in " in page.locator(f'#retrain-stages li[data-stage="{stage}"]').inner_text()
    taught = page.locator("#retrain-rejects").inner_text()
    assert taught.startswith("The reject option learnt from 2 images staff said are not digits")
    candidate = ModelVersion.objects.get(is_active=True)
    assert candidate.parent == rejecting and candidate.metrics["rejects_taught"] == 2
    assert set(Flag.objects.filter(trained_in=candidate).values_list("image__original_name", flat=True)) == {
        "percent.png",
        "letter-g.png",
    }
    shot(page, "34-retrain-done")
    shot(page, "05-model-versions")
