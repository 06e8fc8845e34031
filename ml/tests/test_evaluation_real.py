"""Choosing between models on real data (ml.choosing): the paired comparison and its gate."""

import numpy as np
import pytest

from ml.choosing import NOISE, Reading, compare, summary


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
