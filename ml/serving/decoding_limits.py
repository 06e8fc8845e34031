"""What an upload will cost to decode, judged from its headers and bytes before any pixel is.

Our pixel limit (``ml.serving.preprocessing.MAX_PIXELS``) bounds one cost; the red team found two
files it lets through (issue 42):

- A progressive JPEG is decoded scan by scan, and each scan is a pass over every coefficient
  of the image, whatever the scale it is decoded at: an 8000x8000 grey JPEG whose last scan is
  repeated 2,000 times (half a megabyte) took 17-74 CPU-s, in the web process and again in the
  worker. Pillow sets no limit on scans; we count them by walking the file's markers.
- Images we decode whole (every format but JPEG, which is decoded at an eighth of its size by
  DCT scaling) cost the worker about 10-16 bytes of memory a pixel: an 803-byte GIF whose
  logical screen is 8000x8000, a 91 KB WebP and a 140 KB PNG took it from 880 MB to 1.5-2 GB.
  A large image must come in a file of a size that such an image has.

Both are linear passes over headers and bytes, and both are judged in ``open_lazily``: the
web process, the draw preview and the worker refuse the same files, before decoding. So is a
JPEG of too many segments (``structure_refusal``), before Pillow reads its headers.
"""

from __future__ import annotations

import re

# At most this many scans in any JPEG: libjpeg's progressive defaults (Pillow's among them)
# write 6 scans for grey and 10 for colour, a baseline JPEG has one; a hundred is ten times
# that, and a cost still bounded at any size we take (JPEG_SCAN_PIXELS).
JPEG_MAX_SCANS = 100
# Scans times pixels: each scan costs up to a pass over the whole image (37 ms at 64 MP on the
# busy 2-core machine), so this allows the largest image we take (64 MP) the 16 scans of an
# ordinary progressive file, ~0.6 CPU-s, and smaller images proportionally more, up to
# JPEG_MAX_SCANS.
JPEG_SCAN_PIXELS = 16 * 64_000_000

# Images over this many pixels are decoded whole only from a file of at least one byte per
# MAX_PIXELS_PER_BYTE of their pixels (1 MB for 64 MP). A phone photo carries a few pixels a
# byte (a 16 MP noise JPEG: 1.5); a digit needs nowhere near 16 MP, and a blank canvas that
# large is how the attack reads ("small files that decode to huge images"). Padding a file
# passes this rule: it raises what an attacker sends for each such image from 37 bytes to 1 MB.
LARGE_IMAGE_PIXELS = 16_000_000
MAX_PIXELS_PER_BYTE = 64
DECODED_AT_A_REDUCED_SCALE = frozenset({"JPEG", "MPO"})

# At most this many marker segments in a JPEG, counted before any parser reads it: Pillow reads
# those before the first scan one by one in Python (2.5 million empty comments, 10 MB, took
# it 1.9 CPU-s), libjpeg the rest. An ordinary file has a few dozen, a progressive one of
# JPEG_MAX_SCANS two per scan more; this leaves room for a scan bomb to be named as one.
JPEG_MAX_SEGMENTS = 5_000
JPEG_SIGNATURE = b"\xff\xd8\xff"  # as Pillow recognises a JPEG (and an MPO)

# A marker where entropy-coded data may lie: 0xFF followed by neither 0x00 (a stuffed 0xFF
# byte), a restart marker (0xD0-0xD7, inside a scan) nor 0xFF (fill before a marker). Bytes
# before it that are not one are skipped, as libjpeg skips them (with a warning) and goes on.
_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_SOS, _EOI = 0xDA, 0xD9
_WITHOUT_LENGTH = frozenset({0x01, 0xD8})  # TEM and SOI carry no length


def jpeg_scans(data: bytes) -> int:
    """How many scans (start-of-scan segments) the first image of a JPEG's bytes holds (or
    its first JPEG_MAX_SEGMENTS segments hold)."""
    return _jpeg_walk(data)[1]


def _jpeg_walk(data: bytes) -> tuple[int, int]:
    """The marker segments and scans of the first image of a JPEG's bytes, counted until there
    are more than JPEG_MAX_SEGMENTS segments.

    One linear pass over the markers, segment by segment (each says its length), jumping over
    each scan's entropy-coded data to the next marker; it ends at the image's end (EOI: an MPO's
    further images are never decoded) or where the bytes do. It never raises: a broken file
    is Pillow's to judge, and the scans counted here are all libjpeg could decode.
    """
    segments, scans, at = 0, 0, 2
    while segments <= JPEG_MAX_SEGMENTS and (found := _MARKER.search(data, at)) is not None:
        at = found.start()
        marker = data[at + 1]
        if marker == _EOI:
            break
        segments += 1
        if marker in _WITHOUT_LENGTH:
            at += 2
            continue
        at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
        scans += marker == _SOS
    return segments, scans


def structure_refusal(data: bytes) -> str | None:
    """Why no parser should read this file's headers, for the person who sent it; None when
    they may be. Before Pillow opens a file: a JPEG of more than JPEG_MAX_SEGMENTS segments."""
    if data.startswith(JPEG_SIGNATURE) and _jpeg_walk(data)[0] > JPEG_MAX_SEGMENTS:
        return (
            f"This JPEG is built in an unusual way (more than {JPEG_MAX_SEGMENTS:,} segments) that costs too "
            "much to read safely. Please save it again as an ordinary JPEG or as a PNG."
        )
    return None


def jpeg_scan_limit(pixels: int) -> int:
    """The most scans a JPEG of ``pixels`` may hold (see JPEG_SCAN_PIXELS)."""
    return max(1, min(JPEG_MAX_SCANS, JPEG_SCAN_PIXELS // max(pixels, 1)))


def decoding_cost_refusal(data: bytes, *, image_format: str, width: int, height: int) -> str | None:
    """Why decoding this file would cost too much, for the person who sent it; None when it
    would not. From its headers (format and size, within the pixel limit) and its bytes."""
    pixels = width * height
    if image_format in DECODED_AT_A_REDUCED_SCALE:
        scans, allowed = jpeg_scans(data), jpeg_scan_limit(pixels)
        if scans > allowed:
            return (
                f"This JPEG is built in an unusual way ({scans} scans, where an image of {width}x{height} "
                f"pixels may have {allowed}) that costs too much to decode safely. "
                "Please save it again as an ordinary JPEG or as a PNG."
            )
        return None
    if pixels > LARGE_IMAGE_PIXELS and len(data) * MAX_PIXELS_PER_BYTE < pixels:
        return (
            f"This small file ({_size(len(data))}) unpacks to an image of {width}x{height} pixels, "
            "which costs too much memory to read safely: an image over "
            f"{LARGE_IMAGE_PIXELS // 1_000_000} megapixels must be a photo or a scan. "
            "Please scale it down or crop it to the digits."
        )
    return None


def _size(length: int) -> str:
    if length < 1000:
        return f"{length} bytes"
    return f"{length / 1_000_000:.1f} MB" if length >= 1_000_000 else f"{round(length / 1000)} KB"
