"""Digits that are plainly visible but were refused or misread, generated from MNIST digits.

Low-resolution scans and cut-out digits are not MNIST pages: the digit is cropped tight to its
box (strokes touching two to four edges), stretched to fill the frame, 8 to 32 pixels in all,
light on dark or dark on light, saved as palette or 1-bit images. The border is then ink as
often as paper, and each of these must still be read as a digit.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import product

import numpy as np
from PIL import Image

EDGES = ("top", "bottom", "left", "right")
SIDES = (8, 12, 16, 20, 24, 32)


@dataclass(frozen=True)
class Case:
    kind: str  # tight, filled, small, palette, one-bit
    name: str  # what was done, for failure messages
    data: bytes


def _save(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def tight_crop(digit: np.ndarray, margins: dict[str, int]) -> np.ndarray:
    """The digit cut to the box of its ink, then ``margins`` pixels of background added per edge."""
    rows, cols = np.flatnonzero(digit.max(axis=1) > 0), np.flatnonzero(digit.max(axis=0) > 0)
    box = digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return np.pad(box, ((margins["top"], margins["bottom"]), (margins["left"], margins["right"])))


def _polarities(ink: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    yield "light on dark", ink
    yield "dark on light", 255 - ink


def _resized(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.BOX))


def visible_cases(digit: np.ndarray, rng: np.random.Generator) -> list[Case]:
    """Every case for one MNIST digit (28x28 uint8, white on black)."""
    cases = []
    # Tight crops: each combination of edges the strokes touch (no margin), 1-2 px elsewhere.
    for touching in product((True, False), repeat=4):
        touched = [edge for edge, touches in zip(EDGES, touching, strict=True) if touches]
        crop = tight_crop(digit, {edge: 0 if edge in touched else int(rng.integers(1, 3)) for edge in EDGES})
        edges = "+".join(touched) or "none"
        for polarity, pixels in _polarities(crop):
            cases.append(Case("tight", f"tight crop touching {edges}, {polarity}", _save(Image.fromarray(pixels))))
    # Filling the frame, as normalised scans are: the box stretched to a square, 8 to 32 px.
    box = tight_crop(digit, dict.fromkeys(EDGES, 0))
    for side, (polarity, pixels) in product(SIDES, _polarities(box)):
        filled = _resized(pixels, side, side)
        cases.append(Case("filled", f"{side}x{side} filling the frame, {polarity}", _save(Image.fromarray(filled))))
    # Small whole images, margins and all: the 28x28 field scaled down.
    for side, (polarity, pixels) in product(SIDES, _polarities(digit)):
        small = _resized(pixels, side, side)
        cases.append(Case("small", f"{side}x{side} whole digit, {polarity}", _save(Image.fromarray(small))))
    # Palette and 1-bit files of tight crops at 16 px and of the whole field.
    for source, (polarity, pixels) in product(("tight 16 px", "whole"), _polarities(box)):
        if source == "whole":
            pixels = digit if polarity == "light on dark" else 255 - digit
        else:
            height, width = pixels.shape
            pixels = _resized(pixels, 16 * width // max(height, width), 16 * height // max(height, width))
        image = Image.fromarray(pixels)
        palette = image.convert("RGB").quantize(4)
        cases.append(Case("palette", f"palette, {source}, {polarity}", _save(palette, "GIF")))
        one_bit = image.point(lambda value: 255 if value > 127 else 0).convert("1", dither=Image.Dither.NONE)
        cases.append(Case("one-bit", f"1-bit, {source}, {polarity}", _save(one_bit)))
    return cases
