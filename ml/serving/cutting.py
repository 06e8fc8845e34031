"""Ways to cut a group of strokes in two: the cutting geometry of ``ml.serving.segment``.

Touching digits are cut along straight lines through their thinnest passes, upright or leaning
as slanted writing does, and along the cheapest paths bending down through the ink ("drop
fall"); each side is trimmed of the other digit's crumbs. Masks in, masks out: which cut is
kept is the segmenter's choice (its scorer reads the pieces), so this module calls nothing of
the reading pipeline and depends on numpy and OpenCV alone.
"""

from __future__ import annotations

import cv2
import numpy as np

# A cut leaves each side at least this share of the group's height wide (a 1 is narrow).
MIN_PIECE_WIDTH = 0.12
# Cuts tried per group: lines upright or leaning by these slopes (x per y: slanted writing
# touches along a slant), through the thinnest passes, at least CUT_SPACING pixels apart.
CUT_SLOPES = (0.0, -0.3, 0.3)
CUTS_PER_SLOPE = 2
EVEN_CUTS = 8
CUT_SPACING = 2
# Bent cuts: the cheapest paths down through the ink, one near each of PATH_CUTS columns
# spread across the group, wandering at most PATH_BAND of its height from it; each sideways
# step costs PATH_STEP of an ink pixel, so that a path bends only to pass between strokes.
PATH_CUTS = 4
PATH_BAND = 0.2
PATH_STEP = 0.1
# Pieces of a cut side smaller than this share of its largest are crumbs of the other digit.
CRUMB_SHARE = 0.08


def cuts_of(member: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Ways to cut a group in two (left, right) along straight lines through its thinnest
    passes (fewest ink pixels crossed), upright or leaning as slanted writing does; the
    thinnest first, each side left wide enough for a digit. Worked out in the group's box,
    a small part of its page."""
    window = _box_of(member)

    def on_page(side: np.ndarray) -> np.ndarray:
        page = np.zeros_like(member)
        page[window] = side
        return page

    return [(on_page(left), on_page(right)) for left, right in _cuts_in_box(member[window])]


def _cuts_in_box(member: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    ys, xs = np.nonzero(member)
    height = int(ys.max() - ys.min() + 1)
    margin = max(1, int(np.ceil(MIN_PIECE_WIDTH * height)))
    middle = (ys.min() + ys.max()) / 2
    found = []
    for slope in CUT_SLOPES:
        # Where each ink pixel lies across the cut line's direction: a cut keeps those below c.
        across = np.round(xs - slope * (ys - middle)).astype(int)
        low = across.min()
        thickness = np.bincount(across - low)
        inside = np.arange(margin, len(thickness) - margin)
        if not len(inside):
            continue
        # The thinnest passes, and upright cuts across the whole middle: where a stroke runs
        # into an upright one (a 4's bar into a 0) the join is no thin column.
        chosen: list[int] = []
        if slope == 0:
            chosen = [int(c) for c in np.unique(np.linspace(inside[0], inside[-1], EVEN_CUTS).round())]
        for position in inside[np.argsort(thickness[inside], kind="stable")]:
            if all(abs(position - other) >= CUT_SPACING for other in chosen):
                chosen.append(int(position))
            if len(chosen) >= CUTS_PER_SLOPE + (EVEN_CUTS if slope == 0 else 0):
                break
        for position in chosen:
            left = np.zeros_like(member)
            keep = across - low < position
            left[ys[keep], xs[keep]] = True
            found.append((int(thickness[position]), slope != 0, _trimmed(left), _trimmed(member & ~left)))
    found += _path_cuts(member, margin)
    found.sort(key=lambda cut: cut[:2])
    # Lines and paths through the same gap part the ink alike: each parting is read once.
    unique, seen = [], set()
    for _, _, left, right in found:
        key = np.packbits(left).tobytes()
        if key not in seen:
            seen.add(key)
            unique.append((left, right))
    return unique


def _path_cuts(member: np.ndarray, margin: int) -> list[tuple[int, bool, np.ndarray, np.ndarray]]:
    """Cuts along the cheapest path from top to bottom through the group's box ("drop fall"):
    each row's cut column moves at most a pixel from the last, crossing as little ink as it can.
    Touching digits often meet where no straight line passes between them (a 7's bar over the
    next digit's bowl, a 0 leaning on a 4)."""
    rows, cols = np.flatnonzero(member.any(axis=1)), np.flatnonzero(member.any(axis=0))
    box = member[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = box.shape
    inside = np.arange(margin, width - margin)
    if len(inside) < 2:
        return []
    band = max(2, round(PATH_BAND * height))
    centres = np.unique(np.linspace(inside[0], inside[-1], PATH_CUTS).round()).astype(int)
    cost = box.astype(np.float32)
    x = np.arange(width)
    # All the paths at once, one row of each a step: (paths, width) costs so far.
    allowed = (np.abs(x[None, :] - centres[:, None]) <= band) & (x >= margin) & (x < width - margin)
    total = np.where(allowed, cost[0], np.inf)
    moves = np.zeros((height, len(centres), width), dtype=np.int8)
    wall = np.full((len(centres), 1), np.inf, dtype=np.float32)
    for r in range(1, height):
        options = np.stack(
            [
                np.concatenate([wall, total[:, :-1]], axis=1) + PATH_STEP,  # from the column to the left
                total,
                np.concatenate([total[:, 1:], wall], axis=1) + PATH_STEP,  # from the column to the right
            ]
        )
        step = np.argmin(options, axis=0)
        moves[r] = step - 1
        total = np.where(allowed, np.take_along_axis(options, step[None], axis=0)[0] + cost[r], np.inf)
    found = []
    for n in range(len(centres)):
        column = int(np.argmin(total[n]))
        path = np.empty(height, dtype=int)
        for r in range(height - 1, -1, -1):
            path[r] = column
            column += int(moves[r, n, column])
        left_box = box & (x[None, :] < path[:, None])
        left = np.zeros_like(member)
        left[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = left_box
        crossed = int(box[np.arange(height), path].sum())
        found.append((crossed, True, _trimmed(left), _trimmed(member & ~left)))
    return found


def _trimmed(side: np.ndarray) -> np.ndarray:
    """A side of a cut without the crumbs of the other digit's strokes that it crossed."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(side.astype(np.uint8), connectivity=8)
    if count <= 2:
        return side
    areas = stats[:, cv2.CC_STAT_AREA]
    keep = areas >= CRUMB_SHARE * areas[1:].max()
    keep[0] = False  # the paper
    return keep[labels]


def _box_of(member: np.ndarray) -> tuple[slice, slice]:
    """The box of a group's ink (all of the map when it holds none)."""
    rows, cols = np.flatnonzero(member.any(axis=1)), np.flatnonzero(member.any(axis=0))
    if not len(rows):
        return slice(0, member.shape[0]), slice(0, member.shape[1])
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
