"""Small files that cost a lot to decode (issue 42), generated on the fly: nothing binary is
committed. ``ml.serving.decoding_limits`` refuses each before its pixels are decoded."""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image


def save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def repeat_last_scan(jpeg: bytes, times: int) -> bytes:
    """A JPEG Pillow wrote, its last scan (and entropy-coded data) repeated ``times`` more
    times before the end of the image: libjpeg decodes every copy."""
    start, end = jpeg.rindex(b"\xff\xda"), jpeg.rindex(b"\xff\xd9")  # Pillow ends with the last scan, then EOI
    return jpeg[:end] + jpeg[start:end] * times + jpeg[end:]


def progressive_scan_bomb(side: int = 8000, extra_scans: int = 2000, mode: str = "L") -> bytes:
    """A blank progressive JPEG whose last scan (an AC refinement: a pass over every
    coefficient) is repeated ``extra_scans`` more times: the red team's was 8000x8000 with
    2,000 more, 525 KB, 17 CPU-s to decode on their machine."""
    jpeg = save(Image.new(mode, (side, side), "white"), "JPEG", progressive=True, quality=50)
    return repeat_last_scan(jpeg, extra_scans)


def gif_with_logical_screen(side: int = 8000) -> bytes:
    """A one-pixel GIF frame on a logical screen of ``side`` x ``side``: Pillow's size is the
    screen, and decoding it fills the whole canvas (the red team's was 803 bytes)."""
    gif = bytearray(save(Image.new("P", (1, 1), 0), "GIF"))
    gif[6:10] = struct.pack("<HH", side, side)  # the logical screen descriptor's width and height
    return bytes(gif)


def blank_canvas(fmt: str, side: int = 8000, **options) -> bytes:
    """A white ``side`` x ``side`` RGB image: ~200 KB as PNG or lossy WebP at 8000x8000."""
    return save(Image.new("RGB", (side, side), "white"), fmt, **options)


def dense_gray(width: int, height: int, noise_rows: int, seed: int = 0) -> np.ndarray:
    """White paper whose top ``noise_rows`` rows are noise: a file of a size a real scan of
    that many pixels has (noise does not compress), made as fast as a blank one."""
    page = np.full((height, width), 255, dtype=np.uint8)
    page[:noise_rows] = np.random.default_rng(seed).integers(0, 256, (noise_rows, width), dtype=np.uint8)
    return page
