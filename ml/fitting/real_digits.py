"""The folders of real digits beside the checkout (``REAL_FOLDERS`` under ``REAL_DIGITS_DIR``,
each with ``labels.csv``: ``file,label``, dark ink on white): read as uploads, as a box-filling
form scanner stores them (``box_scanned``), and written into whole numbers to judge reading
numbers on real hands (``real_digit_number_set``). For choosing, never for training.
"""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from ml.fitting.synth import NumberUpload, Upload, number_set
from ml.serving.preprocessing import ink_window

REAL_FOLDERS = ("optdigits-30", "hwd-1000")
BOX_SIDE = 16
# Real digits written into numbers (``real_digit_number_set``): the held-out numbers are 2 to 6
# scanned digits; half the pages with a scanner's specks and broken strokes, few digits touching
# (these writers wrote each digit alone).
REAL_NUMBER_LENGTHS = (2, 6)
REAL_NUMBER_SCENARIOS = ("scan", "photo")
REAL_NUMBER_FLAWS = 0.5
REAL_NUMBER_TOUCH = 0.05
# A digit's ink fitted into MNIST's 20 px box, centred in its 28 px field.
_DIGIT_BOX, _FIELD = 20, 28


def folder_uploads(folder: Path) -> list[Upload]:
    """A folder of real digits as uploads, in the order its ``labels.csv`` lists them."""
    with open(folder / "labels.csv", newline="") as labels:
        rows = list(csv.DictReader(labels))
    return [
        Upload(data=(folder / row["file"]).read_bytes(), scenario=folder.name, label=int(row["label"]), description="")
        for row in rows
    ]


def box_scanned(upload: Upload, *, side: int = BOX_SIDE) -> Upload:
    """A real digit (dark ink on light) as a box-filling scanner stores it: cropped to its ink,
    stretched both ways to fill a ``side`` square, each cell ink or paper at half."""
    ink = 1 - np.asarray(Image.open(io.BytesIO(upload.data)).convert("L"), dtype=np.float32) / 255
    ink = ink[ink_window(ink > 0.3)]
    cells = Image.fromarray(np.uint8(ink * 255)).resize((side, side), Image.Resampling.BOX)
    scanned = np.where(np.asarray(cells) > 127, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(scanned).save(out, format="PNG")
    return replace(upload, data=out.getvalue(), scenario=f"{upload.scenario} box {side}x{side}")


def as_mnist_digit(upload: Upload) -> np.ndarray:
    """A digit (dark ink on light) drawn as MNIST draws digits: white on black, its ink fitted
    into a 20 px box centred in 28x28 (uint8), its darkest ink full white."""
    ink = 255 - np.asarray(Image.open(io.BytesIO(upload.data)).convert("L"))
    ink = np.uint8(ink * (255.0 / max(int(ink.max()), 1)))
    ink = ink[ink_window(ink > 76)]
    scale = _DIGIT_BOX / max(ink.shape)
    size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    fitted = np.asarray(Image.fromarray(ink).resize(size, Image.Resampling.LANCZOS))
    field = np.zeros((_FIELD, _FIELD), dtype=np.uint8)
    top, left = (_FIELD - size[1]) // 2, (_FIELD - size[0]) // 2
    field[top : top + size[1], left : left + size[0]] = fitted
    return field


def real_digit_number_set(
    real_dir: Path, *, count: int, seed: int = 0, box_side: int | None = None
) -> list[NumberUpload]:
    """``count`` numbers of 2 to 6 digits written by the real folders' writers (each digit
    box-scanned first where ``box_side`` is given), scanned or photographed, half of them with
    a scanner's specks and broken strokes: numbers of real hands no generator drew. Empty where
    no real folder is found."""
    uploads = [
        upload
        for name in REAL_FOLDERS
        if (Path(real_dir) / name / "labels.csv").is_file()
        for upload in folder_uploads(Path(real_dir) / name)
    ]
    if not uploads:
        return []
    if box_side:
        uploads = [box_scanned(upload, side=box_side) for upload in uploads]
    images = np.stack([as_mnist_digit(upload) for upload in uploads])
    labels = np.array([upload.label for upload in uploads], dtype=np.uint8)
    return number_set(
        images,
        labels,
        count=count,
        seed=seed,
        scenarios=REAL_NUMBER_SCENARIOS,
        lengths=REAL_NUMBER_LENGTHS,
        touch_rate=REAL_NUMBER_TOUCH,
        flaw_rate=REAL_NUMBER_FLAWS,
    )
