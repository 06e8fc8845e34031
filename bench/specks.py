"""What a page of specks costs the reading (issue 42): CPU seconds to group the strokes of dot
grids (one black pixel every 2 px) of more and more specks, the cap aside, with the ratio to
the grid a quarter its size; and the issue's 440-byte grid read through ``read_page`` as the
worker reads it (refused at ``MAX_MARKS``).

Run: ``.venv/bin/python bench/specks.py``.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ml.serving import segment  # noqa: E402
from ml.serving.preprocessing import PreprocessingError  # noqa: E402

ROUNDS = 5


def dot_grid(side: int, margin: int) -> np.ndarray:
    page = np.full((side, side), 255, dtype=np.uint8)
    page[margin : side - margin : 2, margin : side - margin : 2] = 0
    return page


def encode(page: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(page).save(buffer, "PNG")
    return buffer.getvalue()


def grouping_seconds(side: int) -> float:
    mask = dot_grid(side, 0) == 0
    started = time.process_time()
    for _ in range(ROUNDS):
        segment._grouped(mask)
    return (time.process_time() - started) / ROUNDS


def main() -> None:
    cap, segment.MAX_MARKS = segment.MAX_MARKS, 10**9
    print(f"{'specks':>8} {'CPU s':>9} {'x prev':>7}")
    previous = None
    for side in (28, 56, 112, 224, 448):
        seconds = grouping_seconds(side)
        ratio = f"{seconds / previous:7.1f}" if previous else " " * 7
        print(f"{(side // 2) ** 2:8,} {seconds:9.4f} {ratio}")
        previous = seconds
    segment.MAX_MARKS = cap
    for name, data in (("issue 42's grid", encode(dot_grid(256, 4))), ("1,296 specks", encode(dot_grid(76, 2)))):
        started = time.process_time()
        try:
            segment.read_page(data)
            outcome = "read"
        except PreprocessingError as exc:
            outcome = str(exc)
        print(f"read_page({name}, {len(data)} bytes): {time.process_time() - started:.4f} CPU s: {outcome}")


if __name__ == "__main__":
    main()
