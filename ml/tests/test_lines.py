"""The line reader's input and the decoding of its answer (``ml.serving.lines``), and its fitting on a
few lines (``ml.fitting.line_training``)."""

import numpy as np
import pytest

from ml.fitting.line_training import Lines, build_line_reader, ctc_loss, render_lines, train_line_reader
from ml.serving.lines import BLANK, COLUMNS_PER_STEP, INK_HEIGHT, LINE_SHAPE, MARGIN, NUM_CLASSES, decode, line_input
from ml.serving.preprocessing import PreprocessingError


def _line(widths: list[int], height: int = 60, gap: int = 20) -> tuple[np.ndarray, np.ndarray]:
    ink = np.zeros((height + 20, sum(widths) + gap * len(widths) + 20), np.float32)
    x = 10
    for width in widths:
        ink[10 : 10 + height, x : x + width] = 0.6
        x += width + gap
    return ink, ink > 0


def test_a_line_is_drawn_ink_height_tall_from_the_left_margin_with_its_cores_at_one():
    ink, mask = _line([20, 30, 20])
    line = line_input(ink, mask)
    assert line.array.shape == LINE_SHAPE and line.array.dtype == np.float32
    rows = np.flatnonzero(line.array.max(axis=1) > 0.5)
    cols = np.flatnonzero(line.array.max(axis=0) > 0.5)
    assert rows[-1] - rows[0] + 1 == INK_HEIGHT
    assert cols[0] == MARGIN
    assert line.array.max() == pytest.approx(1.0)
    # Strip columns map back onto the ink map: the first stroke starts at column 10.
    assert line.left + (cols[0] - MARGIN) / line.scale == pytest.approx(10, abs=1)


def test_a_line_too_long_for_the_strip_is_shrunk_whole_not_cut():
    ink, mask = _line([20] * 20, height=30, gap=15)
    line = line_input(ink, mask)
    cols = np.flatnonzero(line.array.max(axis=0) > 0.2)
    assert cols[-1] < LINE_SHAPE[1] - MARGIN + 1
    assert line.scale < INK_HEIGHT / 30


def test_nothing_on_the_line_is_a_clear_error():
    with pytest.raises(PreprocessingError, match="blank"):
        line_input(np.zeros((40, 40), np.float32), np.zeros((40, 40), bool))


def test_best_path_decoding_merges_repeats_and_drops_blanks():
    steps = [BLANK, 7, 7, BLANK, 7, BLANK, BLANK, 2, 2, 2, BLANK]
    probabilities = np.full((len(steps), NUM_CLASSES + 1), 0.01, np.float32)
    for step, label in enumerate(steps):
        probabilities[step, label] = 0.9
    probabilities[2, 7] = 0.95
    reading = decode(probabilities)
    assert reading.digits == (7, 7, 2) and reading.text == "772"
    assert reading.confidences == pytest.approx((0.95, 0.9, 0.9))
    assert reading.spans == ((1 * COLUMNS_PER_STEP, 3 * COLUMNS_PER_STEP), (4 * 4, 5 * 4), (7 * 4, 10 * 4))
    assert decode(np.eye(NUM_CLASSES + 1, dtype=np.float32)[[BLANK] * 5]).digits == ()


@pytest.mark.slow  # trains: `make test-fast` leaves it out
def test_the_reader_learns_a_few_rendered_lines(mnist, tmp_path):
    # Rendered through the serving path: every strip is a line the worker would read.
    lines = render_lines(mnist.train.images[:500], mnist.train.labels[:500], count=24, seed=1)
    assert lines.strips.shape == (24, *LINE_SHAPE) and lines.strips.max() == 255
    lengths = (lines.labels >= 0).sum(axis=1)
    assert lengths.min() >= 1 and lengths.max() <= 12
    model = build_line_reader()
    before = float(np.mean(ctc_loss(lines.labels.astype(np.int32), model(lines.strips[..., None] / 255.0))))
    metadata = train_line_reader(lines, Lines(lines.strips[:8], lines.labels[:8]), tmp_path, epochs=3, seed=0, batch=8)
    assert (tmp_path / "line_reader.keras").is_file()
    assert (tmp_path / "line_reader_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert metadata["history"][-1]["loss"] < before
    assert {"architecture", "epochs", "seed", "data_sha256", "training_seconds", "validation_exact"} <= set(metadata)
