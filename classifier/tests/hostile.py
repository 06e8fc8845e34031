"""A corpus of hostile and awkward uploads, generated on the fly (nothing binary is committed).

Each entry says what must happen to it: refused at upload with a message, classified as a
given digit, answered with a given verdict (a blank page is "not a digit", not a failure), or
stored and then ``failed`` with a reason.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
from PIL import Image

import ml.serving.preprocessing  # noqa: F401  (registers the HEIF plugin, with which Pillow also writes HEIC)
from ml.serving.decoding_limits import MAX_PIXELS_PER_BYTE
from ml.tests.bombs import blank_canvas, gif_with_logical_screen, progressive_scan_bomb
from ml.tests.conftest import upscale
from ml.tests.modes import MODES

NOT_AN_IMAGE = "not an image we can read"
BLANK = "it looks blank"


@dataclass(frozen=True)
class Case:
    name: str  # the file name the browser sends
    data: bytes
    refused: str | None = None  # part of the message shown at upload
    digit: int | None = None  # the digit it must be classified as
    blank: bool = False  # answered "not a digit" because nothing is on it
    failed: str | None = None  # part of the reason a stored image fails with


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _paper(digit: np.ndarray, side: int = 112) -> np.ndarray:
    """An MNIST digit as dark ink on white paper, larger, like a scan."""
    return 255 - upscale(digit, side)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _png(header: bytes, idat: bytes) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def decompression_bomb(side: int = 20_000) -> bytes:
    """A valid 1-bit PNG of side x side pixels (400 MP at the default) in about 50 KB."""
    row = b"\x00" + bytes((side + 7) // 8)  # filter byte + one bit per pixel, all black
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    return _png(struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0), idat)  # 1-bit grayscale


def _rgba_png(width: int, height: int) -> bytes:
    """A transparent RGBA PNG (256 MB of pixels at 8000x7999) written row by row in ~250 KB."""
    packer = zlib.compressobj(9)
    row = b"\x00" + bytes(4 * width)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return _png(struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0), idat)  # 8-bit RGBA


def _rle8_bmp(width: int, height: int) -> bytes:
    """A run-length encoded 8-bit BMP: 64 MB of pixels in ~0.5 MB."""
    row = b"".join(bytes((min(255, width - x), 0)) for x in range(0, width, 255)) + b"\x00\x00"
    pixels = row * height + b"\x00\x01"
    palette = b"".join(bytes((v, v, v, 0)) for v in range(256))
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + palette + pixels


def _padded(data: bytes) -> bytes:
    """An image file with zeros after its end, up to the byte per MAX_PIXELS_PER_BYTE pixels an
    image this large must come in (``ml.serving.decoding_limits``): padding passes that rule, and
    costs an attacker a megabyte sent for each such image."""
    width, height = Image.open(io.BytesIO(data)).size
    return data + bytes(max(0, -(-width * height // MAX_PIXELS_PER_BYTE) - len(data)))


# Each accepted format at (nearly) the 64-megapixel limit, in as few bytes as our rules allow
# (about 1 MB, padded; JPEGs, decoded at an eighth of their size, in as few as it takes): what
# the web process must not decode (classifier/tests/test_upload_bounds.py).
NEAR_LIMIT: dict[str, Callable[[], bytes]] = {
    "png": lambda: _padded(_rgba_png(8000, 7999)),
    "webp": lambda: _padded(_save(Image.new("RGBA", (16383, 3906), "white"), "WEBP", lossless=True, method=0)),
    "tiff": lambda: _padded(_save(Image.new("RGBA", (8000, 7999), "white"), "TIFF", compression="tiff_deflate")),
    "gif": lambda: _padded(_save(Image.new("L", (8000, 7999), 255), "GIF")),
    "bmp": lambda: _padded(_rle8_bmp(8000, 7999)),
    "jpeg": lambda: _save(Image.new("L", (8000, 7999), 255), "JPEG", quality=50),
}

# Small files whose decoding costs far more than their size says (issue 42), refused before it
# with these words, in the web process and the worker alike.
SCAN_BOMB = "built in an unusual way"
SMALL_FILE_HUGE_IMAGE = "unpacks to an image of"
COSTLY_TO_DECODE: dict[str, tuple[Callable[[], bytes], str]] = {
    "scan-bomb.jpg": (progressive_scan_bomb, SCAN_BOMB),  # 8000x8000, 2,006 scans, ~440 KB
    "logical-screen.gif": (gif_with_logical_screen, SMALL_FILE_HUGE_IMAGE),  # 8000x8000 in 37 bytes
    "blank-canvas.webp": (partial(blank_canvas, "WEBP", quality=50, method=0), SMALL_FILE_HUGE_IMAGE),
}


def corpus(examples: dict[int, np.ndarray], *, max_bytes: int) -> list[Case]:
    """``examples`` maps each digit to an MNIST image of it (white on black, 28x28).

    Besides the hostile files, one digit in each unusual colour mode and sample depth
    (16-bit, 32-bit, float, LAB, CMYK, YCbCr, 1-bit, palette, a 12-megapixel 16-bit page):
    each must be classified, and none may hold up the images around it."""
    png = _save(Image.fromarray(_paper(examples[3])), "PNG")
    jpeg = _save(Image.fromarray(_paper(examples[3])), "JPEG", quality=90)

    frames = [Image.fromarray(_paper(examples[4])).convert("P"), Image.fromarray(_paper(examples[1])).convert("P")]
    gif = _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=200, loop=0)
    pages = [Image.fromarray(_paper(examples[5])), Image.fromarray(_paper(examples[0]))]
    tiff = _save(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    cmyk = _save(Image.fromarray(_paper(examples[6])).convert("CMYK"), "JPEG", quality=90)
    sixteen = _save(Image.fromarray(_paper(examples[8]).astype(np.uint16) * 257), "PNG")

    # Palette PNG: index 0 transparent background, index 1 dark ink.
    ink = upscale(examples[9], 112) > 100
    palette = Image.fromarray(ink.astype(np.uint8), "P")
    palette.putpalette([255, 255, 255, 20, 20, 60] + [0, 0, 0] * 254)
    transparent = _save(palette, "PNG", transparency=0)

    # Stored turned a quarter to the left, with EXIF orientation 6 ("turn right to view").
    sideways = Image.fromarray(np.rot90(_paper(examples[7]), k=1).copy())
    exif = sideways.getexif()
    exif[0x0112] = 6
    rotated = _save(sideways, "JPEG", quality=90, exif=exif.tobytes())
    # An iPhone photo: HEIC, stored sideways the same way (pillow-heif turns the tag into HEIF's rotation).
    iphone = Image.fromarray(np.rot90(_paper(examples[4]), k=1).copy()).convert("RGB")
    heic = _save(iphone, "HEIF", quality=80, exif=exif.tobytes())

    svg = (
        b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><script>alert(1)</script>'
        b'<text x="30" y="70" font-size="60">7</text></svg>'
    )
    pdf = b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
    modes = [
        Case(f"mode-{name}", write(examples[i % 10]), digit=i % 10) for i, (name, write) in enumerate(MODES.items())
    ]
    return [
        Case("empty.png", b"", refused="The file is empty"),
        Case("truncated.png", png[: len(png) // 2], refused=NOT_AN_IMAGE),
        Case("truncated.jpg", jpeg[: len(jpeg) // 2], refused=NOT_AN_IMAGE),
        Case("notes.png", b"my shopping list: milk, eggs\n", refused=NOT_AN_IMAGE),
        Case("page.png", b"<!doctype html><html><script>alert(document.cookie)</script></html>", refused=NOT_AN_IMAGE),
        Case("polyglot.png", png + b"<html><script>alert(document.cookie)</script></html>", digit=3),
        Case("drawing.svg", svg, refused=NOT_AN_IMAGE),
        Case("scan.pdf", pdf, refused=NOT_AN_IMAGE),
        Case("bomb.png", decompression_bomb(), refused="too many pixels"),
        *(Case(name, make(), refused=reason) for name, (make, reason) in COSTLY_TO_DECODE.items()),
        Case("huge.png", png + bytes(max_bytes + 1 - len(png)), refused=f"larger than {max_bytes // 1_000_000} MB"),
        Case("animated.gif", gif, digit=4),
        Case("pages.tiff", tiff, digit=5),
        Case("cmyk.jpg", cmyk, digit=6),
        Case("sixteen-bit.png", sixteen, digit=8),
        Case("palette-transparent.png", transparent, digit=9),
        Case("exif-rotated.jpg", rotated, digit=7),
        Case("IMG_0001.HEIC", heic, digit=4),
        Case("one-pixel.png", _save(Image.new("L", (1, 1), 0), "PNG"), failed="too small to hold one"),
        Case("blank.png", _save(Image.new("RGB", (300, 200), "white"), "PNG"), blank=True),
        # The browser's own path separators (Windows-style) and a name that is HTML and unicode.
        Case(
            "C:\\Users\\me\\..\\<img src=x onerror=alert(1)> dígito ٣ 🙂.png",
            _save(Image.fromarray(_paper(examples[2])), "PNG"),
            digit=2,
        ),
        *modes,
    ]
