"""Augmentation that mirrors real uploads, and extra writer forms (fitting only).

Real uploads reach the model after ``ml.serving.preprocessing`` has cropped, scaled and centred them,
so what is left to learn is the residue: slight rotation and slant, a scale a little off, a
pixel or two of shift, and strokes thinner or thicker than MNIST's; with ``writers``, the way
other writers and scanners vary (elastic strokes, low resolution) and forms MNIST's American
writers rarely use (``writer_variants``).
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw

from ml.serving.artifacts import INPUT_SIDE

MAX_ROTATION_DEG = 12.0
MAX_SHEAR = 0.2
SCALE_RANGE = (0.85, 1.12)
MAX_SHIFT_PX = 2.5


def _transformed(images, transforms):
    """Each image through its projective transform (a row of 8), bilinear, background outside."""
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )


def _random_affine(images):
    n = tf.shape(images)[0]
    angle = tf.random.uniform([n], -1.0, 1.0) * (MAX_ROTATION_DEG * math.pi / 180.0)
    shear = tf.random.uniform([n], -MAX_SHEAR, MAX_SHEAR)
    scale = tf.random.uniform([n], *SCALE_RANGE)
    shift = tf.random.uniform([n, 2], -MAX_SHIFT_PX, MAX_SHIFT_PX)
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    # Output pixel (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2), about the centre.
    a0, a1 = cos, -sin + shear * cos
    b0, b1 = sin, cos + shear * sin
    c = 13.5
    a2 = c - a0 * c - a1 * c + shift[:, 0]
    b2 = c - b0 * c - b1 * c + shift[:, 1]
    zeros = tf.zeros([n])
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    return _transformed(images, transforms)


def _random_thickness(images):
    n = tf.shape(images)[0]
    thicker = tf.nn.max_pool2d(images, ksize=2, strides=1, padding="SAME")
    much_thicker = tf.nn.max_pool2d(images, ksize=3, strides=1, padding="SAME")
    thinner = -tf.nn.max_pool2d(-images, ksize=2, strides=1, padding="SAME")
    choice = tf.random.uniform([n, 1, 1, 1])
    # Half unchanged; the rest thicker (pens, markers, fingers) or thinner (fine pens).
    return tf.where(
        choice < 0.5,
        images,
        tf.where(choice < 0.7, thicker, tf.where(choice < 0.8, much_thicker, thinner)),
    )


# Elastic distortion (Simard et al. 2003): every pixel moved by a uniform random field smoothed
# with a Gaussian, the wobble of one hand against another; their MNIST values.
ELASTIC_ALPHA = 34.0
ELASTIC_SIGMA = 4.0
ELASTIC_SHARE = 0.5
# Low-resolution scans: the digit through 10-16 pixels and back, blurred and thick.
LOW_RES_SIDES = (10, 16)
LOW_RES_SHARE = 0.15
# Form scanners (NIST's, the 16x16 and 32x32 sets) store each digit stretched to fill a square
# box: a 1 comes as wide as it is tall. A share of the batch is stretched sideways towards that.
BOX_STRETCH_SHARE = 0.15
BOX_STRETCH_MAX = 4.0
# Binary scans: ink or paper, nothing between, at a threshold anywhere from light to heavy,
# seen through 16 pixels as such scans are.
BINARY_SHARE = 0.15
BINARY_THRESHOLDS = (0.25, 0.6)
# Form scanners that fill the box (the 16x16 European sets): each digit cropped to its ink and
# stretched both ways to fill a square, seen through a 16x16 (or so) grid as ink or paper. Kept
# through the clean epochs too: it is a way digits arrive, not a distortion of the hand.
FORM_SCAN_SHARE = 0.15
FORM_SCAN_GRIDS = (16, 25)  # the whole 28 px frame; the digit's 20 px box falls on 11-17 cells
# Bumped whenever the augmentation changes what a recipe trains on; recorded in the metadata.
# 2: stretched to the box, binary scans, longer flags on 1s (2026-12-06).
# 3: box-filling 16x16 form scans, through every epoch (2026-12-06).
AUGMENTATION = 3


def _gaussian_kernel(sigma: float) -> np.ndarray:
    offsets = np.arange(-round(3 * sigma), round(3 * sigma) + 1, dtype=np.float32)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def _bilinear(images, rows, cols):
    """Sample (n, h, w, 1) images at fractional (n, h, w) positions; outside is background."""
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]])  # a frame of background to fall on
    top, left = tf.floor(rows), tf.floor(cols)
    down, right = (rows - top)[..., None], (cols - left)[..., None]
    top, left = tf.cast(top, tf.int32), tf.cast(left, tf.int32)

    def at(row, col):
        row = tf.clip_by_value(row + 1, 0, height + 1)
        col = tf.clip_by_value(col + 1, 0, width + 1)
        return tf.gather_nd(padded, tf.stack([row, col], axis=-1), batch_dims=1)

    upper = at(top, left) * (1 - right) + at(top, left + 1) * right
    lower = at(top + 1, left) * (1 - right) + at(top + 1, left + 1) * right
    return upper * (1 - down) + lower * down


def _random_elastic(images):
    shape = tf.shape(images)
    noise = tf.random.uniform(tf.stack([shape[0], shape[1], shape[2], 2]), -1.0, 1.0)
    kernel = _gaussian_kernel(ELASTIC_SIGMA)
    along_rows = tf.constant(np.tile(kernel[None, :, None, None], (1, 1, 2, 1)))
    along_cols = tf.constant(np.tile(kernel[:, None, None, None], (1, 1, 2, 1)))
    smooth = tf.nn.depthwise_conv2d(noise, along_rows, [1, 1, 1, 1], "SAME")
    field = tf.nn.depthwise_conv2d(smooth, along_cols, [1, 1, 1, 1], "SAME") * ELASTIC_ALPHA
    rows, cols = tf.meshgrid(tf.range(shape[1]), tf.range(shape[2]), indexing="ij")
    rows, cols = tf.cast(rows, tf.float32)[None], tf.cast(cols, tf.float32)[None]
    return _bilinear(images, rows + field[..., 0], cols + field[..., 1])


def _ink_span(mask, axis: int):
    """First and last index along ``axis`` (1: rows, 2: columns) holding ink, per image."""
    along = tf.reduce_any(mask, axis=[a for a in (1, 2, 3) if a != axis])
    index = tf.cast(tf.range(tf.shape(along)[1]), tf.float32)[None]
    first = tf.reduce_min(tf.where(along, index, 1e4), axis=1)
    last = tf.reduce_max(tf.where(along, index, -1.0), axis=1)
    return first, last


def _stretched_to_box(images):
    """Each digit stretched sideways about its middle, part or all of the way to as wide as it
    is tall (never narrower than it was): digits as box-filling form scanners store them."""
    ink = images > 0.3
    top, bottom = _ink_span(ink, 1)
    left, right = _ink_span(ink, 2)
    height, width = tf.maximum(bottom - top + 1, 1.0), tf.maximum(right - left + 1, 1.0)
    wanted = tf.random.uniform(tf.shape(height), 0.6, 1.0) * height / width
    factor = tf.clip_by_value(wanted, 1.0, BOX_STRETCH_MAX)
    middle = tf.where(right >= left, (left + right) / 2, 13.5)
    zeros, ones = tf.zeros_like(factor), tf.ones_like(factor)
    # Output column x samples input column middle + (x - middle) / factor; rows unchanged.
    transforms = tf.stack([1 / factor, zeros, middle - middle / factor, zeros, ones, zeros, zeros, zeros], axis=1)
    return _transformed(images, transforms)


def _binary_scan(images):
    """Ink or paper at a random threshold, then through 16 pixels and back."""
    threshold = tf.random.uniform([tf.shape(images)[0], 1, 1, 1], *BINARY_THRESHOLDS)
    binary = tf.cast(images > threshold, tf.float32)
    return tf.image.resize(tf.image.resize(binary, [16, 16], method="area"), tf.shape(images)[1:3])


def form_scan(images):
    """Each digit cropped to its ink and stretched both ways to fill the 20 px box, then
    through a coarse grid as ink or paper at a random threshold, and back."""
    ink = images > 0.3
    top, bottom = _ink_span(ink, 1)
    left, right = _ink_span(ink, 2)
    empty = right < left
    top, bottom = tf.where(empty, 4.0, top), tf.where(empty, 23.0, bottom)
    left, right = tf.where(empty, 4.0, left), tf.where(empty, 23.0, right)
    # Output pixel 4..23 samples the ink box's first..last pixel, each axis on its own.
    across, down = (right - left) / 19.0, (bottom - top) / 19.0
    zeros = tf.zeros_like(across)
    transforms = tf.stack([across, zeros, left - 4 * across, zeros, down, top - 4 * down, zeros, zeros], axis=1)
    boxed = _transformed(images, transforms)
    grid = tf.random.uniform([], *FORM_SCAN_GRIDS, dtype=tf.int32)
    coarse = tf.image.resize(boxed, [grid, grid], method="area")
    threshold = tf.random.uniform([tf.shape(images)[0], 1, 1, 1], *BINARY_THRESHOLDS)
    scanned = tf.cast(coarse > threshold, tf.float32)
    return tf.image.resize(scanned, tf.shape(images)[1:3], method="bilinear")


def _some(images, changed, share: float):
    """``changed`` for a random ``share`` of the batch, ``images`` for the rest."""
    pick = tf.random.uniform([tf.shape(images)[0], 1, 1, 1]) < share
    return tf.where(pick, changed, images)


def _random_writer(images):
    # Written out rather than keras.ops.image.elastic_transform, which returns one image for
    # the whole batch inside tf.data (Keras 3.15, batch size unknown when traced).
    images = _some(images, _random_elastic(images), ELASTIC_SHARE)
    side = tf.random.uniform([], *LOW_RES_SIDES, dtype=tf.int32)
    blurred = tf.image.resize(tf.image.resize(images, [side, side], method="area"), tf.shape(images)[1:3])
    images = _some(images, blurred, LOW_RES_SHARE)
    images = _some(images, _stretched_to_box(images), BOX_STRETCH_SHARE)
    return _some(images, _binary_scan(images), BINARY_SHARE)


def augment_batch(images, *, writers: bool = False, scanners: bool = False):
    """Augment a float batch (n, 28, 28, 1) the way real uploads vary (``writers``: and the
    way other writers and scanners do; ``scanners``: and box-filling form scanners)."""
    if writers:
        images = _random_writer(images)
    if scanners:
        images = _some(images, form_scan(images), FORM_SCAN_SHARE)
    images = _random_affine(_random_thickness(images))
    # ml.serving.preprocessing scales every input to a peak of 1; thinned strokes must match that.
    peak = tf.reduce_max(images, axis=[1, 2, 3], keepdims=True)
    return images / tf.maximum(peak, 1e-3)


# Forms MNIST's American writers rarely use: 1 with an up-stroke, from short to nearly as long
# as the stem (as European writers make it), and 7 crossed at the middle.
WRITER_VARIANT_SHARE = 0.3  # of the 1s and of the 7s, added as extra training images
_WORK = 4  # drawn at four times the size, then reduced, for anti-aliased strokes


def _with_stroke(digit: np.ndarray, start: tuple[float, float], end: tuple[float, float]) -> np.ndarray:
    big = Image.fromarray(digit).resize((INPUT_SIDE * _WORK, INPUT_SIDE * _WORK), Image.Resampling.BICUBIC)
    mask = np.asarray(big) > 127
    width = max(4, round(2 * mask.sum() / max((mask ^ np.roll(mask, 1, axis=1)).sum(), 1)))
    ImageDraw.Draw(big).line([(start[0] * _WORK, start[1] * _WORK), (end[0] * _WORK, end[1] * _WORK)], 255, width)
    return np.asarray(big.resize((INPUT_SIDE, INPUT_SIDE), Image.Resampling.BOX))


def writer_variants(images: np.ndarray, labels: np.ndarray, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Flagged 1s and crossed 7s made from a share of MNIST's own, as extra training images."""
    rng = np.random.default_rng(seed)
    made, made_labels = [], []
    for label in (1, 7):
        chosen = np.flatnonzero(labels == label)
        for index in rng.choice(chosen, int(len(chosen) * WRITER_VARIANT_SHARE), replace=False):
            digit = images[index]
            rows, cols = np.nonzero(digit > 127)
            if not len(rows):
                continue
            top, height = rows.min(), rows.max() - rows.min()
            if label == 1:
                x, length = cols[rows == top].mean(), height * rng.uniform(0.25, 0.8)
                end = (x - length * rng.uniform(0.6, 1.0), top + length * rng.uniform(0.4, 0.9))
                made.append(_with_stroke(digit, (x, top), end))
            else:
                y = top + height * rng.uniform(0.4, 0.6)
                near = np.abs(rows - y) < 1.5
                x, half = (cols[near].mean() if near.any() else cols.mean()), height * rng.uniform(0.15, 0.3)
                made.append(_with_stroke(digit, (x - half, y), (x + half, y + rng.uniform(-1, 1))))
            made_labels.append(label)
    return np.array(made, dtype=np.uint8).reshape(-1, INPUT_SIDE, INPUT_SIDE), np.array(made_labels, dtype=labels.dtype)
