"""A number's labels on its photo, laid out for each width as site.css draws them: inside the
picture and apart from one another on every photo at least that wide (the browser test checks
real Chromium at two widths)."""

import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from classifier.reading_labels import (
    CHARACTER_PX,
    LABEL_EXTRA_PX,
    LABEL_HEIGHT_PX,
    NARROWEST_PX,
    SHORTEST_PX,
    WIDTHS,
    reading_label_styles,
)

SITE_CSS = Path(__file__).resolve().parents[2] / "static" / "css" / "site.css"


def _properties(style: str) -> dict[str, str]:
    return dict(part.split(": ", 1) for part in style.split("; "))


def drawn(photo_style: str, label_styles: list[str], *, layout: int, width: float, ratio: float, ch: float):
    """Each shown label's (left, top, right, bottom) in px, as site.css places it with the
    layout for ``layout`` px on a photo ``width`` px wide, in a font ``ch`` px a character."""
    photo = _properties(photo_style)
    if photo[f"--shown-{layout}"] == "none":
        return []
    full, height = int(photo[f"--full-{layout}"]), width / ratio
    rects = []
    for style in label_styles:
        label = _properties(style)
        characters = 1 + (int(label["--n-full"]) - 1) * full
        size = characters * ch + LABEL_EXTRA_PX
        centre = float(label["--cx"].rstrip("%")) / 100 * width
        left = max(0, min(centre - size / 2, width - size))
        percent, sign, px = re.fullmatch(r"calc\(([\d.]+)% ([+-]) (\d+)px\)", label[f"--top-{layout}"]).groups()
        top = float(percent) / 100 * height + (int(px) if sign == "+" else -int(px))
        rects.append((left, top, left + size, top + LABEL_HEIGHT_PX))
    return rects


def problems(rects, width: float, height: float, rounding: float = 1e-6) -> list[str]:
    found = [
        f"outside: {r}"
        for r in rects
        if r[0] < -rounding or r[1] < -rounding or r[2] > width + rounding or r[3] > height + rounding
    ]
    for i, a in enumerate(rects):
        found += [
            f"{a} over {b}" for b in rects[i + 1 :] if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
        ]
    return found


@st.composite
def numbers(draw):
    """A photo and the boxes of its digits, left to right, each inside it."""
    width, height = draw(st.integers(20, 4000)), draw(st.integers(20, 4000))
    count = draw(st.integers(1, 12))
    lefts = sorted(draw(st.lists(st.integers(0, width - 2), min_size=count, max_size=count)))
    boxes = []
    for left in lefts:
        top = draw(st.integers(0, height - 2))
        boxes.append((left, top, draw(st.integers(1, width - left)), draw(st.integers(1, height - top))))
    labels = [draw(st.sampled_from(["7 99.9%", "1 62% ?", "0 100%", "4 8.5% ?"])) for _ in boxes]
    return width, height, boxes, labels


@settings(max_examples=300, deadline=None)
@given(numbers())
def test_every_layout_keeps_its_labels_inside_the_photo_and_apart_on_any_wider_photo(number):
    width, height, boxes, labels = number
    photo_style, label_styles = reading_label_styles(boxes=boxes, labels=labels, image_width=width, image_height=height)
    ratio = width / height
    for layout in (0, *WIDTHS):
        narrowest = min(NARROWEST_PX, SHORTEST_PX * ratio) if layout == 0 else layout
        for photo_width in (narrowest, narrowest * 1.37, 700, 1400):
            for ch in (CHARACTER_PX, 7.15):  # the widest monospace font site.css names, and the narrowest
                rects = drawn(photo_style, label_styles, layout=layout, width=photo_width, ratio=ratio, ch=ch)
                assert problems(rects, photo_width, photo_width / ratio) == [], (layout, photo_width, ch)


def test_a_long_number_gets_whole_labels_where_there_is_room_and_digits_alone_on_a_phone():
    pitch = 250  # twelve digits across 3000 px, each 150 x 420, in the middle of the height
    boxes = [(50 + pitch * k, 290, 150, 420) for k in range(12)]
    photo_style, label_styles = reading_label_styles(
        boxes=boxes, labels=["7 99.9%"] * 12, image_width=3000, image_height=1000
    )
    photo = _properties(photo_style)
    assert [photo[f"--full-{layout}"] for layout in (0, *WIDTHS)] == ["0", "0", "1", "1"]
    assert photo["aspect-ratio"] == "3000 / 1000"
    # Whole labels take turns above the boxes and below them.
    tops = [_properties(style)["--top-546"] for style in label_styles]
    assert tops[:2] == ["calc(29.0000% - 21px)", "calc(71.0000% + 3px)"]


def test_a_photo_with_no_room_for_any_label_shows_the_boxes_alone():
    photo_style, _ = reading_label_styles(
        boxes=[(0, 0, 30000 // 12, 100)] * 12, labels=["7 99.9%"] * 12, image_width=30000, image_height=100
    )
    assert all(_properties(photo_style)[f"--shown-{layout}"] == "none" for layout in (0, *WIDTHS))


def test_site_css_switches_layouts_at_the_widths_they_are_made_for():
    css = SITE_CSS.read_text()
    for layout in WIDTHS:
        assert f"@container reading-photo (min-width: {layout}px)" in css
        assert f"--top: var(--top-{layout})" in css
