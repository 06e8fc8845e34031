"""Pages that say what is happening, on a desktop and a phone (issue 34), in real Chromium: a
number's labels on its photo, the history on a phone, and an axe-core walk over every page,
the admin's review queue included."""

import io

import numpy as np
import pytest
from axe_playwright_python.sync_playwright import Axe
from PIL import Image
from rest_framework.authtoken.models import Token

from classifier.models import DigitImage, Feedback, Flag
from classifier.tests.factories import DigitImageFactory, ReviewerFactory, UserFactory
from classifier.tests.test_browser import (  # noqa: F401 (fixtures, used by name)
    ACCESSIBILITY_PROBLEMS,
    boxes_inside_the_photo,
    browser,
    chromium,
    csp_violations,
    log_in,
    page,
    shot,
)
from classifier.tests.test_views import done_image, number_image

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.slow]

WIDTHS = (1280, 390)


def screen(tab, width: int) -> None:
    tab.set_viewport_size({"width": width, "height": 900 if width > 576 else 844})


def number_picture(mnist, indices, *, width: int, height: int, side: int) -> tuple[bytes, list[list[int]]]:
    """A photo of MNIST digits side by side, dark on white, each drawn ``side`` px tall, and
    each digit's box (x, y, width, height) around its ink."""
    canvas = np.full((height, width), 255, np.uint8)
    pitch, top = width / len(indices), (height - side) // 2
    boxes = []
    for k, index in enumerate(indices):
        glyph = np.asarray(Image.fromarray(mnist.test.images[index]).resize((side, side), Image.NEAREST))
        left = int(pitch * (k + 0.5) - side / 2)
        start, stop = max(left, 0), min(left + side, width)
        glyph = glyph[:, start - left : stop - left]
        canvas[top : top + side, start:stop] = np.minimum(canvas[top : top + side, start:stop], 255 - glyph)
        ys, xs = np.nonzero(glyph > 64)
        boxes.append([start + int(xs.min()), top + int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1])
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, format="PNG")
    return buffer.getvalue(), boxes


def number_photo(owner, mnist, indices, *, width: int, height: int, side: int, name: str) -> DigitImage:
    """A finished image of the number of MNIST test digits ``indices``, each box where its ink is;
    every fifth digit not sure."""
    data, boxes = number_picture(mnist, indices, width=width, height=height, side=side)
    number = "".join(str(mnist.test.labels[index]) for index in indices)
    confidences = [0.62 if k % 5 == 2 else 0.999 for k in range(len(indices))]
    return number_image(owner, data, number, confidences, width=width, height=height, boxes=boxes, original_name=name)


# Each label shown on the photo, where it is drawn relative to the photo, its font size and
# whether its text fits its box.
LABELS_ON_THE_PHOTO = """() => {
  const photo = document.querySelector('img.detail-original').getBoundingClientRect();
  return [...document.querySelectorAll('.reading-label')].filter((l) => l.getClientRects().length).map((l) => {
    const box = l.getBoundingClientRect();
    return {
      text: l.innerText, font: getComputedStyle(l).fontSize, clipped: l.scrollWidth > l.clientWidth,
      left: box.left - photo.left, top: box.top - photo.top, right: box.right - photo.left,
      bottom: box.bottom - photo.top, width: photo.width, height: photo.height,
    };
  });
}"""


def overlapping(labels: list[dict]) -> list[tuple[str, str]]:
    return [
        (a["text"], b["text"])
        for i, a in enumerate(labels)
        for b in labels[i + 1 :]
        if a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] and b["top"] < a["bottom"]
    ]


@pytest.mark.parametrize("width", WIDTHS)
def test_a_numbers_labels_keep_one_size_inside_its_photo_and_apart(page, mnist, width):  # noqa: F811
    """Labels of 13 px on any photo (a wide one of many narrow digits, a small one, a large one,
    one cropped tight to its digits), each inside the picture as drawn, none over another."""
    user = UserFactory()
    photos = {
        "wide": number_photo(user, mnist, range(12), width=2400, height=400, side=260, name="wide.png"),
        "small": number_photo(user, mnist, [0, 1, 2], width=120, height=40, side=30, name="small.png"),
        "large": number_photo(user, mnist, range(10, 22), width=3000, height=1000, side=420, name="large.png"),
        "tight": number_photo(user, mnist, range(5), width=600, height=120, side=120, name="tight.png"),
    }
    log_in(page, user.username)
    screen(page, width)
    sizes = set()
    for name, image in photos.items():
        page.goto(image.get_absolute_url())
        digits = len(image.prediction.number)
        labels = page.evaluate(LABELS_ON_THE_PHOTO)
        assert len(labels) == digits, (name, labels)
        assert [label["text"][0] for label in labels] == list(image.prediction.number)
        outside = [
            label["text"]
            for label in labels
            if label["left"] < 0
            or label["top"] < 0
            or label["right"] > label["width"]
            or label["bottom"] > label["height"]
        ]
        assert outside == [], f"{name} at {width} px: labels outside the photo: {outside}"
        assert overlapping(labels) == [], f"{name} at {width} px"
        assert [label["text"] for label in labels if label["clipped"]] == [], name
        sizes |= {(label["font"], round(label["bottom"] - label["top"])) for label in labels}
        assert boxes_inside_the_photo(page) == [True] * digits
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), name
        assert page.evaluate(ACCESSIBILITY_PROBLEMS) == [], name
        if name == "large":
            shot(page, f"34-number-labels-{width}")
            if width == 1280:  # room for whole labels, in a row above the boxes and one below
                assert all("%" in label["text"] for label in labels), labels
    assert sizes == {("13px", 18)}, sizes  # one size on every photo, whatever its own size
    assert csp_violations(page, page.csp_console) == []


# Where each of a history row's fields is drawn, left to right, and whether it shows.
HISTORY_ROW = """(name) => {
  const row = [...document.querySelectorAll('.history-table tbody tr')].find((r) => r.textContent.includes(name));
  return Object.fromEntries(['history-status', 'history-uploaded', 'history-feedback'].map((field) => {
    const cell = row.querySelector('.' + field), box = cell.getBoundingClientRect();
    return [field, {
      text: cell.innerText.trim(), label: getComputedStyle(cell, '::before').content,
      left: box.left, right: box.right, shown: box.width > 0 && box.height > 0,
    }];
  }));
}"""


@pytest.mark.parametrize("width", WIDTHS)
def test_the_history_shows_every_column_on_a_phone_and_a_table_on_a_desktop(page, mnist, png, width):  # noqa: F811
    user = UserFactory()
    said = done_image(user, png, digit=7)
    DigitImage.objects.filter(pk=said.pk).update(original_name="IMG_20261127_164012345_HDR_portrait.jpg")
    Feedback.objects.create(image=said, suggested_number="1")
    Flag.objects.create(image=said, correct_number="4", flagged_by=ReviewerFactory())
    DigitImageFactory(owner=user, status=DigitImage.Status.FAILED, original_name="holiday.jpg", data=png)
    number_photo(user, mnist, range(12), width=2400, height=400, side=260, name="long-number.png")
    log_in(page, user.username)
    screen(page, width)
    page.goto("/history/")
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the history overflows a {width} px screen by {overflow} px"
    row = page.evaluate(HISTORY_ROW, "IMG_20261127")
    assert row["history-status"]["text"].endswith("Done")
    assert (
        "you said it is a 1" in row["history-feedback"]["text"] and "staff: is a 4" in row["history-feedback"]["text"]
    )
    for field, cell in row.items():
        assert cell["shown"] and cell["left"] >= 0 and cell["right"] <= width, (field, cell)
    if width < 768:  # a card per image: each field says what it is
        assert [cell["label"] for cell in row.values()] == ['"Status"', '"Uploaded"', '"Feedback"']
        assert page.locator(".history-table thead").bounding_box()["height"] <= 1  # for screen readers only
        shot(page, "34-history-phone")
    else:  # the table, with its header row
        assert page.get_by_role("columnheader", name="Uploaded").is_visible()
        assert (
            page.evaluate("getComputedStyle(document.querySelector('.history-table tbody tr')).display") == "table-row"
        )


# WCAG 2.2 A and AA, as axe-core tags its rules.
AXE_OPTIONS = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]}}


def axe_violations(tab, path: str) -> list[str]:
    """What axe-core finds wrong on ``path`` (a rule, how bad, and the first few places)."""
    assert tab.goto(path).ok, path
    tab.wait_for_load_state("networkidle")
    found = Axe().run(tab, options=AXE_OPTIONS).response["violations"]
    return [
        f"{path}: {rule['id']} ({rule['impact']}) x{len(rule['nodes'])}: "
        + "; ".join(" ".join(node["target"]) for node in rule["nodes"][:5])
        for rule in found
    ]


@pytest.mark.parametrize("width", WIDTHS)
def test_axe_finds_nothing_wrong_on_any_page_the_admin_review_queue_included(page, mnist, png, width):  # noqa: F811
    screen(page, width)
    found = [violation for path in ("/", "/signup/", "/accounts/login/") for violation in axe_violations(page, path)]
    reviewer = ReviewerFactory()
    digit = done_image(reviewer, png, digit=7)
    Feedback.objects.create(image=digit, suggested_number="1")
    number = number_photo(reviewer, mnist, range(12), width=3000, height=1000, side=420, name="long-number.png")
    DigitImageFactory(owner=reviewer, status=DigitImage.Status.FAILED, original_name="holiday.jpg", data=png)
    Token.objects.create(user=reviewer)
    log_in(page, reviewer.username)
    pages = (
        "/",
        digit.get_absolute_url(),
        number.get_absolute_url(),
        "/draw/",
        "/history/",
        "/stats/",
        "/account/api-token/",
        "/account/",
        "/admin/classifier/digitimage/?review=todo",
        "/admin/classifier/modelversion/",
    )
    found += [violation for path in pages for violation in axe_violations(page, path)]
    assert found == [], "\n".join(found)
