"""Choosing between models on real data (ml.fitting.choosing): the paired comparison and its gate."""

import io

import numpy as np
import pytest
from PIL import Image

from ml.fitting.choosing import BOX_SIDE, NOISE, Reading, box_scanned, compare, real_sets, summary
from ml.fitting.synth import Upload


def _reading(correct, verdicts=None):
    correct = np.array(correct, dtype=bool)
    return Reading(correct, tuple(verdicts or ["digit"] * len(correct)))


def test_a_drop_beyond_the_noise_is_worse_and_the_paired_test_sees_it():
    baseline = _reading([True] * 1000)
    candidate = _reading([True] * 990 + [False] * 10)  # one point lower
    result = compare(candidate, baseline)
    assert result["difference"] == pytest.approx(-0.01) and result["worse"]
    assert result["only_baseline"] == 10 and result["only_candidate"] == 0
    assert result["p_value"] < 0.01


def test_a_drop_within_the_noise_or_a_gain_is_not_worse():
    baseline = _reading([True] * 999 + [False])
    within = _reading([True] * 998 + [False] * 2)  # 0.1 point lower
    assert compare(within, baseline)["difference"] > -NOISE and not compare(within, baseline)["worse"]
    gain = _reading([True] * 1000)
    assert not compare(gain, baseline)["worse"] and compare(gain, baseline)["only_candidate"] == 1
    # As many swapped each way: no difference, and the test finds nothing.
    swapped = compare(_reading([True, False] * 50), _reading([False, True] * 50))
    assert swapped["difference"] == 0 and swapped["p_value"] == 1.0


def test_the_honesty_figures_count_verdicts_and_the_right_answers_among_digits():
    reading = _reading([True, True, False, False, False], ["digit", "digit", "digit", "unsure", "refused"])
    row = summary(reading)
    assert row["samples"] == 5 and row["accuracy"] == pytest.approx(0.4)
    assert row["digit"] == 0.6 and abs(row["digit_accuracy"] - 2 / 3) < 1e-9
    assert row["unsure"] == pytest.approx(0.2) and row["not_a_digit"] == 0 and row["refused"] == 1


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def test_a_box_scan_stretches_the_ink_both_ways_to_fill_sixteen_cells_of_ink_or_paper():
    page = np.full((40, 40), 255, np.uint8)
    page[5:35, 18:22] = 0  # a 1: thirty tall, four wide
    page[5:9, 12:18] = 0  # with a flag to its left
    scanned = box_scanned(Upload(data=_png(page), scenario="optdigits-30", label=1, description=""))
    pixels = np.asarray(Image.open(io.BytesIO(scanned.data)))
    assert pixels.shape == (BOX_SIDE, BOX_SIDE) and set(np.unique(pixels)) == {0, 255}
    ink = pixels == 0
    # The stem fills the right two fifths of every row; the flag reaches the left edge at the top.
    assert ink[:, -1].all() and ink[0, 0] and not ink[-1, 0]
    assert scanned.label == 1 and scanned.scenario == "optdigits-30 box 16x16"


def test_each_real_folder_is_read_as_drawn_and_box_scanned(tmp_path, mnist):
    folder = tmp_path / "optdigits-30"
    folder.mkdir()
    page = np.full((32, 32), 255, np.uint8)
    page[4:28, 14:18] = 0
    (folder / "a.png").write_bytes(_png(page))
    (folder / "labels.csv").write_text("file,label\na.png,1\n")
    sets = real_sets(mnist.test, real_dir=tmp_path, realistic=0, seed=0)
    assert list(sets) == ["scikit-learn 43 writers", "optdigits-30", "optdigits-30 box 16x16"]
    assert [u.label for u in sets["optdigits-30 box 16x16"]] == [1]
    assert Image.open(io.BytesIO(sets["optdigits-30 box 16x16"][0].data)).size == (16, 16)
