"""Stand-ins for writers unlike MNIST's, for evaluation only (never for training).

The sets the product is judged on (scanned forms by other writers, low-resolution scans,
historical records, digits cut from mail) are not ours to have. These re-render MNIST test
digits the ways those writers and scanners differ, and scikit-learn's bundled ``load_digits``
(1,797 digits by 43 writers, 8x8 pixels) brings genuine handwriting from outside MNIST:

- ``european``: 1s with a long up-stroke (the flag MNIST's writers rarely draw), 7s crossed
  at the middle; the other digits as written.
- ``lowres``: thick marker strokes, blurred, cropped tight to the digit (strokes touch the
  edges) and scanned at 12 to 20 pixels, dark on light or light on dark.
- ``slanted``: slant and width of other hands (shear up to ±0.4, width 60-140%).
- ``thin``: a fine pen, strokes a third of MNIST's width, on a large scan.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from ml.fitting.synth import Upload

STYLES = ("european", "lowres", "slanted", "thin")
SIDE = 112  # the working canvas: four times MNIST's


def _canvas(digit: np.ndarray) -> np.ndarray:
    """The 28x28 digit (white on black) as float ink in [0, 1] at 112x112."""
    return np.asarray(Image.fromarray(digit).resize((SIDE, SIDE), Image.Resampling.BICUBIC), np.float32) / 255


def _png(ink: np.ndarray, *, dark_on_light: bool = True) -> bytes:
    pixels = np.clip(ink, 0, 1) * 255
    buffer = io.BytesIO()
    Image.fromarray((255 - pixels if dark_on_light else pixels).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _stroke_width(ink: np.ndarray) -> int:
    mask = ink > 0.5
    boundary = mask & ~ndimage.binary_erosion(mask)
    return max(2, round(2 * mask.sum() / max(boundary.sum(), 1)))


def _add_stroke(ink: np.ndarray, start: tuple[float, float], end: tuple[float, float]) -> np.ndarray:
    layer = Image.new("L", ink.shape[::-1], 0)
    ImageDraw.Draw(layer).line([start, end], fill=255, width=_stroke_width(ink))
    return np.maximum(ink, ndimage.gaussian_filter(np.asarray(layer, np.float32) / 255, 1.0))


def _european(digit: np.ndarray, label: int, rng: np.random.Generator) -> np.ndarray:
    ink = _canvas(digit)
    rows, cols = np.nonzero(ink > 0.5)
    top, bottom = rows.min(), rows.max()
    height = bottom - top
    if label == 1:
        # The flag: from the top of the stem down to the left, a third of the height or more.
        x = float(cols[rows == top].mean())
        length = height * rng.uniform(0.3, 0.45)
        ink = _add_stroke(ink, (x, top), (x - length * rng.uniform(0.7, 1.0), top + length * rng.uniform(0.5, 0.8)))
    elif label == 7:
        # The bar across the middle of the stem.
        middle = top + height * rng.uniform(0.45, 0.55)
        near = np.abs(rows - middle) < 3
        x = float(cols[near].mean()) if near.any() else float(cols.mean())
        half = height * rng.uniform(0.18, 0.26)
        ink = _add_stroke(ink, (x - half, middle), (x + half, middle))
    return ink


def _lowres(digit: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    ink = ndimage.grey_dilation(_canvas(digit), size=int(rng.integers(7, 13)))
    ink = ndimage.gaussian_filter(ink, rng.uniform(1.5, 3.0))
    rows, cols = np.nonzero(ink > 0.3)
    margin = int(rng.integers(0, 3))
    crop = ink[
        max(rows.min() - margin, 0) : rows.max() + 1 + margin, max(cols.min() - margin, 0) : cols.max() + 1 + margin
    ]
    side = int(rng.integers(12, 21))
    scale = side / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    small = np.asarray(Image.fromarray(crop.astype(np.float32), "F").resize(size, Image.Resampling.BOX), np.float32)
    return small / max(float(small.max()), 1e-6), bool(rng.random() < 0.5)


def _slanted(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    shear, width = rng.uniform(-0.4, 0.4), rng.uniform(0.6, 1.4)
    image = Image.fromarray((_canvas(digit) * 255).astype(np.uint8))
    out_width = int(SIDE * 1.6)
    # Output (x, y) samples input (x / width + shear * (y - middle) + shift, y): the digit
    # stays centred whatever its slant and width.
    shift = SIDE / 2 - out_width / 2 / width - shear * SIDE / 2
    slanted = image.transform(
        (out_width, SIDE), Image.Transform.AFFINE, (1 / width, shear, shift, 0, 1, 0), Image.Resampling.BILINEAR
    )
    return np.asarray(slanted, np.float32) / 255


def _thin(digit: np.ndarray) -> np.ndarray:
    ink = np.asarray(Image.fromarray(digit).resize((SIDE * 3, SIDE * 3), Image.Resampling.BICUBIC), np.float32) / 255
    # MNIST's strokes are about a tenth of the digit's height; these end near a thirtieth.
    return ndimage.grey_erosion(ink, size=(2 * _stroke_width(ink) // 3) | 1)


def render_style(digit: np.ndarray, *, style: str, label: int, rng: np.random.Generator) -> Upload:
    """One MNIST test digit (28x28 uint8, white on black) in a writer's or scanner's style."""
    if style == "european":
        data = _png(_european(digit, label, rng))
        description = "European forms: flagged 1s, crossed 7s"
    elif style == "lowres":
        small, dark = _lowres(digit, rng)
        data = _png(small, dark_on_light=dark)
        description = f"low-resolution scan, {small.shape[1]}x{small.shape[0]}, tight crop, thick strokes"
    elif style == "slanted":
        data = _png(_slanted(digit, rng))
        description = "slanted and narrow or wide"
    elif style == "thin":
        data = _png(_thin(digit))
        description = "a fine pen on a large scan"
    else:
        raise ValueError(f"unknown style {style!r}; choose from {STYLES}")
    return Upload(data=data, scenario=style, label=label, description=description)


def style_set(images: np.ndarray, labels: np.ndarray, *, style: str, count: int, seed: int = 0) -> list[Upload]:
    """``count`` uploads of randomly drawn test digits in ``style``; for ``european``, half of
    them 1s and 7s, whose forms differ, the rest any digit."""
    rng = np.random.default_rng(seed)
    if style == "european":
        changed = np.flatnonzero(np.isin(labels, (1, 7)))
        picks = np.concatenate(
            [rng.choice(changed, count // 2, replace=False), rng.choice(len(images), count - count // 2, replace=False)]
        )
    else:
        picks = rng.choice(len(images), size=count, replace=False)
    return [render_style(images[i], style=style, label=int(labels[i]), rng=rng) for i in picks]


def load_digits_uploads() -> list[Upload]:
    """scikit-learn's 1,797 handwritten digits by 43 writers (UCI), 8x8 with 17 grey levels,
    as the 8x8 PNGs a person would upload: dark ink on white."""
    from sklearn.datasets import load_digits  # evaluation only: ships its data, needs no download

    digits = load_digits()
    return [
        Upload(data=_png(image / 16.0), scenario="load_digits", label=int(label), description="8x8, 43 writers")
        for image, label in zip(digits.images, digits.target, strict=True)
    ]
