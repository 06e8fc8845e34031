"""One digit in every colour mode and sample depth our formats carry, generated on the fly.

Pillow's decoders hand out 1-bit, palette, 16-bit (both byte orders), 32-bit integer, float,
LAB, CMYK and YCbCr images besides the usual L, RGB and RGBA; each must be read as the digit
it shows, or refused with a reason, never crash the code around it.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image

from ml.tests.conftest import upscale

SIDE = 112


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _page(digit: np.ndarray, shape: tuple[int, int] = (SIDE, SIDE)) -> np.ndarray:
    """Dark ink on white paper: ``digit`` (MNIST style) scaled into the middle of the page."""
    height, width = shape
    side = min(height, width) * 3 // 4
    page = np.full(shape, 255, dtype=np.uint8)
    top, left = (height - side) // 2, (width - side) // 2
    page[top : top + side, left : left + side] = 255 - upscale(digit, side)
    return page


def _image(digit: np.ndarray) -> Image.Image:
    return Image.fromarray(_page(digit))


def _sixteen_bit(digit: np.ndarray, shape: tuple[int, int] = (SIDE, SIDE)) -> Image.Image:
    return Image.fromarray(_page(digit, shape).astype(np.uint16) * 257)


def _lab(digit: np.ndarray) -> Image.Image:
    neutral = Image.new("L", (SIDE, SIDE), 128)
    return Image.merge("LAB", [_image(digit), neutral, neutral])


def _one_bit(digit: np.ndarray) -> Image.Image:
    return _image(digit).convert("1", dither=Image.Dither.NONE)


def _on_transparent_sheet(digit: np.ndarray, mode: str) -> Image.Image:
    """Black ink, opaque, on a transparent sheet, as canvas exports are."""
    ink = Image.fromarray(255 - _page(digit))
    black = Image.new("L", ink.size, 0)
    return Image.merge(mode, [black] * (len(mode) - 1) + [ink])


def _palette(digit: np.ndarray) -> Image.Image:
    paper = _page(digit)
    return Image.fromarray(np.stack([paper, paper, 255 - paper // 2], -1)).quantize(16)


# File name -> how to write a digit in that mode and format.
MODES: dict[str, Callable[[np.ndarray], bytes]] = {
    "grey-16-bit.png": lambda d: _save(_sixteen_bit(d), "PNG"),
    "grey-16-bit.tiff": lambda d: _save(_sixteen_bit(d), "TIFF"),
    "grey-16-bit-big-endian.tiff": lambda d: _save(
        Image.frombytes("I;16B", (SIDE, SIDE), (_page(d).astype(">u2") * 257).tobytes()), "TIFF"
    ),
    # The red team's poison: a 12-megapixel 16-bit page in a small file.
    "grey-16-bit-4000x3000.png": lambda d: _save(_sixteen_bit(d, (3000, 4000)), "PNG"),
    "integer-32-bit.tiff": lambda d: _save(Image.fromarray(_page(d).astype(np.int32) * 65793), "TIFF"),
    "float-0-to-1.tiff": lambda d: _save(Image.fromarray(_page(d).astype(np.float32) / 255), "TIFF"),
    "float-0-to-255.tiff": lambda d: _save(Image.fromarray(_page(d).astype(np.float32)), "TIFF"),
    "lab.tiff": lambda d: _save(_lab(d), "TIFF"),
    "cmyk.tiff": lambda d: _save(_image(d).convert("CMYK"), "TIFF"),
    "ycbcr.tiff": lambda d: _save(_image(d).convert("RGB").convert("YCbCr"), "TIFF"),
    "one-bit.bmp": lambda d: _save(_one_bit(d), "BMP"),
    "one-bit.tiff": lambda d: _save(_one_bit(d), "TIFF", compression="group4"),
    "palette.bmp": lambda d: _save(_palette(d), "BMP"),
    "grey-alpha.png": lambda d: _save(_on_transparent_sheet(d, "LA"), "PNG"),
    "rgba.webp": lambda d: _save(_on_transparent_sheet(d, "RGBA"), "WEBP", lossless=True),
}


def unusual_modes(digit: np.ndarray) -> dict[str, bytes]:
    """File name -> file: ``digit`` (MNIST style, white on black) in each unusual mode."""
    return {name: write(digit) for name, write in MODES.items()}
