"""Where a number's labels go on its photo: "7 99.9%" over each digit's box, drawn at one size
on every screen, inside the picture, never on top of one another.

The photo scales with the page and the labels do not, so what fits depends on how wide the photo
is drawn. For each of a few widths (a CSS container query in ``site.css`` picks the widest the
photo reaches) the labels are laid out here for the narrowest photo of that width: a layout that
fits it fits any wider one, since the boxes move apart and the room around them grows while the
labels keep their size. A label sits centred over its box (pushed in at the picture's edges) in
a row of labels above the boxes or below them, the rows taken in turn, nearest first. Where the
photo has no room for every label around its boxes, the labels shrink to the digit alone; where
there is still none, they go over the top of the boxes; and in the last resort the photo shows
the boxes only, and the page's list of digits says the rest."""

from __future__ import annotations

import math
from collections.abc import Sequence

# A label: 13 px bold monospace, so that it is as wide as its characters (the "ch" of site.css),
# in a 1 px border and 3 px of padding either side.
LABEL_HEIGHT_PX = 18
LABEL_EXTRA_PX = 8
# The widest character of the monospace fonts site.css names, at 13 px (0.55 to 0.62 em).
CHARACTER_PX = 8.1
ROW_PX = LABEL_HEIGHT_PX + 2  # one row of labels above the next
GAP_PX = 3  # between a label and its neighbour, or the boxes
# Rounding in the browser (percentages, sub-pixel layout) never takes more than this.
SLACK_PX = 1

# The narrowest the photo is drawn: the page's column on a 280 px screen; and, where the picture
# is tall, as wide as makes it 360 px tall (site.css never draws it shorter where it fits).
NARROWEST_PX = 256
SHORTEST_PX = 360
# The widths from which site.css switches to the next layout (a phone's column or a tablet's, a
# laptop's, a desktop's). Keep the two in step.
WIDTHS = (336, 456, 546)

FULL, DIGIT, NONE = "full", "digit", "none"


def _rows(room_px: float) -> int:
    """How many rows of labels fit in ``room_px`` above (or below) the boxes."""
    usable = room_px - GAP_PX - LABEL_HEIGHT_PX - SLACK_PX
    return 0 if usable < 0 else int(usable // ROW_PX) + 1


def _layout(
    centres: Sequence[float],
    widths_px: Sequence[float],
    *,
    top: float,
    bottom: float,
    photo_width: float,
    photo_height: float,
    over_boxes: bool,
) -> list[str] | None:
    """Each label's CSS ``top`` for a photo of ``photo_width`` x ``photo_height`` px, its boxes
    between ``top`` and ``bottom`` (fractions of its height); None where they do not all fit.

    ``centres``: each box's centre as a fraction of the width; ``widths_px``: each label's."""
    above, below = _rows(top * photo_height), _rows((1 - bottom) * photo_height)
    slots = []
    for row in range(max(above, below)):
        if row < above:
            slots.append(f"calc({top:.4%} - {GAP_PX + LABEL_HEIGHT_PX + row * ROW_PX}px)")
        if row < below:
            slots.append(f"calc({bottom:.4%} + {GAP_PX + row * ROW_PX}px)")
    if over_boxes:
        band = (bottom - top) * photo_height - LABEL_HEIGHT_PX - SLACK_PX
        slots += [f"calc({top:.4%} + {row * ROW_PX}px)" for row in range(int(band // ROW_PX) + 1 if band >= 0 else 0)]
    # Left to right, each label in the first row with room for it: as few rows as can be. Two
    # labels in a row stay apart on any wider photo as long as they are placed in this order.
    ends = [-math.inf] * len(slots)
    tops = [""] * len(centres)
    for index in sorted(range(len(centres)), key=centres.__getitem__):
        centre, width = centres[index], widths_px[index]
        if width + SLACK_PX > photo_width:
            return None
        left = min(max(centre * photo_width - width / 2, 0), photo_width - width)
        slot = next((k for k, end in enumerate(ends) if end + GAP_PX + SLACK_PX <= left), None)
        if slot is None:
            return None
        ends[slot] = left + width
        tops[index] = slots[slot]
    return tops


def reading_label_styles(
    *, boxes: Sequence[Sequence[int]], labels: Sequence[str], image_width: int, image_height: int
) -> tuple[str, list[str]]:
    """The photo's ``style`` (its shape, and for each width whether its labels are whole, the
    digit alone or not shown) and each label's (where its box is, where it goes at each width).

    ``boxes``: each digit's (x, y, width, height) in the image's pixels, left to right;
    ``labels``: each one's whole label, its digit first."""
    centres = [(x + w / 2) / image_width for x, _, w, _ in boxes]
    top = min(y for _, y, _, _ in boxes) / image_height
    bottom = max(y + h for _, y, _, h in boxes) / image_height
    ratio = image_width / image_height
    photo = [f"aspect-ratio: {image_width} / {image_height}", f"max-width: calc(max(60vh, 360px) * {ratio:.6f})"]
    full = [len(label) * CHARACTER_PX + LABEL_EXTRA_PX for label in labels]
    digit = [CHARACTER_PX + LABEL_EXTRA_PX] * len(labels)
    tops_by_width: list[list[str]] = []
    for width in (0, *WIDTHS):
        photo_width = min(NARROWEST_PX, SHORTEST_PX * ratio) if width == 0 else width
        size = {"top": top, "bottom": bottom, "photo_width": photo_width, "photo_height": photo_width / ratio}
        mode, tops = NONE, ["0px"] * len(labels)
        for candidate, widths, over_boxes in ((FULL, full, False), (DIGIT, digit, False), (DIGIT, digit, True)):
            if (found := _layout(centres, widths, over_boxes=over_boxes, **size)) is not None:
                mode, tops = candidate, found
                break
        photo += [
            f"--full-{width}: {int(mode == FULL)}",
            f"--more-{width}: {'inline' if mode == FULL else 'none'}",
            f"--shown-{width}: {'none' if mode == NONE else 'block'}",
        ]
        tops_by_width.append(tops)
    styles = []
    for index, (centre, label) in enumerate(zip(centres, labels, strict=True)):
        where = [f"--top-{width}: {tops[index]}" for width, tops in zip((0, *WIDTHS), tops_by_width, strict=True)]
        styles.append("; ".join([f"--cx: {centre:.4%}", f"--n-full: {len(label)}", *where]))
    return "; ".join(photo), styles
