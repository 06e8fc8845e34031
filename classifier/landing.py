"""The landing page's three examples: pictures drawn here, read by the real model.

`manage.py landing_examples` draws them, classifies them with the active model and writes
the pictures and what the model said into ``static/landing/``; the page shows that file, so
the examples are the model's own answers, and a test checks they still are.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

LANDING_DIR = Path(__file__).resolve().parents[1] / "static" / "landing"
EXAMPLES_FILE = "examples.json"
FONT = "DejaVuSans.ttf"


def _strokes(lines: list[list[tuple[int, int]]], *, width: int = 22, size: int = 280) -> Image.Image:
    """Pen strokes on white, as the drawing canvas makes them."""
    image = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(image)
    for line in lines:
        draw.line(line, fill=20, width=width, joint="curve")
        for x, y in (line[0], line[-1]):
            draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=20)
    return image


def _word(text: str) -> Image.Image:
    image = Image.new("L", (280, 140), 255)
    try:
        font = ImageFont.truetype(FONT, 70)
    except OSError:  # no DejaVu on this machine: Pillow's own scalable font
        font = ImageFont.load_default(70)
    ImageDraw.Draw(image).text((20, 30), text, fill=0, font=font)
    return image


# (file name, what it is, the picture)
EXAMPLES = (
    ("drawn-7.png", "a 7 drawn with a finger", lambda: _strokes([[(70, 60), (210, 55), (120, 235)]])),
    (
        "flagged-1.png",
        "a 1 with a long up-stroke, as many Europeans write it",
        lambda: _strokes([[(60, 100), (150, 40), (150, 240)]]),
    ),
    ("hello.png", "the word “hello”", lambda: _word("hello")),
)


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()


def examples() -> list[dict]:
    """The committed examples (file, caption, digit, confidence, runner_up, verdict, reason)."""
    try:
        return json.loads((LANDING_DIR / EXAMPLES_FILE).read_text())
    except (OSError, ValueError):
        return []
