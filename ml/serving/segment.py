"""One line of handwritten digits -> each digit's MNIST-style input and its box, left to right.

The ink is found as for a single digit (``ml.serving.preprocessing.InkMap``: polarity, paper,
ink map without the lines of ruled or squared paper, the digit mask), so photos, scans and
canvas drawings read the same way. This module works on that ink map through its methods alone
(crops, turns, masks, each piece's model input, in batches), and asks its scorer through
scoring tasks that the caller runs (``lockstep``): an upload's reading goes one way, from the
caller down to the ink, and never calls back. Then:

0. a line of writing photographed askew (the centres of its strokes along a turned line) is
   turned level, and its boxes turned back onto the photo in the end;
1. connected components of the mask are the strokes;
2. strokes that overlap horizontally are pieces of one digit (a 5's detached bar, a broken 4,
   a dot over a stroke): people write a number's digits side by side, not above each other;
3. groups too short to be a digit join the digit whose columns they reach, or are dropped (a
   speck, a full stop, a dash);
4. with a scoring callable (``ml.serving.numbers.split_scorer``: the model and its detector, so that
   this module needs no model): neighbours that read better as one digit are joined, and a
   group it doubts (two touching digits are a "number" to the detector) or wide for one digit
   is cut along straight lines, upright or slanted, and along the cheapest paths bending down
   through the ink (``ml.serving.cutting``), keeping the cut whose pieces it reads best, when
   they beat the group read whole by a margin that shrinks as the group widens; without one,
   only a group far wider than a digit is cut, at its thinnest pass;
5. each digit becomes its own 28x28 input through ``digit_input``, the single-digit path.

One digit found is exactly the single-digit input (``to_model_input``): the whole mask, with
nothing dropped, so single digits read as they always have. Several lines of writing, more
than ``MAX_DIGITS`` digits, or more than ``MAX_MARKS`` separate marks (a dot grid, a texture),
are refused with a reason for people.

Kept whole: one module past STYLE's 400 lines on purpose: every step works on one ``Page`` (mask, strokes,
groups) and its rules refer to the others' (a group's width decides a cut, a cut's pieces are
groups again); what needs a model stays out, in ``ml.serving.numbers``, and the geometry of a
cut, which needs nothing of the rest, in ``ml.serving.cutting``. Split further (the page's
groups apart from their joins and cuts, or the scoring tasks apart), the parts call each other
both ways or more often (``bench/hops.py``).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import cv2
import numpy as np

from ml.serving.cutting import cuts_of
from ml.serving.preprocessing import (
    MAX_PIXELS,
    InkMap,
    ModelInput,
    NothingToRead,
    Placement,
    PreprocessingError,
    decode_pixels,
    open_lazily,
)

# A number longer than this is not what the product reads (meter readings, amounts, postcodes).
MAX_DIGITS = 12
# What an image is read as (``ml.serving.numbers.read_numbers``): ``auto`` chooses between one digit
# and a number on the evidence; people who know what they sent say ``digit`` or ``number``.
from ml.serving.readings import AUTO, DIGIT, NUMBER, READINGS  # noqa: E402, F401  (numbers imports them here)

# A line longer than this many times its height holds more than MAX_DIGITS digits, written
# apart (each digit at most about as wide as tall, with gaps) or touching.
LONGEST_LINE = 1.5 * MAX_DIGITS
# Strokes are one digit's pieces when their column ranges overlap by this share of the narrower.
MERGE_OVERLAP = 0.5
# More separate marks than this on a page are a pattern, a texture or a drawing in dots, not
# handwriting: refused before they are grouped. (At most 13 on the 1,092 pages of real digits,
# synthetic numbers and photos measured for issue 42; this allows 40 a digit for 12 digits.)
MAX_MARKS = 500
# Neighbours at most this share of the line's height apart may be one digit's pieces.
JOIN_GAP = 0.08
# ... and are one when both are shorter than this share of it and one stands above the
# other (their rows overlapping by at most STACKED_OVERLAP of the shorter's height).
JOIN_SHORT = 0.75
STACKED_OVERLAP = 0.2
# In a number, strokes with at least this share of the largest stroke's ink are kept (a
# single digit keeps a twelfth: ``ml.serving.preprocessing``).
STROKE_SHARE = 0.02
# A group shorter than this share of the tallest is a speck, a full stop or a dash, not a digit.
SPECK_HEIGHT = 0.35
# Width over height: MNIST digits are at most about as wide as tall (a wide 0, 2 or 4). Pieces
# at most SPLIT_WIDTH wide may be one digit's; a group wider than MUST_SPLIT times the line's
# height is several digits and is cut. (Width alone does not say "touching": on the tuning
# seed single digits reached 1.19 and touching pairs went down to 0.77; the scorer says it.)
SPLIT_WIDTH = 0.9
MUST_SPLIT = 1.6
# A group is tried in pieces when its score is below SURE_WHOLE (a 1 touching a 2 is no wider
# than a 0: on numbers of the tuning seeds single digits scored a median 0.97 and touching
# pairs nearly 0, the detector finding them a "number"), or when wider than SPLIT_WIDE; never
# when narrower than MIN_PAIR_WIDTH (a 1 and a half). A piece of a cut narrower than PAIR_WIDTH
# is not cut again. (On 1,816 groups of tuning seeds 100-101 this tries 13% of the groups.)
SURE_WHOLE = 0.3
SURE_ALONE = 0.2
SPLIT_WIDE = 1.1
MIN_PAIR_WIDTH = 0.5
PAIR_WIDTH = 0.8
# A cut is kept when log(pieces' scores multiplied) - log(whole's score) exceeds
# CUT_MARGIN - CUT_WIDTH_WEIGHT * (width over height - 1): a group as wide as tall needs its
# pieces e times surer than the whole. Chosen on the same groups: it misjudged 13 of them
# where the rule before (the least sure piece beating the whole by 0.1) misjudged 22.
CUT_MARGIN = 1.0
CUT_WIDTH_WEIGHT = 1.0
SCORE_FLOOR = 1e-3
# Of a group's cuts, the SCREENED_CUTS whose pieces the glance finds likeliest digits are read.
# On 300 numbers of tuning seed 100 the same numbers were read exactly with 5 (all cuts read:
# 5,686 readings; 5: 1,820 readings and 5,712 glances, each about an eighth of a reading's
# cost); with 3, 1 touching number more of 85 was misread.
SCREENED_CUTS = 5
# A page is cut down to its writing and this many pixels of paper around it.
WINDOW_MARGIN = 2
# Writing photographed askew: turned level when the centres of its strokes (those with at least
# ASKEW_STROKE of the largest's pixels, spread over ASKEW_SPREAD of a stroke's height or more)
# lie along a line turned LEVEL_WITHIN to ASKEW_MOST degrees.
ASKEW_STROKE = 0.15
ASKEW_SPREAD = 1.5
LEVEL_WITHIN = 7.0
ASKEW_MOST = 35.0
# Ink bands (rows with ink, separated by empty rows) at least this share of the tallest band
# tall, holding this share of the ink, are lines of writing (a 5's bar or a dot is neither)
# when the empty rows between them are this share of the tallest band (a digit broken across
# its middle leaves a few).
LINE_HEIGHT = 0.4
LINE_INK = 0.1
LINE_GAP = 0.25

# How sure a scorer is that each of (n, 28, 28) inputs is one digit, in [0, 1], two ways: READ,
# the model's reading (what keeps or drops a cut), and GLANCE, a cheaper look (the detector
# alone) that picks which of many cuts are worth reading.
READ, GLANCE = "read", "glance"
Scorer = Mapping[str, Callable[[np.ndarray], np.ndarray]]
T = TypeVar("T")


@dataclass(frozen=True)
class Segment:
    """One digit of a number: its model input and its box (x, y, width, height) on the image."""

    model_input: ModelInput
    box: tuple[int, int, int, int]


@dataclass
class Page:
    """An image's line of writing as groups of strokes, each maybe one digit, left to right, on
    its ink (``ink_map``): what ``resolve`` joins and cuts into digits."""

    ink_map: InkMap
    groups: list[np.ndarray]
    # Writing photographed askew is turned level first (``InkMap.turned``): then this maps the
    # page's pixels back onto the ink map of ``placement`` (a 2x3 affine).
    unturn: np.ndarray | None = None
    # The image read whole (``read_whole``), as photographed: an image of one digit keeps its
    # single-digit input and box.
    whole: Page | None = None
    # Each piece's model input, made once: a piece is scored, then read. Keyed by id(), with
    # the piece kept alive beside it so that no other array can take its id.
    _inputs: dict[int, tuple[np.ndarray, ModelInput]] = field(default_factory=dict)

    @property
    def ink(self) -> np.ndarray:
        return self.ink_map.ink

    @property
    def mask(self) -> np.ndarray:
        return self.ink_map.mask

    @property
    def placement(self) -> Placement:
        return self.ink_map.placement

    @property
    def scale(self) -> float:
        """Full-size image pixels per decoded pixel."""
        return self.ink_map.scale

    def inputs_of(self, pieces: list[np.ndarray]) -> list[ModelInput]:
        """Each piece's model input, those not made yet made by the ink map in one call."""
        missing: dict[int, np.ndarray] = {}
        for piece in pieces:
            if id(piece) not in self._inputs and id(piece) not in missing:
                whole = self._whole_input(piece)
                if whole is None:
                    missing[id(piece)] = piece
                else:
                    self._inputs[id(piece)] = (piece, whole)
        made = self.ink_map.inputs(list(missing.values())) if missing else []
        for piece, model_input in zip(missing.values(), made, strict=True):
            self._inputs[id(piece)] = (piece, model_input)
        return [self._inputs[id(piece)][1] for piece in pieces]

    def arrays_of(self, pieces: list[np.ndarray]) -> np.ndarray:
        """The pieces' model inputs as one (n, 28, 28) batch, for a scorer."""
        return np.stack([model_input.array for model_input in self.inputs_of(pieces)])

    def _whole_input(self, piece: np.ndarray) -> ModelInput | None:
        """The image read whole's input where ``piece`` is all of its mask, on the same ink (a
        page of one group, not turned): the same input, not made twice."""
        whole = self.whole
        if whole is None or whole is self or self.unturn is not None or len(self.groups) != 1:
            return None
        step = whole.placement.step
        top = (self.placement.top - whole.placement.top) // step
        left = (self.placement.left - whole.placement.left) // step
        height, width = piece.shape
        if np.count_nonzero(piece) != np.count_nonzero(whole.mask):
            return None
        if not np.array_equal(piece, whole.mask[top : top + height, left : left + width]):
            return None
        return whole.inputs_of([whole.mask])[0]

    @property
    def inputs(self) -> list[ModelInput]:
        return self.inputs_of(self.groups)


def segment_digits(data: bytes, *, score: Scorer | None = None) -> list[Segment]:
    """The digits of the one line of writing in an image, left to right. ``score`` reads
    doubtful groups (touching digits, a digit's scattered pieces); without it, only a group
    too wide for one digit is cut, at its thinnest pass."""
    page = read_page(data)
    if score is None:
        return segments_of(page, [piece for group in page.groups for piece in _cut_again(group)])
    return resolve(page, score[READ](page.arrays_of(page.groups)), score)


def read_whole(data: bytes) -> Page:
    """Decode an image and find its ink: the page read as one digit, exactly as the
    single-digit path reads it (``to_model_input``; ``whole_segment`` is its input and box).
    Decoding and the ink are the costly part of a reading: ``page_of`` goes on from here."""
    image, info = open_lazily(data, max_pixels=MAX_PIXELS)
    decode_pixels(image)
    try:
        # A JPEG may be decoded at a reduced scale (DCT scaling): boxes are on the full-size image.
        ink_map = InkMap.of(image, scale=info.width / image.width)
    except PreprocessingError as exc:
        # A strip far longer than a number (a line of hundreds of digits) shrinks to nothing
        # at the working resolution: say what it is rather than "blank".
        if max(info.width, info.height) > LONGEST_LINE * min(info.width, info.height):
            raise LineTooLong(
                _too_long(f"this image is a strip far longer than that ({info.width}x{info.height} pixels)")
            ) from exc
        if isinstance(exc, NothingToRead):
            raise NothingToRead(box=(0, 0, info.width, info.height)) from exc
        raise
    return Page(ink_map, [ink_map.mask])


def whole_segment(whole: Page) -> Segment:
    """The single-digit reading's input and box: the whole mask of ``read_whole``'s page."""
    return Segment(whole.inputs_of([whole.mask])[0], _box(whole.mask, whole))


def read_page(data: bytes) -> Page:
    """Decode an image and find its groups of strokes (``page_of``)."""
    return page_of(read_whole(data))


def page_of(whole: Page) -> Page:
    """A decoded page's line of writing as groups of strokes; refuse several lines, or more
    than ``MAX_DIGITS`` groups, with a reason for people."""
    angle = _askew(whole.mask)
    page = None
    if angle:
        # Writing photographed askew, read level; as photographed where that finds one digit.
        with contextlib.suppress(PreprocessingError):
            page = _page_of(*whole.ink_map.turned(angle))
        if page is not None and len(page.groups) < 2:
            page = None
    if page is None:
        page = _page_of(whole.ink_map)
    page.whole = whole
    return page


def _page_of(ink_map: InkMap, unturn: np.ndarray | None = None) -> Page:
    mask = ink_map.mask
    _refuse_several_lines(mask, ink_map.ink)
    _refuse_too_long(ink_map.window(mask))
    # From here on only the writing and a little paper around it: the rest of a photo is
    # work for nothing, a mask the size of the page for every piece of every cut.
    window = ink_map.window(mask, margin=WINDOW_MARGIN)
    grouped, count = _grouped(mask[window])
    if count > 1:
        # A single digit drops components with less than a twelfth of its largest's ink:
        # noise. In a number the largest may be a bold 0 or two touching digits, beside a thin
        # 1 or a flat 5 with less than that: a lower share keeps them (the groups drop specks).
        # What is one group at the single digit's share stays so: one digit reads as it did.
        kept = ink_map.strokes(STROKE_SHARE)
        window = ink_map.window(mask | kept, margin=WINDOW_MARGIN)
        grouped, count = _grouped(kept[window])
    # Refused before a mask is made for each group: their cost is known first.
    _refuse_too_many(count, LineTooLong)
    groups = [grouped == number for number in range(1, count + 1)]
    if unturn is None:
        return Page(ink_map.cropped(window), groups)
    # The window's corner is where the page's pixel (0, 0) lies on the level map.
    rows, cols = window
    shifted = unturn.copy()
    shifted[:, 2] += unturn[:, :2] @ np.array([cols.start, rows.start], dtype=float)
    return Page(ink_map.cropped(window, moved=False), groups, unturn=shifted)


def _askew(mask: np.ndarray) -> float:
    """How many degrees a line of writing is turned (counter-clockwise positive), from the
    centres of its strokes: 0 where they are level within LEVEL_WITHIN degrees, where there are
    fewer than two strokes side by side, or where they do not lie along a line."""
    count, _, stats, centres = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA].astype(float)
    if count < 3:
        return 0.0
    big = areas >= ASKEW_STROKE * areas.max()
    xs, ys, weights = centres[1:, 0][big], centres[1:, 1][big], areas[big]
    height = float(np.median(stats[1:, cv2.CC_STAT_HEIGHT][big]))
    if len(xs) < 2 or np.ptp(xs) < ASKEW_SPREAD * height:
        return 0.0
    slope, offset = np.polyfit(xs, ys, 1, w=np.sqrt(weights))
    # Along a line: most centres within a third of a stroke's height of it (a 5's bar, a
    # dot, lie off it).
    if np.median(np.abs(ys - (slope * xs + offset))) > height / 3:
        return 0.0
    angle = float(np.degrees(np.arctan(slope)))  # rows run down: a line falling to the right
    return angle if LEVEL_WITHIN <= abs(angle) <= ASKEW_MOST else 0.0


def resolve(page: Page, whole_scores: np.ndarray, score: Scorer) -> list[Segment]:
    """A page's digits: its groups (``whole_scores`` says how sure the scorer is of each as
    one digit) joined where pieces of one digit, and cut where touching digits."""
    return scored(resolving(page, whole_scores), score)


def resolving(page: Page, whole_scores: np.ndarray) -> Scoring[list[Segment]]:
    """``resolve`` as a scoring task (see ``lockstep``): the pages of a batch are resolved side
    by side, each round of their doubts judged in one call."""
    groups, wholes = yield from _joined(page.groups, list(whole_scores), page.arrays_of)
    # Widths are judged against the line's height: a 7's bar cut from its stem is wide for its
    # own height, not for a digit's.
    line = float(np.median([_extent(group.any(axis=1)) for group in groups]))
    splits = yield from lockstep(
        [
            _split(group, page.arrays_of, float(whole), line, alone=len(groups) == 1)
            for group, whole in zip(groups, wholes, strict=True)
        ]
    )
    pieces = [piece for parts, _ in splits for piece in parts]
    _refuse_too_many(len(pieces))
    return segments_of(page, pieces)


def resolving_pages(pages: list[Page], whole_scores: list[np.ndarray]) -> Scoring[list[list[Segment] | Exception]]:
    """The pages of a batch resolved side by side (``resolving``, ``lockstep``): each round of
    their doubts asked at once. A page's failure is its own: its exception in place of its
    segments, for the caller to tell people."""
    return (
        yield from lockstep(
            [_caught(resolving(page, scores)) for page, scores in zip(pages, whole_scores, strict=True)]
        )
    )


def _caught(task: Scoring[T]) -> Scoring[T | Exception]:
    try:
        return (yield from task)
    except Exception as exc:  # any failure of one page is that page's, reported by the caller
        return exc


# A scoring task: a generator that yields the (n, 28, 28) inputs it needs scored, by kind of
# score ({READ: inputs}), is sent their scores the same way, and returns its result. Written
# so, the doubts of every group of every image of a batch are scored together, one model call
# a round (a call of each kind), instead of one call per group.
Scoring = Generator[dict[str, np.ndarray], dict[str, np.ndarray], T]


def scored(task: Scoring[T], score: Scorer) -> T:
    """Run one scoring task with ``score`` answering its requests."""
    try:
        request = task.send(None)
        while True:
            request = task.send({kind: score[kind](inputs) for kind, inputs in request.items()})
    except StopIteration as done:
        return done.value


def lockstep(tasks: list[Scoring[T]]) -> Scoring[list[T]]:
    """Scoring tasks run side by side as one: each round, what all of them ask is asked at
    once, and each is sent its own share of the answer. Returns their results, in order."""
    results: list = [None] * len(tasks)
    waiting: dict[int, dict[str, np.ndarray]] = {}

    def advance(i: int, answer: dict[str, np.ndarray] | None) -> None:
        try:
            waiting[i] = tasks[i].send(answer)
        except StopIteration as done:
            waiting.pop(i, None)
            results[i] = done.value

    for i in range(len(tasks)):
        advance(i, None)
    while waiting:
        asking = dict(waiting)
        kinds = sorted({kind for request in asking.values() for kind in request})
        answers = yield {
            kind: np.concatenate([request[kind] for request in asking.values() if kind in request]) for kind in kinds
        }
        shares: dict[int, dict[str, np.ndarray]] = {i: {} for i in asking}
        for kind in kinds:
            askers = [i for i, request in asking.items() if kind in request]
            sizes = np.cumsum([len(asking[i][kind]) for i in askers])[:-1]
            for i, share in zip(askers, np.split(np.asarray(answers[kind]), sizes), strict=True):
                shares[i][kind] = share
        for i, answer in shares.items():
            advance(i, answer)
    return results


def segments_of(page: Page, pieces: list[np.ndarray]) -> list[Segment]:
    """Each piece of ``page``'s writing (a mask on it) as a digit: its input and its box; one
    piece is the image read whole."""
    if len(pieces) == 1:
        # The single-digit path: the whole mask, whatever the grouping dropped, as it was.
        return [whole_segment(page.whole or page)]
    return [
        Segment(model_input, _box(piece, page))
        for piece, model_input in zip(pieces, page.inputs_of(pieces), strict=True)
    ]


class LineTooLong(PreprocessingError):
    """More writing on one line than a number we read: a reason for people whatever the image
    was read as."""


def _too_long(found: str) -> str:
    return (
        f"We read up to {MAX_DIGITS} digits in one image and {found}: "
        "photograph a shorter number, or the number in parts."
    )


def _refuse_too_many(count: int, error: type[PreprocessingError] = PreprocessingError) -> None:
    if count > MAX_DIGITS:
        raise error(_too_long(f"found {count}"))


def _refuse_too_long(window: tuple[slice, slice]) -> None:
    """A line of writing (in ``window``) longer than ``LONGEST_LINE`` times its height holds more
    digits than we read, however they touch (a line of 200 digits is no 10-digit number)."""
    rows, cols = window
    height, width = rows.stop - rows.start, cols.stop - cols.start
    if width > LONGEST_LINE * height:
        raise LineTooLong(_too_long(f"this line of writing is far longer ({width / height:.0f} times as wide as tall)"))


def _refuse_several_lines(mask: np.ndarray, ink: np.ndarray) -> None:
    rows = mask.any(axis=1)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], rows.astype(np.int8), [0]])))
    bands = list(zip(edges[::2], edges[1::2], strict=True))
    if len(bands) < 2:
        return
    heights = np.array([end - start for start, end in bands])
    row_ink = np.where(mask, ink, 0.0).sum(axis=1)
    shares = np.array([row_ink[start:end].sum() for start, end in bands]) / max(row_ink.sum(), 1e-9)
    lines = [
        band
        for band, height, share in zip(bands, heights, shares, strict=True)
        if height >= LINE_HEIGHT * heights.max() and share >= LINE_INK
    ]
    apart = sum(below[0] - above[1] >= LINE_GAP * heights.max() for above, below in itertools.pairwise(lines))
    if apart:
        raise PreprocessingError(
            f"We read one line of digits and found {apart + 1} lines of writing: photograph one line at a time."
        )


def _grouped(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Strokes grouped where they overlap in columns, specks joined to the digit they reach or
    dropped: each pixel's group, numbered left to right from 1 (0: paper, or a speck dropped),
    and how many groups there are. Near-linear in the pixels and strokes (STYLE rule 13)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    _refuse_too_many_marks(count - 1)
    left, top = stats[1:, cv2.CC_STAT_LEFT], stats[1:, cv2.CC_STAT_TOP]
    right, bottom = left + stats[1:, cv2.CC_STAT_WIDTH], top + stats[1:, cv2.CC_STAT_HEIGHT]
    # Column ranges [start, end) of the groups, left to right, in one pass over the strokes in
    # order of their left edge (merging any two groups that overlapped enough until none did
    # cost the cube of the strokes: minutes for a dot grid). Groups that do not overlap enough
    # never hold one another, nor overlap any but their neighbours (a group reaching the one
    # beyond its neighbour would overlap the neighbour by half): a stroke that overlaps any
    # group enough overlaps the last one enough, and joining it leaves that group's overlap
    # with the others as it was, too little.
    group = np.empty(count - 1, dtype=np.intp)
    spans: list[list[int]] = []  # [start, end, its first stroke's label]
    for stroke in np.argsort(left, kind="stable"):
        start, end = int(left[stroke]), int(right[stroke])
        if spans and min(end, spans[-1][1]) - start >= MERGE_OVERLAP * min(end - start, spans[-1][1] - spans[-1][0]):
            joins = len(spans) - 1
            # A stroke within the overlap of the last two groups (each holds it) joins the one
            # begun higher on the page, as merging in the strokes' label order did.
            if joins and end <= spans[-2][1] and spans[-2][2] < spans[-1][2]:
                joins -= 1
            spans[joins][1] = max(end, spans[joins][1])
            spans[joins][2] = min(stroke, spans[joins][2])
        else:
            spans.append([start, end, stroke])
            joins = len(spans) - 1
        group[stroke] = joins
    starts, ends, _ = np.array(spans).T
    tops, bottoms = np.full(len(spans), mask.shape[0]), np.zeros(len(spans), dtype=int)
    np.minimum.at(tops, group, top)
    np.maximum.at(bottoms, group, bottom)
    number, count = _numbered(starts, ends, bottoms - tops)
    return np.concatenate([[0], number[group]])[labels], count


def _numbered(starts: np.ndarray, ends: np.ndarray, heights: np.ndarray) -> tuple[np.ndarray, int]:
    """Each group's digit, numbered left to right from 1 (0: a speck dropped), from the groups'
    column ranges [start, end) and heights; and how many digits there are."""
    tallest = heights.max()
    digit = heights >= SPECK_HEIGHT * tallest
    number = np.zeros(len(heights), dtype=np.intp)
    number[digit] = np.arange(1, np.count_nonzero(digit) + 1)
    # What is too short to be a digit is part of the digit it reaches in columns (a 5's bar
    # drawn off to the side, a dot over a stroke), else a speck, a full stop or a dash. The
    # digits' columns [first, last] rise with their order: those within reach are a run.
    speck = np.flatnonzero(~digit)
    first, last = starts[digit], ends[digit] - 1
    reach = JOIN_GAP * tallest
    nearest = np.searchsorted(last, starts[speck] - reach, side="left")
    beyond = np.searchsorted(first, ends[speck] - 1 + reach, side="right")
    alone = beyond - nearest == 1
    number[speck[alone]] = nearest[alone] + 1
    return number, int(np.count_nonzero(digit))


def _refuse_too_many_marks(count: int) -> None:
    """A page of more separate marks than ``MAX_MARKS`` is a pattern, a texture or a drawing in
    dots, not a line of handwritten digits: refused, with the reason, before any work per mark."""
    if count > MAX_MARKS:
        raise PreprocessingError(
            f"This image has too many separate marks ({count:,}) to read as digits: we read up to "
            f"{MAX_DIGITS} digits written in strokes. Photograph the number alone, on plain paper."
        )


def _joined(
    groups: list[np.ndarray], wholes: list[float], arrays_of: Callable[[list[np.ndarray]], np.ndarray]
) -> Scoring[tuple[list[np.ndarray], list[float]]]:
    """Neighbours close enough to be one digit's pieces (a 4 whose strokes do not meet, a 3
    with a stroke apart) joined where the scorer is surer of them as one digit than of the
    less sure of them alone; with each group's score."""
    line = float(np.median([_extent(group.any(axis=1)) for group in groups]))
    spans = [np.flatnonzero(group.any(axis=0))[[0, -1]] for group in groups]
    pairs, joined = [], {}
    for i in range(len(groups) - 1):
        rows = np.flatnonzero((groups[i] | groups[i + 1]).any(axis=1))
        close = spans[i + 1][0] - spans[i][1] <= JOIN_GAP * line
        narrow = spans[i + 1][1] - spans[i][0] + 1 <= SPLIT_WIDTH * (rows[-1] - rows[0] + 1)
        if close and narrow:
            pairs.append(i)
            joined[i] = groups[i] | groups[i + 1]
    if not pairs:
        return groups, wholes
    read = yield {READ: arrays_of([joined[i] for i in pairs])}
    together = dict(zip(pairs, read[READ], strict=True))
    # Two pieces each shorter than a digit, one above the other, are a stroke broken across
    # its middle (each half reads as a fair 1, the whole with its gap less so): digits on a
    # line stand side by side, never stacked.
    wins = {i: _stacked(groups[i], groups[i + 1], line) or together[i] > min(wholes[i], wholes[i + 1]) for i in pairs}
    out, scores, skip = [], [], False
    for i, group in enumerate(groups):
        if skip:
            skip = False
            continue
        if wins.get(i):
            out.append(joined[i])
            scores.append(float(together[i]))
            skip = True
        else:
            out.append(group)
            scores.append(wholes[i])
    return out, scores


def _stacked(upper: np.ndarray, lower: np.ndarray, line: float) -> bool:
    """Whether two pieces, each shorter than the line, lie one above the other."""
    (top_a, bottom_a), (top_b, bottom_b) = (np.flatnonzero(m.any(axis=1))[[0, -1]] for m in (upper, lower))
    short = max(bottom_a - top_a, bottom_b - top_b) + 1 < JOIN_SHORT * line
    overlap = min(bottom_a, bottom_b) - max(top_a, top_b) + 1
    return bool(short and overlap <= STACKED_OVERLAP * min(bottom_a - top_a + 1, bottom_b - top_b + 1))


def _extent(present: np.ndarray) -> int:
    where = np.flatnonzero(present)
    return int(where[-1] - where[0] + 1) if len(where) else 0


def _split(
    member: np.ndarray,
    arrays_of: Callable[[list[np.ndarray]], np.ndarray],
    whole_score: float,
    line: float,
    depth: int = 0,
    *,
    alone: bool = False,
) -> Scoring[tuple[list[np.ndarray], float]]:
    """A group as one digit, or cut into the touching digits it holds; with how sure the
    scorer is of the reading (the product of its pieces' scores).

    A group the scorer doubts, or wide for one digit, is cut where the two sides read best
    together, each side cut again where it could hold two digits; the cut is kept when its
    pieces read better than the whole by a margin that shrinks as the group widens: people's
    digits are rarely wider than tall, two touching digits nearly always are.
    """
    height, width = _size(member)
    aspect = width / max(height, line)
    wide = aspect > MUST_SPLIT
    if not _worth_cutting(aspect, whole_score, depth, alone=alone):
        return [member], whole_score
    cuts = yield from _screened(cuts_of(member), arrays_of)
    if not cuts:
        return [member], whole_score
    read = yield {READ: arrays_of([piece for cut in cuts for piece in cut])}
    scores = read[READ].reshape(-1, 2)
    best = int(np.argmax(scores.sum(axis=1)))
    sides = yield from lockstep(
        [
            _split(side, arrays_of, float(side_score), line, depth + 1)
            for side, side_score in zip(cuts[best], scores[best], strict=True)
        ]
    )
    out, together = [], 1.0
    for parts, sureness in sides:
        out += parts
        together *= sureness
    # Logs of the scores: a whole the scorer is sure of (0.97) against pieces it is sure of
    # too needs the width to tip it; a "number" (0.001) against two fair digits does not.
    gain = np.log(together + SCORE_FLOOR) - np.log(whole_score + SCORE_FLOOR)
    if wide or gain > CUT_MARGIN - CUT_WIDTH_WEIGHT * (aspect - 1):
        return out, together
    return [member], whole_score


def _worth_cutting(aspect: float, whole_score: float, depth: int, *, alone: bool) -> bool:
    """Whether a group (``aspect``: its width over the line's height) is tried in pieces: when
    the scorer doubts it or it is wide for one digit, and it could hold two digits side by side."""
    # Alone on its page a group is most often one digit, however wide (a sprawling 2): only
    # the scorer's doubt, as sure as a single digit's reading needs, gets it cut.
    doubted = whole_score < SURE_ALONE if alone else whole_score < SURE_WHOLE or aspect > SPLIT_WIDE
    # Cut only what could hold two digits side by side: a doubted narrow piece is one odd
    # digit, and cutting it would only make slivers that read as 1s.
    narrow = aspect < (PAIR_WIDTH if depth else MIN_PAIR_WIDTH)
    return (doubted or aspect > MUST_SPLIT) and not narrow and depth < MAX_DIGITS


def _screened(
    cuts: list[tuple[np.ndarray, np.ndarray]], arrays_of: Callable[[list[np.ndarray]], np.ndarray]
) -> Scoring[list[tuple[np.ndarray, np.ndarray]]]:
    """Of more than ``SCREENED_CUTS`` cuts, those whose pieces a glance finds likeliest digits."""
    if len(cuts) <= SCREENED_CUTS:
        return cuts
    glance = yield {GLANCE: arrays_of([piece for cut in cuts for piece in cut])}
    likeliest = np.argsort(-glance[GLANCE].reshape(-1, 2).sum(axis=1), kind="stable")[:SCREENED_CUTS]
    return [cuts[i] for i in sorted(likeliest)]


def _size(member: np.ndarray) -> tuple[int, int]:
    return _extent(member.any(axis=1)), _extent(member.any(axis=0))


def _cut_again(side: np.ndarray) -> list[np.ndarray]:
    """Without a scorer: a group too wide for one digit cut at its thinnest passes until each
    piece could be one."""
    height, width = _size(side)
    cuts = cuts_of(side) if width > MUST_SPLIT * height else []
    if not cuts:
        return [side]
    return _cut_again(cuts[0][0]) + _cut_again(cuts[0][1])


def _box(piece: np.ndarray, page: Page) -> tuple[int, int, int, int]:
    """A piece's bounding box on the full-size image: (x, y, width, height) in pixels."""
    placement, scale = page.placement, page.scale
    rows, cols = np.flatnonzero(piece.any(axis=1)), np.flatnonzero(piece.any(axis=0))
    if page.unturn is not None:
        # The corners of its pixels turned back onto the ink map as it was: their box there.
        ys, xs = np.nonzero(piece)
        corners = np.concatenate([np.stack([xs + dx, ys + dy, np.ones(len(xs))]) for dx in (0, 1) for dy in (0, 1)], 1)
        x, y = page.unturn @ corners
        cols, rows = np.array([x.min(), x.max() - 1]), np.array([y.min(), y.max() - 1])
    step = placement.step * scale
    x0, y0 = (placement.left * scale + cols[0] * step), (placement.top * scale + rows[0] * step)
    x1, y1 = (placement.left * scale + (cols[-1] + 1) * step), (placement.top * scale + (rows[-1] + 1) * step)
    return int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1 - np.floor(x0))), int(np.ceil(y1 - np.floor(y0)))
