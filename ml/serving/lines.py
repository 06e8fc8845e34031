"""A whole line of digits read at once: the line reader's input, and its answer decoded.

The line reader (``ml.fitting.line_training`` fits it) is a small CNN and a bidirectional GRU trained
with CTC loss on whole numbers, no segmentation: it reads touching digits as a line, where cuts
chosen by hand-set rules go wrong. Its input is the line of writing that ``ml.serving.segment`` finds
(the same ink map, turned level when photographed askew), normalised as a digit is
(``ml.serving.preprocessing.digit_input``: stroke cores at 1, fine lines thickened) and drawn
``INK_HEIGHT`` pixels tall in a strip ``LINE_SHAPE`` big. Where its digits are, column by
column, comes back from the CTC alignment: each digit's box on the image.

Serving only: no fitting here (``ml.fitting.line_training`` imports this module, never the reverse).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import cv2
import numpy as np

from ml.serving.preprocessing import NothingToRead, ink_window, stroke_cores, thickened

# The strip a line is drawn in: MNIST's 28 px height (its 20 px box, 4 px above and below) and
# room for MAX_DIGITS digits written apart at that height.
LINE_SHAPE = (28, 320)
INK_HEIGHT = 20
MARGIN = 4
# Time steps per column of the strip: the CNN halves its width twice.
COLUMNS_PER_STEP = 4
NUM_CLASSES = 10
BLANK = NUM_CLASSES  # CTC's "no digit here" class, after the ten digits


@dataclass(frozen=True)
class LineInput:
    """A line drawn for the reader, and where the strip's columns lie on the ink map:
    strip column c covers ink-map columns ``left + (c - MARGIN) / scale``."""

    array: np.ndarray  # LINE_SHAPE float32 in [0, 1], white ink on black
    left: float
    top: float
    scale: float


def line_input(ink: np.ndarray, mask: np.ndarray) -> LineInput:
    """The reader's input for the writing whose pixels ``mask`` holds on the ``ink`` map."""
    if not mask.any():
        raise NothingToRead()
    window = ink_window(mask, margin=1)
    soft = stroke_cores(ink[window], mask[window])
    visible = soft > 0.05
    if not visible.any():
        raise NothingToRead()
    rows, cols = np.flatnonzero(visible.any(axis=1)), np.flatnonzero(visible.any(axis=0))
    top, left = rows[0], cols[0]
    line = soft[top : rows[-1] + 1, left : cols[-1] + 1]
    height, width = line.shape
    room = LINE_SHAPE[1] - 2 * MARGIN
    scale = min(INK_HEIGHT / height, room / width)
    line = thickened(line, mask[window][top : rows[-1] + 1, left : cols[-1] + 1], scale)
    size = (min(room, max(1, round(width * scale))), min(INK_HEIGHT, max(1, round(height * scale))))
    small = cv2.resize(line, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    strip = np.zeros(LINE_SHAPE, dtype=np.float32)
    y0 = (LINE_SHAPE[0] - small.shape[0]) // 2
    strip[y0 : y0 + small.shape[0], MARGIN : MARGIN + small.shape[1]] = small
    peak = float(strip.max())
    if peak <= 0:
        raise NothingToRead()
    return LineInput(
        array=strip / peak,
        left=float(window[1].start + left),
        top=float(window[0].start + top),
        scale=float(size[0] / width),
    )


@dataclass(frozen=True)
class LineReading:
    """The reader's answer: its digits, how sure it is of each (the probability of the digit at
    its peak step), and the strip columns [start, stop) where each was read."""

    digits: tuple[int, ...]
    confidences: tuple[float, ...]
    spans: tuple[tuple[int, int], ...]
    # Per digit, the ten digits' probabilities at its peak step, blank left out (they sum to 1).
    probabilities: tuple[tuple[float, ...], ...] = ()

    @property
    def text(self) -> str:
        return "".join(map(str, self.digits))


def decode(probabilities: np.ndarray) -> LineReading:
    """Best-path CTC decoding of one line's (steps, NUM_CLASSES + 1) probabilities: the likeliest
    class per step, repeats merged, blanks dropped. Each digit's span runs from its first step
    to its last (or, for a digit read at one step only, that step)."""
    best = probabilities.argmax(axis=1)
    digits, confidences, spans, peaks = [], [], [], []
    previous = BLANK
    for step, label in enumerate(best):
        if label != BLANK and label != previous:
            digits.append(int(label))
            confidences.append(float(probabilities[step, label]))
            spans.append([step, step + 1])
            peaks.append(step)
        elif label != BLANK:
            if probabilities[step, label] > confidences[-1]:
                confidences[-1], peaks[-1] = float(probabilities[step, label]), step
            spans[-1][1] = step + 1
        previous = label
    columns = tuple((start * COLUMNS_PER_STEP, stop * COLUMNS_PER_STEP) for start, stop in spans)
    at_peaks = probabilities[peaks, :NUM_CLASSES] if peaks else np.zeros((0, NUM_CLASSES))
    at_peaks = at_peaks / np.maximum(at_peaks.sum(axis=1, keepdims=True), 1e-9)
    return LineReading(tuple(digits), tuple(confidences), columns, tuple(tuple(map(float, row)) for row in at_peaks))


def pieces(mask: np.ndarray, line: LineInput, reading: LineReading) -> list[np.ndarray]:
    """``mask`` (the writing ``line`` was drawn from) cut into the reader's digits: between two
    neighbours, at the column halfway from where the one was read to where the next was. A
    piece with no ink is an empty mask: the caller decides."""
    centres = [(start + stop) / 2 for start, stop in reading.spans]
    cuts = [line.left + ((a + b) / 2 - MARGIN) / line.scale for a, b in itertools.pairwise(centres)]
    columns = np.arange(mask.shape[1])
    edges = [-np.inf, *cuts, np.inf]
    return [mask & ((columns >= low) & (columns < high))[None, :] for low, high in itertools.pairwise(edges)]
