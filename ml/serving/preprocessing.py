"""Any uploaded image (bytes) -> the 28x28 input an MNIST model expects.

MNIST digits are white ink on black, their longest side scaled to 20 pixels with
anti-aliasing, centred by centre of mass in a 28x28 field. Real uploads are not: phone
photos of dark ink on uneven paper, transparent canvas drawings, light-on-dark screenshots,
digits anywhere in a frame of any size. ``to_model_input`` undoes each of those:

1. decode with Pillow (named formats only, pixel limit), honour EXIF orientation;
2. flatten transparency onto a background that contrasts with the strokes; to grayscale;
3. decide polarity from the border (the background) against the extremes (the ink);
4. subtract a local background estimate, which removes uneven lighting and paper tone;
5. threshold (Otsu) a lightly blurred ink map, keep the digit's connected components;
   an image over LOCATE_SIDE px does 3-5 twice: on a copy of at most LOCATE_SIDE squared
   pixels to find the polarity, the paper and where the digit is, then on the region around
   the digit alone, cut from the decoded image at no more than DETAIL_SIDE squared pixels and
   measured against that paper (the page's border is paper, a tight region's may be ink);
6. crop to them, thicken strokes too thin to survive the downscale, scale the longest
   side to 20 px, pad to 28x28 and shift the centre of mass to the centre.

Everything that can go wrong raises ``PreprocessingError`` with a message for people.

``InkMap`` is an image's ink found once (steps 1-5): segmentation (``ml.serving.segment``)
works on it through its methods alone (crops, turns, masks, each piece's input by step 6).

Kept whole: one module past STYLE's 400 lines on purpose: the steps hand one decoded image, its paper
and its guards (pixel caps, Pillow's errors as ours) from one to the next, and the ink map
that segmentation works on makes its pieces' inputs with them; split by step, each would
import the rest, and every piece's input would cross between modules (``bench/hops.py``).
"""

from __future__ import annotations

import io
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np
import pillow_heif
from PIL import Image, ImageChops, ImageOps

from ml.serving.artifacts import INPUT_SIDE
from ml.serving.decoding_limits import decoding_cost_refusal, structure_refusal

DIGIT_BOX = 20  # MNIST: the digit's longest side, before centring in the 28x28 field
MNIST_CENTRE = 14.0  # where MNIST's centres of mass lie (measured over the training set)

# iPhone photos are HEIC. Only the primary image is read: thumbnails, depth maps and auxiliary
# images would cost memory and time and never hold the digit.
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

# Formats we decode, named explicitly: Pillow never guesses beyond these; with the suffix a
# stored upload of each format is given.
FORMAT_SUFFIXES = {
    "PNG": ".png",
    "JPEG": ".jpg",  # covers MPO (phone photos)
    "GIF": ".gif",
    "BMP": ".bmp",
    "WEBP": ".webp",
    "TIFF": ".tif",
    "HEIF": ".heic",  # covers HEIC (iPhone photos)
}
ACCEPTED_FORMATS = tuple(FORMAT_SUFFIXES)
# The same list for people, who know HEIF by its iPhone name: "PNG, JPEG, ..., TIFF or HEIC".
_NAMES_FOR_PEOPLE = [{"HEIF": "HEIC"}.get(name, name) for name in ACCEPTED_FORMATS]
ACCEPTED_FORMATS_TEXT = f"{', '.join(_NAMES_FOR_PEOPLE[:-1])} or {_NAMES_FOR_PEOPLE[-1]}"
# Our own pixel limit, below Pillow's decompression-bomb threshold; a 50 MP phone photo fits.
MAX_PIXELS = 64_000_000
# JPEGs are decoded (by DCT scaling) at no less than this: a digit a tenth of the page wide
# still has 50 px to be read from.
WORKING_SIDE = 512
# Larger images are read in two steps: where the digit is, on a copy this size ...
LOCATE_SIDE = 256
# ... then the region around it (this share of the digit's size added on each side) ...
LOCATE_MARGIN = 0.25
# ... at no more than this: plenty for a digit that ends up 20 px tall.
DETAIL_SIDE = 160
# Ink pixels enough for the overview to say where a digit is (a small one has few there).
LOCATE_RANK = 8
# The paper under the ink is estimated at this fraction of the working resolution.
PAPER_REDUCTION = 8
# Below this side the paper is taken as one level rather than estimated locally.
SMALL_IMAGE_SIDE = 64
# Contrast (0..1) below which there is no ink on the page, only paper and noise.
MIN_INK_CONTRAST = 0.12
# MNIST's typical stroke width in the 20 px box; thinner uploads are thickened towards it.
TARGET_STROKE_PX = 2.2
# Ruled and squared paper: a printed line is thin, runs across at least RULING_LENGTH of the
# ink map, from edge to edge (within RULING_EDGE of them: the page goes on beyond the photo)
# and on past the writing by RULING_BEYOND of the map at both ends (a 7's bar or a tightly
# cropped 1 may cross the whole image, but stops where the rest of its digit does; a 2's long
# foot stops short of the edges).
# A line is found as what is thinner than RULING_BAR pixels across it.
RULING_LENGTH = 0.6
RULING_BEYOND = 0.05
RULING_EDGE = 0.05
RULING_SPECK = 5  # pixels: writing smaller than this is paper grain
RULING_BAR = 7
RULING_SLANT = 0.15  # rise over run: a photo taken a little askew
RULING_BAND = 5  # pixels of the map taken around a line found, for its anti-aliased edges
RULING_MOST = 48
# Ink on a line, darker than RULING_DARKER times the line's and RULING_WRITING of the way from
# the line's to the writing's strength, is writing on the line (an edge of a stroke on a line
# is between the two).
RULING_DARKER = 1.3
RULING_WRITING = 0.5
RULING_THICKNESS = 0.03  # of the map's side across the line, at most (and at least 3 px)


class PreprocessingError(ValueError):
    """The upload cannot be turned into a digit: not an image we read, too large, or blank.

    The message is meant for the person who uploaded the file.
    """


class NothingToRead(PreprocessingError):
    """The image decodes, but holds no ink to read: a blank page or an empty photo. People are
    given that as a verdict (``ml.serving.numbers``), not as a failure to read."""

    def __init__(self, box: tuple[int, int, int, int] | None = None) -> None:
        super().__init__("No digit found: the image looks blank.")
        self.box = box  # the whole image (x, y, width, height), where known


@dataclass(frozen=True)
class ModelInput:
    array: np.ndarray  # (28, 28) float32 in [0, 1], white ink on black: what the model takes
    display: np.ndarray  # (28, 28) uint8, the same image for people ("what the model saw")


@dataclass(frozen=True)
class ImageInfo:
    """What an accepted upload is: its real format (by content) and its size in pixels."""

    format: str
    mime: str
    width: int
    height: int


# Pixels the web process may decode to prove an upload is an image (16 MB as RGBA). Larger
# images are judged by their headers there, and decoded only by the worker, one at a time.
VERIFY_MAX_PIXELS = 4_000_000

# The colour modes Pillow's decoders of our formats hand out. Each becomes one we work in
# (see ``_normalised``); an image in any other mode is refused at upload.
KNOWN_MODES = frozenset(
    {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "I", "F"}
    | {"I;16", "I;16L", "I;16B", "I;16N"}
)
NOT_READABLE = f"This file is not an image we can read ({ACCEPTED_FORMATS_TEXT})."


def _unknown_mode(mode: str) -> PreprocessingError:
    return PreprocessingError(f"This image's colour mode ({mode}) is not one we can read.")


@contextmanager
def _read_by_pillow():
    """Pillow's reading of an upload (opening, decoding, verifying): its decompression-bomb
    warning is an error, and every failure of a broken file becomes our error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PreprocessingError("The image has too many pixels to process safely.") from exc
    except Exception as exc:  # Pillow raises many types for broken files; all mean the same here
        raise PreprocessingError(NOT_READABLE) from exc


def open_lazily(data: bytes, *, max_pixels: int) -> tuple[Image.Image, ImageInfo]:
    """Read the headers only: format, size and mode, refused when over ``max_pixels`` or when
    reading or decoding it would cost more than such an image should (``ml.serving.decoding_limits``:
    a JPEG's segments and scans, a large image in a small file). Every decoding path opens an
    upload here."""
    if not data:
        raise PreprocessingError("The file is empty.")
    if reason := structure_refusal(data):
        raise PreprocessingError(reason)
    with _read_by_pillow():
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    width, height = image.size
    if width * height > max_pixels:
        raise PreprocessingError(
            f"The image is {width}x{height} pixels; the limit is {max_pixels // 1_000_000} megapixels."
        )
    if image.mode not in KNOWN_MODES:
        raise _unknown_mode(image.mode)
    if reason := decoding_cost_refusal(data, image_format=image.format, width=width, height=height):
        raise PreprocessingError(reason)
    mime = Image.MIME.get(image.format, "application/octet-stream")
    return image, ImageInfo(format=image.format, mime=mime, width=width, height=height)


def decode_pixels(image: Image.Image) -> None:
    """Decode the pixels; every failure of a broken file becomes our error."""
    with _read_by_pillow():
        if image.format in ("JPEG", "MPO"):
            # Let the JPEG decoder downscale by DCT (a 12 MP photo decodes ~8x faster) and
            # hand out only the luma, which is the grey we work in.
            image.draft("L", (WORKING_SIDE, WORKING_SIDE))
        image.load()


def open_image(data: bytes, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode the first frame of an image we accept, checking size before pixels are read."""
    image, _ = open_lazily(data, max_pixels=max_pixels)
    decode_pixels(image)
    return image


def inspect_image(
    data: bytes, *, max_pixels: int = MAX_PIXELS, verify_max_pixels: int = VERIFY_MAX_PIXELS
) -> ImageInfo:
    """Check that the bytes are an image we accept; say what it is. Cheap and bounded, for
    the web process: its headers (``open_lazily``), then its pixels as far as ``verify_image``
    goes."""
    image, info = open_lazily(data, max_pixels=max_pixels)
    verify_image(image, info, verify_max_pixels=verify_max_pixels)
    return info


def verify_image(image: Image.Image, info: ImageInfo, *, verify_max_pixels: int = VERIFY_MAX_PIXELS) -> None:
    """Check an image opened by ``open_lazily`` past its headers, at a bounded cost: small
    images are decoded in full, JPEGs at a reduced scale, and larger images only checked as
    far as their format allows without decoding (a PNG's chunks and checksums). The worker
    decodes those, and a broken one fails there with a reason."""
    if info.width * info.height <= verify_max_pixels or info.format in ("JPEG", "MPO"):
        decode_pixels(image)
    elif info.format == "PNG":
        with _read_by_pillow():
            image.verify()


def _scaled_to_unit(values: np.ndarray) -> np.ndarray:
    """Integer or float samples of any depth -> [0, 1], by the range their maximum says
    they use: 0..1 (floats only), 8 bits, 16 bits, or their own maximum beyond that."""
    ranges = (1.0, 255.0, 65535.0) if values.dtype.kind == "f" else (255.0, 65535.0)
    values = np.nan_to_num(values.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(values.max(initial=0))
    top = next((limit for limit in ranges if peak <= limit), peak)
    return np.clip(values / top, 0.0, 1.0)


def _normalised(image: Image.Image) -> Image.Image:
    """One of the modes we work in: L, LA, RGB, RGBA, or F in [0, 1] for deep and float images.

    16-bit, 32-bit and float samples keep their depth; LAB keeps its lightness; CMYK, YCbCr
    and HSV become RGB; premultiplied alpha and palettes are expanded.
    """
    mode = image.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return image
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_scaled_to_unit(np.asarray(image)), mode="F")
    if mode == "LAB":
        return image.getchannel("L")
    if mode in ("1", "La"):
        return image.convert("LA" if mode == "La" else "L")
    if mode in ("P", "PA", "RGBa"):
        return image.convert("RGBA")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise _unknown_mode(mode) from exc


def _flattened(image: Image.Image) -> Image.Image:
    """Transparency flattened onto a contrasting background, in 8 bits (a large image's pixels
    stay small); an image without alpha is returned as it is.

    Fully opaque: alpha says nothing. Fully transparent: the strokes are the alpha itself.
    Canvas exports have opaque strokes on a transparent background (often black underneath):
    dark strokes go onto white, light ones onto black, by the opaque pixels' grey.
    """
    if image.mode not in ("LA", "RGBA"):
        return image
    gray, alpha = image.convert("LA").split()
    lowest, highest = cv2.minMaxLoc(np.asarray(alpha))[:2]
    if lowest > 127:
        return gray
    if highest <= 127:
        return alpha
    opaque = cv2.compare(np.asarray(alpha), 127, cv2.CMP_GT)
    if cv2.mean(np.asarray(gray), mask=opaque)[0] < 127.5:
        return ImageChops.invert(ImageChops.multiply(ImageChops.invert(gray), alpha))
    return ImageChops.multiply(gray, alpha)


def _to_gray(image: Image.Image) -> np.ndarray:
    """Float grayscale in [0, 1], transparency flattened (``_flattened``)."""
    image = _flattened(image)
    if image.mode == "F":
        return np.clip(np.asarray(image, dtype=np.float32), 0, 1)
    return np.asarray(image.convert("L"), dtype=np.float32) * (1.0 / 255.0)


def _upright(image: Image.Image) -> Image.Image:
    image = ImageOps.exif_transpose(image)
    if image.mode == "RGB":
        image = image.convert("L")  # grey first: a third of the pixels to shrink
    return image


def _border(gray: np.ndarray) -> np.ndarray:
    band = max(1, min(gray.shape) // 20)
    return np.concatenate([gray[:band].ravel(), gray[-band:].ravel(), gray[:, :band].ravel(), gray[:, -band:].ravel()])


class _Histogram:
    """Float samples in [0, top] counted at 256 levels: quantiles and Otsu's split from one
    pass over the pixels in uint8, where sorting them (numpy's percentile, median) cost ten."""

    LEVELS = 256

    def __init__(self, values: np.ndarray, top: float | None = None):
        self.top = (cv2.minMaxLoc(values)[1] if top is None else top) or 1.0
        levels = cv2.convertScaleAbs(values, alpha=(self.LEVELS - 1) / self.top)  # rounded, saturated
        self.counts = cv2.calcHist([levels], [0], None, [self.LEVELS], [0, self.LEVELS]).ravel().astype(np.float64)
        self.centres = np.arange(self.LEVELS) * (self.top / (self.LEVELS - 1))

    def quantile(self, share: float, below: float | None = None) -> float:
        counts = self.counts if below is None else np.where(self.centres <= below, self.counts, 0.0)
        cumulative = np.cumsum(counts)
        return float(self.centres[min(np.searchsorted(cumulative, share * cumulative[-1]), self.LEVELS - 1)])

    def kth_largest(self, rank: int) -> float:
        from_top = np.cumsum(self.counts[::-1])
        return float(self.centres[self.LEVELS - 1 - np.searchsorted(from_top, rank)])

    def spread(self, centre: float, below: float) -> float:
        """Median absolute deviation from ``centre`` of the samples up to ``below``."""
        counts = np.where(self.centres <= below, self.counts, 0.0)
        distance = np.abs(self.centres - centre)
        order = np.argsort(distance, kind="stable")
        cumulative = np.cumsum(counts[order])
        return float(distance[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])

    def otsu(self) -> float:
        weight_low = np.cumsum(self.counts)
        weight_high = weight_low[-1] - weight_low
        sum_low = np.cumsum(self.counts * self.centres)
        mean_low = sum_low / np.maximum(weight_low, 1)
        mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1)
        between = weight_low * weight_high * (mean_low - mean_high) ** 2
        return float(self.centres[np.argmax(between)])


def _quantile(values: np.ndarray, share: float) -> float:
    """``np.percentile(values, 100 * share)`` (linear interpolation) by partitioning only: a
    tenth of its cost on a few thousand pixels."""
    values = values.ravel()
    position = share * (len(values) - 1)
    low = int(position)
    high = min(low + 1, len(values) - 1)
    parted = np.partition(values, (low, high))
    return float(parted[low] + (parted[high] - parted[low]) * (position - low))


def _ink_is_light(gray: np.ndarray, border: np.ndarray, histogram: _Histogram, low: float, high: float) -> bool:
    """Polarity. A page's border is paper, so the ink is the extreme farther from it. A digit
    cropped tight to its box has ink on the border too (sometimes most of it): then ink is
    what the border and the image both hold less of, on either side of an Otsu split."""
    reach = 0.15 * (high - low)
    border_has_both = min((border < low + reach).mean(), (border > high - reach).mean()) >= 0.05
    if not border_has_both:
        background_level = _quantile(border, 0.5)
        return high - background_level > background_level - low
    split = histogram.otsu()
    return (border > split).mean() + np.count_nonzero(gray > split) / gray.size < 1.0


def _ink_map(gray: np.ndarray) -> tuple[np.ndarray, bool, np.ndarray]:
    """How much ink each pixel holds (0 = paper), whatever the polarity and lighting; with
    whether the ink is light and the paper's level under it (on the ink-dark side)."""
    border = _border(gray)
    histogram = _Histogram(gray, top=1.0)
    low, high = histogram.quantile(0.005), histogram.quantile(0.995)
    inverted = _ink_is_light(gray, border, histogram, low, high)
    if inverted:
        gray, border = 1.0 - gray, 1.0 - border  # light ink on a dark background: make the ink the dark side
    if max(gray.shape) < SMALL_IMAGE_SIDE:
        # Too few pixels for a local estimate: a tiny image has one paper level, its border's
        # (leaving out the ink a tight crop puts on it).
        paper_side = border[border >= (2.0 - low - high if inverted else low + high) / 2]
        paper = np.full_like(gray, float(np.median(paper_side if paper_side.size else border)))
    else:
        # The paper's own brightness, estimated by a grey closing (max then min filter) wider
        # than any stroke, then smoothed: it follows shadows and gradients but not the digit.
        # It is smooth by construction, so it is estimated on a copy 8x smaller, each pixel the
        # brightest of its 8x8 block (the paper between strokes), and scaled back.
        height, width = gray.shape
        step = PAPER_REDUCTION
        coarse = cv2.dilate(gray, np.ones((step, step), np.uint8))[::step, ::step]
        size = max(1, round(max(height, width) * 0.25 / step))
        square = np.ones((size, size), np.uint8)
        paper = cv2.morphologyEx(np.ascontiguousarray(coarse), cv2.MORPH_CLOSE, square, borderType=cv2.BORDER_REPLICATE)
        paper = cv2.blur(paper, (size, size), borderType=cv2.BORDER_REPLICATE)
        paper = cv2.resize(paper, (width, height), interpolation=cv2.INTER_LINEAR)
    return _ink_against(gray, paper), inverted, paper


def _without_rulings(ink: np.ndarray) -> np.ndarray:
    """The ink map without the printed lines of ruled or squared paper (``RULING_*``): their
    pixels become paper, but for the writing on them (darker than the line). The map itself
    (the same object) where it has none."""
    height, width = ink.shape
    if min(height, width) < SMALL_IMAGE_SIDE // 2:
        return ink
    strength = _Histogram(ink).kth_largest(_strength_rank(ink))
    if strength < MIN_INK_CONTRAST:
        return ink
    lines = [line for across in (False, True) for line in _ruling_candidates(ink, across)]
    if not lines:
        return ink
    printed = np.zeros(ink.shape, dtype=bool)
    for line, *_ in lines:
        printed |= line
    # The writing: strong ink off the lines, less specks. Without any, the lines stay: a lone
    # stroke from edge to edge (a tightly cropped 1) is the writing.
    grown = cv2.dilate(printed.astype(np.uint8), np.ones((3, 3), np.uint8))
    writing = ((ink > 0.5 * strength) & ~grown.astype(bool)).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(writing, connectivity=8)
    parts = stats[1:][stats[1:, cv2.CC_STAT_AREA] >= RULING_SPECK]
    if not len(parts):
        return ink
    extent = {
        True: (parts[:, cv2.CC_STAT_TOP].min(), (parts[:, cv2.CC_STAT_TOP] + parts[:, cv2.CC_STAT_HEIGHT]).max() - 1),
        False: (parts[:, cv2.CC_STAT_LEFT].min(), (parts[:, cv2.CC_STAT_LEFT] + parts[:, cv2.CC_STAT_WIDTH]).max() - 1),
    }
    cleaned = None
    for line, across, (start, end), (enters, leaves) in lines:
        side, (first, last) = (height if across else width), extent[across]
        printed_across = start <= enters + RULING_EDGE * side and end >= leaves - RULING_EDGE * side
        if not (printed_across and start < first - RULING_BEYOND * side and end > last + RULING_BEYOND * side):
            continue  # it ends short of the edges, or where the writing does: a stroke of a digit
        # Its anti-aliased edges too, but not the writing on it (RULING_DARKER, RULING_WRITING),
        # which stays. (Filling what goes from beside the line mended strokes crossing it, but
        # closed the loops the line ran through: a 6 became an 8.)
        grown = cv2.dilate(line.astype(np.uint8), np.ones((1, 3) if across else (3, 1), np.uint8)).astype(bool)
        own = float(np.median(ink[line]))
        cleaned = ink.copy() if cleaned is None else cleaned
        cleaned[grown & (ink <= max(RULING_DARKER * own, own + RULING_WRITING * (strength - own)))] = 0.0
    return ink if cleaned is None else cleaned


_Ruling = tuple[np.ndarray, bool, tuple[int, int], tuple[int, int]]


def _strength_rank(ink: np.ndarray) -> int:
    """Which of the ink's strongest pixels gives its strength: a high value that a few specks
    of noise cannot reach on their own, yet one that a small digit on a big page still supplies."""
    return min(max(ink.size // 400, 1), 50)


def ink_window(present: np.ndarray, margin: int = 0) -> tuple[slice, slice]:
    """The box of what ``present`` holds, ``margin`` pixels wider where the map allows (all of
    the map when it holds nothing)."""
    rows, cols = np.flatnonzero(present.any(axis=1)), np.flatnonzero(present.any(axis=0))
    if not len(rows):
        return slice(0, present.shape[0]), slice(0, present.shape[1])
    return (
        slice(max(rows[0] - margin, 0), rows[-1] + 1 + margin),
        slice(max(cols[0] - margin, 0), cols[-1] + 1 + margin),
    )


def _ruling_candidates(ink: np.ndarray, across: bool) -> list[_Ruling]:
    """Long thin straight lines of ink along rows (``across``: along columns), slanted by at
    most RULING_SLANT: each as a mask, its direction, where its ink starts and ends along it,
    and where it enters and leaves the map (a slanted line may leave by the top or bottom)."""
    if across:
        return [
            (line.T, True, extent, inside)
            for line, _, extent, inside in _ruling_candidates(np.ascontiguousarray(ink.T), False)
        ]
    height, width = ink.shape
    inked = _thin_ink(ink)
    # Straight lines through most columns (a Hough transform: gaps where lines cross, fade or
    # drown in noise do not break them), then each checked column by column.
    slant = float(np.arctan(RULING_SLANT))
    found_lines = cv2.HoughLines(
        inked,
        1,
        np.pi / 720,
        max(8, round(RULING_LENGTH * width / 2)),
        min_theta=np.pi / 2 - slant,
        max_theta=np.pi / 2 + slant,
    )
    found: list[_Ruling] = []
    near = cv2.dilate(inked, np.ones((3, 1), np.uint8)).astype(bool)
    columns = np.arange(width)
    taken: list[np.ndarray] = []
    # The strongest first, and no more than RULING_MOST (each with its near twins): a page of
    # hatching has hundreds, and costs no more.
    for rho, theta in [] if found_lines is None else found_lines[:RULING_MOST, 0]:
        rows = np.round((rho - columns * np.cos(theta)) / np.sin(theta)).astype(int)
        inside = (rows >= 0) & (rows < height)
        covered = np.zeros(width, dtype=bool)
        covered[inside] = near[rows[inside], columns[inside]]
        # A slanted line near the top or bottom leaves the map: judged on what lies inside.
        if (
            inside.mean() < 0.5
            or covered[inside].mean() < RULING_LENGTH
            or any(np.abs(rows - other).max() <= RULING_BAND for other in taken)
        ):
            continue
        taken.append(rows)
        line = _band(rows, inked.shape) & inked.astype(bool)
        if line.sum() / max(covered.sum(), 1) > max(3.0, RULING_THICKNESS * height):
            continue  # thick: a stroke, not a printed line
        ends, within = np.flatnonzero(covered), np.flatnonzero(inside)
        found.append((line, False, (int(ends[0]), int(ends[-1])), (int(within[0]), int(within[-1]))))
    return found


def _thin_ink(ink: np.ndarray) -> np.ndarray:
    """Where the ink is thin up and down and stronger than the paper's noise (uint8 0/1)."""
    # The ink less its opening by a short upright bar: a printed line is a pixel or three
    # thick; strokes, shadows and the paper's grain are not lines.
    thin = ink - cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((RULING_BAR, 1), np.uint8))
    histogram = _Histogram(thin)
    centre = histogram.quantile(0.5)
    level = max(centre + 6 * 1.4826 * histogram.spread(centre, below=histogram.top), 0.03)
    return (thin > level).astype(np.uint8)


def _band(rows: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The RULING_BAND rows around a line (its row in each column), for its anti-aliased edges."""
    height = shape[0]
    columns = np.arange(shape[1])
    band = np.zeros(shape, dtype=bool)
    for offset in range(-(RULING_BAND // 2), RULING_BAND // 2 + 1):
        shifted = rows + offset
        keep = (shifted >= 0) & (shifted < height)
        band[shifted[keep], columns[keep]] = True
    return band


def _ink_against(gray: np.ndarray, paper: np.ndarray) -> np.ndarray:
    """Ink as the darkness below the paper's level (both on the ink-dark side)."""
    return cv2.subtract(np.maximum(paper, gray), gray)


def _digit_mask(
    ink: np.ndarray, rank: int | None = None, sigma: float | None = None, keep_share: float | None = None
) -> np.ndarray:
    """The pixels that belong to the digit: thresholded ink without specks and texture
    (components with less than ``keep_share`` of the largest's ink)."""
    rank = _strength_rank(ink) if rank is None else rank
    contrast = _Histogram(ink).kth_largest(rank)
    if contrast < MIN_INK_CONTRAST:
        raise NothingToRead()
    small = max(ink.shape) < SMALL_IMAGE_SIDE
    # Blur away paper grain and JPEG noise, in proportion to the image: strokes are wider.
    sigma = max(ink.shape) / 300 if sigma is None else sigma
    smooth = cv2.GaussianBlur(ink, (0, 0), sigma, borderType=cv2.BORDER_REFLECT) if sigma >= 0.6 else ink
    # Otsu splits ink from paper. Two floors keep paper texture out: a multiple of the paper's
    # own noise, and a share of the ink. The noise is measured on the paper side of the split
    # (in a digit that fills its frame, ink is half the pixels) and its floor stays below half
    # the ink's strength, or the soft edges of a thick stroke would hide the stroke itself.
    histogram = _Histogram(smooth)
    split = histogram.otsu()
    median = histogram.quantile(0.5, below=split)
    noise = 1.4826 * histogram.spread(median, below=split)
    threshold = max(split, min(median + 5 * noise, 0.5 * contrast) if small else median + 5 * noise, 0.25 * contrast)
    mask = (smooth > threshold).astype(np.uint8)
    count, labels = cv2.connectedComponents(mask, connectivity=8)
    if count <= 1:
        raise NothingToRead()
    # Weigh components by their ink, not their area: texture blobs are wide but faint.
    inked = mask.astype(bool)
    mass = np.bincount(labels[inked], weights=smooth[inked], minlength=count)
    mass[0] = 0.0  # the background
    # Keep every part of a digit (the bar of a 5 may stand apart) but drop specks of noise;
    # in a tiny image a faint stroke may be cut into pieces, so keep smaller parts there.
    if keep_share is None:
        keep_share = 0.02 if small else 0.08
    keep = mass >= keep_share * mass.max()
    keep[0] = False
    kept = np.flatnonzero(keep)
    if len(kept) == count - 1:
        return inked  # every component: the mask itself
    if len(kept) == 1:
        return labels == kept[0]
    return np.take(keep, labels)


def stroke_cores(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The ink of the components ``mask`` holds plus one pixel around them (anti-aliased
    edges), with stroke cores at 1 whatever the ink's contrast (pencil, blue ballpoint, marker)."""
    core = _quantile(ink[mask], 0.75)
    near = cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))).astype(bool)
    return np.where(near, np.clip(ink * (1.0 / max(core, 1e-6)), 0.0, 1.0), 0.0).astype(np.float32)


def thickened(ink: np.ndarray, mask: np.ndarray, scale: float) -> np.ndarray:
    """``ink`` about to be shrunk by ``scale``, its strokes (those of ``mask``) thickened first
    where a fine pen line in a large photo would fade to nothing at the model's size."""
    stroke = _stroke_width(mask)
    if scale < 1 and stroke * scale < TARGET_STROKE_PX * 0.6:
        radius = round((TARGET_STROKE_PX / scale - stroke) / 2)
        if radius > 0:
            # A square dilation (max filter) is separable, so its cost grows little with the radius.
            return cv2.dilate(ink, np.ones((2 * radius + 1, 2 * radius + 1), np.uint8))
    return ink


def _stroke_width(mask: np.ndarray) -> float:
    """Average stroke width: area over half the boundary length of the mask."""
    pixels = mask.astype(np.uint8)
    # Outside the crop counts as background, so strokes at its edge have a boundary there too.
    interior = cv2.erode(pixels, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    boundary = max(int(np.count_nonzero(pixels)) - int(np.count_nonzero(interior)), 1)
    return float(2.0 * np.count_nonzero(pixels) / boundary)


def _centre_by_mass(field: np.ndarray) -> np.ndarray:
    """Translate by whole pixels (as MNIST did, which keeps strokes sharp) so that the centre
    of mass lands where MNIST's does: pixel (14, 14)."""
    moments = cv2.moments(field)
    cy, cx = moments["m01"] / moments["m00"], moments["m10"] / moments["m00"]
    shift = np.float32([[1, 0, round(MNIST_CENTRE - cx)], [0, 1, round(MNIST_CENTRE - cy)]])
    return cv2.warpAffine(field, shift, field.shape[::-1], flags=cv2.INTER_NEAREST, borderValue=0.0)


def _reduced(image: Image.Image, factor: int, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Float grey in [0, 1] of ``image`` (or its ``box``), each pixel the mean of a block of
    ``factor`` x ``factor``: Pillow's fastest shrinking, and the right one for finding ink."""
    pixels = np.asarray(image.reduce(factor, box=box) if factor > 1 else image.crop(box) if box else image)
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) * (1.0 / 255.0)
    return np.clip(pixels, 0.0, 1.0)


def _factor_to(size: tuple[int, int], side: int) -> int:
    """The smallest whole factor that shrinks ``size`` to at most ``side`` squared pixels: by
    area, not the longest side, so that a long strip keeps its digit's detail."""
    return max(1, int(np.ceil(np.sqrt(size[0] * size[1]) / side)))


def _ink_near_the_digit(image: Image.Image) -> tuple[np.ndarray, Placement]:
    """The ink map of the region around the digit, at a resolution just enough for 20 px,
    and where that region lies on the image.

    A copy of at most LOCATE_SIDE squared pixels says where the digit is, which way round the
    ink is and where the paper lies (judged on the whole page, whose border is paper); then
    only that region is cut from the decoded image, shrunk to at most DETAIL_SIDE squared
    pixels, and its ink measured against that paper: a small digit on a big page keeps its
    detail, and a big image costs a small one's pixel work.
    """
    image = _flattened(image)  # 8-bit grey, or float for deep images
    factor = _factor_to(image.size, LOCATE_SIDE)
    ink, inverted, paper = _ink_map(_reduced(image, factor))
    # Printed lines run across the page: the region's own map is cleaned of them only where
    # the whole page had some.
    overview, ink = ink, _without_rulings(ink)
    ruled = ink is not overview
    # Wherever there is ink at all: a few pixels suffice, since the overview may hold a small
    # digit in a few dozen; the region's own pixels then decide whether it is a digit.
    # A long strip's overview is wide but its digit no bigger: blur by its area, not its length.
    found = _digit_mask(ink, rank=LOCATE_RANK, sigma=np.sqrt(ink.size) / 300)
    rows, cols = np.flatnonzero(found.any(axis=1)), np.flatnonzero(found.any(axis=0))
    margin = max(LOCATE_MARGIN * max(rows[-1] - rows[0], cols[-1] - cols[0]), 2.0)
    top, left = max(0, int(rows[0] - margin)), max(0, int(cols[0] - margin))
    bottom, right = int(np.ceil(rows[-1] + 1 + margin)), int(np.ceil(cols[-1] + 1 + margin))
    paper = paper[top:bottom, left:right]
    width, height = image.size
    box = (left * factor, top * factor, min(width, right * factor), min(height, bottom * factor))
    detail = _factor_to((box[2] - box[0], box[3] - box[1]), DETAIL_SIDE)
    gray = _reduced(image, detail, box)
    if inverted:
        gray = 1.0 - gray
    paper = cv2.resize(paper, gray.shape[::-1], interpolation=cv2.INTER_LINEAR)
    ink = _ink_against(gray, paper)
    return (_without_rulings(ink) if ruled else ink), Placement(left=box[0], top=box[1], step=detail)


@dataclass(frozen=True)
class Placement:
    """Where an ink map lies on the image it came from: its pixel (x, y) covers the image's
    pixels from (left + x * step, top + y * step), ``step`` wide and tall."""

    left: int = 0
    top: int = 0
    step: int = 1


def ink_of(image: Image.Image) -> tuple[np.ndarray, Placement]:
    """The ink map of a decoded, upright image (``upright``): the whole image when small, the
    region around its ink when large (``_ink_near_the_digit``); with where that lies on it."""
    if max(image.size) <= LOCATE_SIDE:
        gray = _to_gray(image)
        if gray.size < 4:
            raise PreprocessingError("No digit found: the image is too small to hold one.")
        ink, _, _ = _ink_map(gray)
        return _without_rulings(ink), Placement()
    return _ink_near_the_digit(image)


@dataclass(frozen=True)
class InkMap:
    """An image's ink, found once (``of``): the ink map (0 = paper), the digit's mask on it,
    where the map lies on the image (``placement``) and how many full-size pixels each decoded
    pixel is (``scale``: a JPEG may be decoded smaller). Segmentation works on a page through
    these methods alone: its crops, its turns, its masks, and its pieces' model inputs, all
    made here, so that an upload's reading goes one way."""

    ink: np.ndarray
    mask: np.ndarray
    placement: Placement
    scale: float

    @classmethod
    def of(cls, image: Image.Image, scale: float) -> InkMap:
        """The ink map of a decoded image (``ink_of``) and the digit's mask on it."""
        ink, placement = ink_of(upright(image))
        return cls(ink, digit_mask(ink), placement, scale)

    def strokes(self, keep_share: float) -> np.ndarray:
        """The digit's mask, keeping components with ``keep_share`` of the largest's ink."""
        return digit_mask(self.ink, keep_share=keep_share)

    def window(self, present: np.ndarray, margin: int = 0) -> tuple[slice, slice]:
        """The box of what ``present`` (a mask on this map) holds: ``ink_window``."""
        return ink_window(present, margin=margin)

    def cropped(self, window: tuple[slice, slice], *, moved: bool = True) -> InkMap:
        """The map cut to ``window``; its placement moved to the window's corner unless told
        not to (a turned map's pixels are placed by their turn)."""
        rows, cols = window
        placement = self.placement
        if moved:
            step = placement.step
            placement = Placement(placement.left + cols.start * step, placement.top + rows.start * step, step)
        return InkMap(self.ink[window], self.mask[window], placement, self.scale)

    def turned(self, angle: float) -> tuple[InkMap, np.ndarray]:
        """The map turned by ``angle`` degrees (the whole of it kept), its own mask found
        again, and the 2x3 affine that maps the turned map's pixels back onto this one."""
        height, width = self.ink.shape
        turn = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
        cos, sin = abs(turn[0, 0]), abs(turn[0, 1])
        new_w, new_h = int(np.ceil(width * cos + height * sin)), int(np.ceil(width * sin + height * cos))
        turn[0, 2] += new_w / 2 - width / 2
        turn[1, 2] += new_h / 2 - height / 2
        level = cv2.warpAffine(self.ink, turn, (new_w, new_h), flags=cv2.INTER_LINEAR, borderValue=0.0)
        return InkMap(level, digit_mask(level), self.placement, self.scale), cv2.invertAffineTransform(turn)

    def inputs(self, masks: list[np.ndarray]) -> list[ModelInput]:
        """Each piece's model input (``digit_input``), each piece a mask on this map."""
        return [digit_input(self.ink, mask) for mask in masks]


def upright(image: Image.Image) -> Image.Image:
    """A decoded image in a mode we work in, turned the way its EXIF orientation says."""
    return _upright(_normalised(image))


def to_model_input(data: bytes) -> ModelInput:
    """Turn uploaded image bytes into the model's 28x28 input and a picture of it."""
    ink, _ = ink_of(upright(open_image(data)))
    return digit_input(ink, digit_mask(ink))


def digit_mask(ink: np.ndarray, keep_share: float | None = None) -> np.ndarray:
    """The pixels of the digit (or digits) on an ink map: ``_digit_mask``, at its defaults
    unless told what share of the largest component's ink a component needs to be kept."""
    return _digit_mask(ink, keep_share=keep_share)


def digit_input(ink: np.ndarray, mask: np.ndarray) -> ModelInput:
    """The model's input for the digit whose pixels ``mask`` holds on the ``ink`` map: MNIST's
    normalisation (box, stroke width, 20 px, centre of mass). Every digit goes through here,
    alone in its image or one of a number's."""
    # Only the digit's box and a pixel around it matter: a number's digit is a small part of
    # its page.
    window = ink_window(mask, margin=1)
    ink, mask = ink[window], mask[window]
    soft = stroke_cores(ink, mask)
    # The box is the extent of all visible ink, as MNIST's 20 px box is of the whole digit.
    visible = soft > 0.05
    if not visible.any():
        # A piece of nothing (a cut along a stroke's edge): no digit, not a crash.
        raise NothingToRead()
    rows, cols = np.flatnonzero(visible.any(axis=1)), np.flatnonzero(visible.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    digit = soft[top:bottom, left:right]
    mask = mask[top:bottom, left:right]

    height, width = digit.shape
    scale = DIGIT_BOX / max(height, width)
    digit = thickened(digit, mask, scale)

    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if new_size == (width, height):
        small = digit
    else:
        # Area averaging when shrinking keeps thin strokes as grey, as MNIST's anti-aliasing did.
        small = cv2.resize(digit, new_size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)

    field = np.zeros((INPUT_SIDE, INPUT_SIDE), dtype=np.float32)
    y0, x0 = (INPUT_SIDE - small.shape[0]) // 2, (INPUT_SIDE - small.shape[1]) // 2
    field[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    field = np.clip(_centre_by_mass(field), 0.0, None)
    peak = float(field.max())
    if peak <= 0:
        raise NothingToRead()
    array = (field / peak).astype(np.float32)
    return ModelInput(array=array, display=np.round(array * 255).astype(np.uint8))
