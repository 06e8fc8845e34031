"""Images that are not one handwritten digit, made the way people would send them.

People upload letters, words, symbols, doodles, whole numbers and photos of things, and a
model that only ever saw digits answers each with a digit. These generators make such images
for the reject option to learn from and to be measured on. They come in families that differ
in how they are made, so that a detector cannot pass by learning one of them:

    printed   letters, words and symbols set in fonts (DejaVu, STIX, Computer Modern)
    drawn     letters, words and symbols drawn stroke by stroke with a shaky pen
    written   letters, words and symbols as a hand writes them: each character of its own
              size, tilt and baseline, one pen of its own width, the line wobbling (elastic)
    crossed   a handwritten digit crossed out: an X, lines through it, hatching, a scribble
    shapes    squares, triangles, stars, hearts, spirals, houses, faces, arrows, waves
    scribble  random pen strokes and hatching
    number    two to five handwritten digits side by side (one digit is what is asked for)
    photo     photos of things: textures, gradients, blobs, stripes, no ink on paper at all

Each is drawn white on black at MNIST's scale (28 px tall, any width) and rendered by
``ml.fitting.synth`` as a photo, scan, canvas drawing, screenshot or pencil sketch, as digits are;
photos of things are made as photos directly.

What looks like a digit in many hands is left out: O and o (0), I, l and | (1), Z and z (2),
S and s (5), b and G (6), B (8), g and q (9), and a plain circle or line. So are parts of digits:
cropped and scaled as every upload is, the lower half of an 8 is a 0 and the top of a 9 an o,
and a detector taught to refuse them would refuse real 0s. A single bar across a digit is not a
crossing-out either: it is how Europeans write 7 (and some people 0).

Kept whole: a generator per family, side by side so that what one family
covers and another leaves out can be read in one place; a sixth of it is their letters,
words and strokes as data.
"""

from __future__ import annotations

import io
import itertools
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from scipy.ndimage import gaussian_filter, map_coordinates

from ml.fitting.synth import SCENARIOS, Upload, render_upload

FAMILIES = ("printed", "drawn", "written", "crossed", "shapes", "scribble", "number", "photo")

LETTERS = "ACEFHKLMNPRTUVWXYacdefhkmnprtuvwxy"
SYMBOLS = "+=%#&@?!*$<>~^{}[]"
WORDS = (
    "hello world",
    "ok",
    "yes",
    "no",
    "name",
    "date",
    "total",
    "cat",
    "Hi!",
    "abc",
    "FREE",
    "xyz",
    "Thank you",
    "Mom",
    "help",
    "Dear",
    "TODO",
    "sum",
    "kg",
    "cm",
    "pH",
    "Fax",
    "Tel",
    "Mr",
    "Ave",
    "apt",
)
_SCALE = 4  # drawn at four times MNIST's scale, then shrunk: smooth strokes


@cache
def _font_paths() -> tuple[Path, ...]:
    """The fonts matplotlib ships (a dependency): every machine that runs us has them."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    names = (
        "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Italic.ttf",
        "DejaVuSansMono.ttf", "STIXGeneral.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBol.ttf", "cmr10.ttf",
        "cmss10.ttf", "cmtt10.ttf",
    )  # fmt: skip
    return tuple(folder / name for name in names if (folder / name).is_file())


def _to_mnist_scale(canvas: Image.Image, pad: float = 0.12) -> np.ndarray:
    """Crop a white-on-black drawing to its ink, pad it, and scale it to 28 px tall."""
    box = canvas.getbbox()
    if box is None:
        raise ValueError("nothing was drawn")
    ink = canvas.crop(box)
    margin = round(pad * max(ink.size))
    padded = Image.new("L", (ink.width + 2 * margin, ink.height + 2 * margin))
    padded.paste(ink, (margin, margin))
    width = max(1, round(28 * padded.width / padded.height))
    return np.asarray(padded.resize((min(width, 28 * 8), 28), Image.Resampling.LANCZOS))


def _printed(text: str, rng: np.random.Generator) -> np.ndarray:
    fonts = _font_paths()
    font = ImageFont.truetype(str(fonts[rng.integers(len(fonts))]), size=112)
    left, top, right, bottom = font.getbbox(text)
    canvas = Image.new("L", (right - left + 40, bottom - top + 40))
    ImageDraw.Draw(canvas).text((20 - left, 20 - top), text, fill=255, font=font)
    return _to_mnist_scale(canvas.rotate(float(rng.uniform(-10, 10)), expand=True, resample=Image.Resampling.BILINEAR))


# Pen strokes of capital letters and symbols on a unit box (x right, y down): each a polyline.
STROKES = {
    "A": [[(0, 1), (0.5, 0), (1, 1)], [(0.22, 0.6), (0.78, 0.6)]],
    "E": [[(1, 0), (0, 0), (0, 1), (1, 1)], [(0, 0.5), (0.75, 0.5)]],
    "F": [[(1, 0), (0, 0), (0, 1)], [(0, 0.5), (0.75, 0.5)]],
    "H": [[(0, 0), (0, 1)], [(1, 0), (1, 1)], [(0, 0.5), (1, 0.5)]],
    "K": [[(0, 0), (0, 1)], [(1, 0), (0, 0.55), (1, 1)]],
    "L": [[(0, 0), (0, 1), (0.8, 1)]],
    "M": [[(0, 1), (0, 0), (0.5, 0.6), (1, 0), (1, 1)]],
    "N": [[(0, 1), (0, 0), (1, 1), (1, 0)]],
    "R": [[(0, 1), (0, 0), (0.8, 0.05), (0.9, 0.25), (0.8, 0.45), (0, 0.5), (1, 1)]],
    "T": [[(0, 0), (1, 0)], [(0.5, 0), (0.5, 1)]],
    "V": [[(0, 0), (0.5, 1), (1, 0)]],
    "W": [[(0, 0), (0.25, 1), (0.5, 0.35), (0.75, 1), (1, 0)]],
    "X": [[(0, 0), (1, 1)], [(1, 0), (0, 1)]],
    "Y": [[(0, 0), (0.5, 0.5), (1, 0)], [(0.5, 0.5), (0.5, 1)]],
    "C": [[(1, 0.15), (0.6, 0), (0.15, 0.2), (0, 0.5), (0.15, 0.8), (0.6, 1), (1, 0.85)]],
    "P": [[(0, 1), (0, 0), (0.8, 0.05), (0.95, 0.25), (0.8, 0.45), (0, 0.5)]],
    "U": [[(0, 0), (0, 0.75), (0.25, 1), (0.75, 1), (1, 0.75), (1, 0)]],
    "+": [[(0.5, 0), (0.5, 1)], [(0, 0.5), (1, 0.5)]],
    "=": [[(0, 0.35), (1, 0.35)], [(0, 0.65), (1, 0.65)]],
    "#": [[(0.35, 0), (0.25, 1)], [(0.75, 0), (0.65, 1)], [(0, 0.35), (1, 0.35)], [(0, 0.65), (1, 0.65)]],
    "*": [[(0.5, 0), (0.5, 1)], [(0.07, 0.25), (0.93, 0.75)], [(0.93, 0.25), (0.07, 0.75)]],
    "%": [[(1, 0), (0, 1)], [(0.1, 0.05), (0.3, 0.05), (0.3, 0.25), (0.1, 0.25), (0.1, 0.05)],
          [(0.7, 0.75), (0.9, 0.75), (0.9, 0.95), (0.7, 0.95), (0.7, 0.75)]],
    "?": [[(0.1, 0.25), (0.3, 0.02), (0.7, 0.02), (0.9, 0.2), (0.5, 0.5), (0.5, 0.75)], [(0.5, 0.92), (0.5, 1)]],
    "!": [[(0.5, 0), (0.5, 0.72)], [(0.5, 0.92), (0.5, 1)]],
    "√": [[(0, 0.6), (0.2, 0.5), (0.4, 1), (0.6, 0), (1, 0)]],
    "✓": [[(0, 0.55), (0.35, 1), (1, 0)]],
    "&": [[(1, 1), (0.2, 0.35), (0.35, 0), (0.6, 0.1), (0.1, 0.7), (0.35, 1), (0.7, 0.85), (0.95, 0.6)]],
}  # fmt: skip
DRAWN_LETTERS = "AEFHKLMNRTVWXYCPU"


def _shaky(points: list[tuple[float, float]], rng: np.random.Generator, wobble: float) -> list[tuple[float, float]]:
    """A polyline as a hand draws it: each segment cut in pieces, every point a little off."""
    out = []
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        pieces = max(2, int(np.hypot(x1 - x0, y1 - y0) * 6))
        for t in np.linspace(0, 1, pieces, endpoint=False):
            out.append((x0 + (x1 - x0) * t, y0 + (y1 - y0) * t))
    out.append(points[-1])
    jitter = rng.normal(0, wobble, (len(out), 2))
    return [(x + dx, y + dy) for (x, y), (dx, dy) in zip(out, np.cumsum(jitter, axis=0) * 0.5, strict=True)]


def _draw_polylines(strokes: list, rng: np.random.Generator, *, size: tuple[int, int] = (80, 100)) -> np.ndarray:
    width, height = size[0] * _SCALE, size[1] * _SCALE
    canvas = Image.new("L", (width + 80 * _SCALE, height + 80 * _SCALE))
    draw = ImageDraw.Draw(canvas)
    shear, pen = rng.uniform(-0.25, 0.25), int(rng.uniform(2.5, 9) * _SCALE)
    for stroke in strokes:
        points = _shaky(stroke, rng, wobble=rng.uniform(0.004, 0.02))
        xy = [(40 * _SCALE + (x + shear * (1 - y)) * width, 40 * _SCALE + y * height) for x, y in points]
        draw.line(xy, fill=255, width=pen, joint="curve")
    return _to_mnist_scale(canvas)


def _drawn(text: str, rng: np.random.Generator) -> np.ndarray:
    """Letters and symbols side by side, each drawn from ``STROKES``."""
    strokes = []
    x = 0.0
    for char in text:
        if char == " ":
            x += 0.8
            continue
        glyph_width = rng.uniform(0.6, 1.0)
        lift = rng.uniform(-0.08, 0.08)
        strokes += [[(x + px * glyph_width, py + lift) for px, py in stroke] for stroke in STROKES[char]]
        x += glyph_width + rng.uniform(0.2, 0.5)
    total = max(x, 1.0)
    return _draw_polylines([[(px / total, py) for px, py in s] for s in strokes], rng, size=(int(80 * total), 100))


def _wobbled(ink: np.ndarray, rng: np.random.Generator, *, shift: float, sigma: float) -> np.ndarray:
    """Elastic distortion: every pixel moved by a smooth random field (``shift`` pixels on
    average, smooth over ``sigma``), as one hand differs from a font (Simard et al. 2003)."""
    smooth = [gaussian_filter(rng.uniform(-1, 1, ink.shape), sigma) for _ in range(2)]
    field = [part / max(float(part.std()), 1e-9) * shift for part in smooth]
    rows, cols = np.mgrid[0 : ink.shape[0], 0 : ink.shape[1]].astype(np.float32)
    return map_coordinates(ink, [rows + field[0], cols + field[1]], order=1, mode="constant")


def _written(text: str, rng: np.random.Generator) -> np.ndarray:
    """``text`` as a hand writes it: each character in the hand's font at its own size, tilt
    and baseline, unevenly spaced, with one pen width and the whole line wobbling."""
    fonts = _font_paths()
    font_path = fonts[int(rng.integers(len(fonts)))]
    height = 28 * _SCALE
    glyphs = []
    for char in text:
        if char == " ":
            glyphs.append(None)
            continue
        font = ImageFont.truetype(str(font_path), int(height * rng.uniform(0.8, 1.2)))
        left, top, right, bottom = font.getbbox(char)
        glyph = Image.new("L", (right - left + 8 * _SCALE, bottom - top + 8 * _SCALE))
        ImageDraw.Draw(glyph).text((4 * _SCALE - left, 4 * _SCALE - top), char, fill=255, font=font)
        glyphs.append(glyph.rotate(float(rng.uniform(-12, 12)), expand=True, resample=Image.Resampling.BILINEAR))
    width = sum(height // 2 if g is None else g.width for g in glyphs) + 40 * _SCALE
    canvas = Image.new("L", (width, 3 * height))
    x = 20 * _SCALE
    for glyph in glyphs:
        if glyph is None:
            x += height // 2
            continue
        canvas.paste(glyph, (x, height + int(rng.normal(0, 0.08) * height)), glyph)
        x += glyph.width - int(rng.uniform(2, 7) * _SCALE)
    # One pen for the whole text: a fine pen thins the font's strokes, a marker thickens them.
    pen = int(rng.choice([-1, 0, 1, 2, 3]))
    if pen:
        rank = ImageFilter.MinFilter if pen < 0 else ImageFilter.MaxFilter
        penned = canvas.filter(rank(abs(pen) * _SCALE + 1))
        # A fine pen can thin a hairline font away: then the font's own strokes stay.
        inked = [int((np.asarray(image) > 127).sum()) for image in (penned, canvas)]
        canvas = penned if inked[0] >= inked[1] / 3 else canvas
    # Wobbled at half the drawing's scale: a quarter of the pixels to move, as smooth.
    ink = np.asarray(canvas.reduce(2), dtype=np.float32)
    ink = _wobbled(ink, rng, shift=rng.uniform(0.6, 1.8) * _SCALE / 2, sigma=rng.uniform(3, 5) * _SCALE / 2)
    return _to_mnist_scale(Image.fromarray(np.clip(ink, 0, 255).astype(np.uint8)))


def _crossed(digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A handwritten digit crossed out: an X over it, two or three lines through it, hatching
    or a scribble, each reaching past the digit (one bar across is a 7, and stays out)."""
    digit = digits[int(rng.integers(len(digits)))]
    side = 28 * _SCALE
    canvas = Image.new("L", (side * 2, side * 2))
    canvas.paste(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC), (side // 2, side // 2))
    rows, cols = np.nonzero(np.asarray(canvas) > 127)
    if not len(rows):
        rows, cols = np.array([side // 2, 3 * side // 2]), np.array([side // 2, 3 * side // 2])
    top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    reach = rng.uniform(0.05, 0.3) * max(bottom - top, right - left)
    top, bottom, left, right = top - reach, bottom + reach, left - reach, right + reach
    draw = ImageDraw.Draw(canvas)
    pen = int(rng.uniform(1.5, 3.5) * _SCALE)
    how = rng.choice(["x", "lines", "hatching", "scribble"])
    if how == "x":
        strokes = [[(left, top), (right, bottom)], [(right, top), (left, bottom)]]
    elif how == "lines":
        count = int(rng.integers(2, 4))
        ys = np.linspace(top, bottom, count + 2)[1:-1]
        strokes = [[(left, y + rng.normal(0, 4 * _SCALE)), (right, y + rng.normal(0, 4 * _SCALE))] for y in ys]
    elif how == "hatching":
        count, slope = int(rng.integers(4, 9)), rng.uniform(-0.5, 0.5) * (bottom - top)
        xs = np.linspace(left, right, count)
        strokes = [[(x, top), (x + slope, bottom)] for x in xs]
    else:  # back and forth across the digit, drifting down
        turns = int(rng.integers(5, 12))
        ys = np.linspace(top, bottom, turns) + rng.normal(0, 3 * _SCALE, turns)
        strokes = [[(left if i % 2 else right, y) for i, y in enumerate(ys)]]
    for stroke in strokes:
        draw.line([(float(x), float(y)) for x, y in stroke], fill=255, width=pen, joint="curve")
    return _to_mnist_scale(canvas)


def _shape(rng: np.random.Generator) -> np.ndarray:
    kind = rng.choice(["square", "triangle", "star", "heart", "spiral", "house", "face", "arrow", "wave", "cross"])
    t = np.linspace(0, 2 * np.pi, 60)
    if kind == "square":
        strokes = [[(0, 0), (1, 0), (1, 1), (0, 1), (0, 0)]]
    elif kind == "triangle":
        strokes = [[(0.5, 0), (1, 1), (0, 1), (0.5, 0)]]
    elif kind == "star":
        angles = np.pi / 2 + np.arange(6) * 4 * np.pi / 5
        strokes = [[(0.5 + 0.5 * np.cos(a), 0.5 - 0.5 * np.sin(a)) for a in angles]]
    elif kind == "heart":
        x, y = 16 * np.sin(t) ** 3, 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
        strokes = [list(zip((x + 17) / 34, (17 - y) / 30, strict=True))]
    elif kind == "spiral":
        r = np.linspace(0.05, 0.5, 120)
        a = np.linspace(0, 6 * np.pi, 120)
        strokes = [list(zip(0.5 + r * np.cos(a), 0.5 + r * np.sin(a), strict=True))]
    elif kind == "house":
        strokes = [
            [(0, 0.45), (0.5, 0), (1, 0.45), (1, 1), (0, 1), (0, 0.45), (1, 0.45)],
            [(0.4, 1), (0.4, 0.7), (0.6, 0.7), (0.6, 1)],
        ]
    elif kind == "face":
        circle = list(zip(0.5 + 0.5 * np.cos(t), 0.5 + 0.5 * np.sin(t), strict=True))
        smile = [(0.5 + 0.3 * np.cos(a), 0.55 + 0.2 * np.sin(a)) for a in np.linspace(0.3, np.pi - 0.3, 15)]
        strokes = [circle, smile, [(0.33, 0.33), (0.35, 0.36)], [(0.65, 0.33), (0.67, 0.36)]]
    elif kind == "arrow":
        strokes = [[(0, 0.5), (1, 0.5)], [(0.7, 0.2), (1, 0.5), (0.7, 0.8)]]
    elif kind == "wave":
        x = np.linspace(0, 1, 50)
        strokes = [list(zip(x, 0.5 + 0.35 * np.sin(x * rng.uniform(2, 5) * 2 * np.pi), strict=True))]
    else:
        strokes = [[(0, 0), (1, 1)], [(1, 0), (0, 1)], [(0, 0.5), (1, 0.5)]]
    size = (int(rng.integers(60, 160)), int(rng.integers(60, 120)))
    return _draw_polylines([[(float(x), float(y)) for x, y in s] for s in strokes], rng, size=size)


def _scribble(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.3:  # hatching: parallel strokes
        count, slope = int(rng.integers(4, 10)), rng.uniform(-0.6, 0.6)
        strokes = [[(i / count, 0), (i / count + slope, 1)] for i in range(count)]
    else:  # a pen wandering on: turning a little each step, now and then sharply
        steps = int(rng.integers(40, 160))
        turns = rng.normal(0, 0.35, steps) + (rng.random(steps) < 0.05) * rng.normal(0, 2.0, steps)
        angle = np.cumsum(turns) + rng.uniform(0, 2 * np.pi)
        x, y = np.cumsum(np.cos(angle)), np.cumsum(np.sin(angle))
        span = max(np.ptp(x), np.ptp(y), 1e-6)
        strokes = [list(zip((x - x.min()) / span, (y - y.min()) / span, strict=True))]
    return _draw_polylines(strokes, rng, size=(int(rng.integers(60, 140)), int(rng.integers(60, 140))))


def _number(digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Two to five MNIST digits side by side, a little apart, a little up or down."""
    count = int(rng.integers(2, 6))
    chosen = digits[rng.choice(len(digits), count, replace=False)]
    row = np.zeros((36, 28 * count + 8), dtype=np.uint8)
    x = 0
    for digit in chosen:
        cols = np.flatnonzero(digit.max(axis=0) > 40)
        part = digit[:, cols[0] : cols[-1] + 1] if len(cols) else digit
        top = int(rng.integers(0, 8))
        width = part.shape[1]
        row[top : top + 28, x : x + width] = np.maximum(row[top : top + 28, x : x + width], part)
        x += width + int(rng.integers(1, 7))
    return _to_mnist_scale(Image.fromarray(row[:, : x + 1]), pad=0.05)


def _photo_of_a_thing(rng: np.random.Generator) -> bytes:
    """A photo with no ink on paper: light, colour, texture and the shapes of objects."""
    height, width = int(rng.integers(120, 480)), int(rng.integers(120, 480))
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(30, 225, 3)
    angle = rng.uniform(0, 2 * np.pi)
    gradient = (np.cos(angle) * x / width + np.sin(angle) * y / height)[..., None] * rng.uniform(-80, 80, 3)
    pixels = base + gradient
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 9))):
        x0, y0 = rng.uniform(-0.2, 1, 2) * (width, height)
        w, h = rng.uniform(0.1, 0.7, 2) * (width, height)
        colour = tuple(int(c) for c in rng.uniform(0, 255, 3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x0 + w, y0 + h), fill=colour)
        else:
            draw.rectangle((x0, y0, x0 + w, y0 + h), fill=colour)
    pixels = np.asarray(image, dtype=np.float32)
    if rng.random() < 0.4:  # stripes or a weave: fabric, blinds, a keyboard
        period = rng.uniform(6, 30)
        pixels += (np.sin((x * np.cos(angle) + y * np.sin(angle)) * 2 * np.pi / period) * rng.uniform(10, 50))[
            ..., None
        ]
    pixels += rng.normal(0, rng.uniform(2, 12), pixels.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=int(rng.integers(60, 92)))
    return buffer.getvalue()


def ink_of(family: str, rng: np.random.Generator, digits: np.ndarray) -> tuple[np.ndarray, str]:
    """One drawing of ``family`` (not ``photo``), white on black at MNIST's scale, and what it is."""
    if family == "printed":
        pool = [*LETTERS, *SYMBOLS, *WORDS]
        text = pool[rng.integers(len(pool))]
        return _printed(text, rng), f"printed {text!r}"
    if family == "drawn":
        length = int(rng.choice([1, 1, 1, 2, 3, 4]))
        chars = "".join(rng.choice(list(DRAWN_LETTERS + "+=#*%?!√✓&"), length))
        return _drawn(chars, rng), f"drawn {chars!r}"
    if family == "written":
        pool = [*LETTERS, *SYMBOLS, *WORDS]
        text = pool[rng.integers(len(pool))]
        return _written(text, rng), f"written {text!r}"
    if family == "crossed":
        return _crossed(digits, rng), "a digit crossed out"
    if family == "shapes":
        return _shape(rng), "a shape"
    if family == "scribble":
        return _scribble(rng), "a scribble"
    if family == "number":
        return _number(digits, rng), "a number of several digits"
    raise ValueError(f"unknown family {family!r}; choose from {FAMILIES}")


def negative_set(
    digits: np.ndarray, *, count: int, seed: int = 0, families=FAMILIES, scenarios=SCENARIOS
) -> list[Upload]:
    """``count`` uploads that are not one digit, cycling through ``families`` and, for the
    drawn ones, through the upload ``scenarios``; ``digits`` (MNIST images) make the numbers."""
    rng = np.random.default_rng(seed)
    uploads = []
    for n in range(count):
        family = families[n % len(families)]
        if family == "photo":
            uploads.append(
                Upload(data=_photo_of_a_thing(rng), scenario="photo", label=None, description="photo: a thing")
            )
            continue
        ink, what = ink_of(family, rng, digits)
        scenario = scenarios[(n // len(families)) % len(scenarios)]
        upload = render_upload(ink, scenario=scenario, rng=rng)
        uploads.append(
            Upload(data=upload.data, scenario=family, label=None, description=f"{what}, {upload.description}")
        )
    return uploads
