"""The reject option: non-digits generated in several families, the verdict rule, the
thresholds chosen on held-out digits, and a whole fit served by the Predictor."""

import json

import numpy as np
import pytest

from ml.fitting.negatives import FAMILIES, LETTERS, SYMBOLS, negative_set
from ml.fitting.reject import choose_thresholds
from ml.serving.artifacts import METADATA_FILE, to_model_array
from ml.serving.preprocessing import PreprocessingError, to_model_input
from ml.serving.verdicts import KINDS, REASONS, verdicts


def test_no_family_of_non_digits_holds_what_many_hands_write_as_a_digit():
    assert not set(LETTERS + SYMBOLS) & set("OoIlZzSsBbGgq|")


@pytest.mark.slow  # renders and reads a hundred uploads: `make test-fast` leaves it out
def test_every_family_renders_uploads_the_preprocessing_mostly_reads(mnist):
    uploads = negative_set(mnist.test.images, count=12 * len(FAMILIES), seed=5)
    assert [upload.scenario for upload in uploads[: len(FAMILIES)]] == list(FAMILIES)
    assert all(upload.label is None and upload.data for upload in uploads)
    read = {family: 0 for family in FAMILIES}
    shapes = {family: [] for family in FAMILIES}
    for upload in uploads:
        try:
            array = to_model_input(upload.data).array
        except PreprocessingError:
            continue
        read[upload.scenario] += 1
        rows, cols = np.flatnonzero(array.max(axis=1) > 0.2), np.flatnonzero(array.max(axis=0) > 0.2)
        shapes[upload.scenario].append((cols[-1] - cols[0] + 1) / (rows[-1] - rows[0] + 1))
    # Drawn ink is read (it is ink on paper); a photo of a thing may be refused as blank, also fine.
    assert all(read[family] >= 10 for family in FAMILIES if family != "photo"), read
    # A number of several digits is wider than tall, as no single digit is.
    assert np.median(shapes["number"]) > 1.5
    again = negative_set(mnist.test.images, count=len(FAMILIES), seed=5)
    assert [u.data for u in again] == [u.data for u in uploads[: len(FAMILIES)]]


def test_a_crossed_out_digit_keeps_the_digit_and_reaches_past_it(mnist):
    from ml.fitting.negatives import ink_of

    rng = np.random.default_rng(1)
    digits = mnist.test.images[:1]
    for _ in range(12):
        crossed, what = ink_of("crossed", rng, digits)
        assert what == "a digit crossed out" and crossed.shape[0] == 28
        # More ink than the digit alone at the same scale: the crossing adds strokes.
        assert (crossed > 127).sum() > 1.2 * (digits[0] > 127).sum() * crossed.shape[1] / 28


def test_written_text_differs_from_the_printed_text_it_starts_from(mnist):
    """The same word twice in a hand is never the same picture: each character has its own
    size, tilt and baseline, and the line wobbles."""
    from ml.fitting.negatives import _written

    first, second = _written("date", np.random.default_rng(1)), _written("date", np.random.default_rng(2))
    assert first.shape[0] == second.shape[0] == 28 and first.shape[1] > 40  # a word: wider than tall
    assert first.shape != second.shape or not np.array_equal(first, second)


@pytest.mark.slow  # renders hundreds of the detector's images: `make test-fast` leaves it out
def test_the_detector_learns_form_scanned_digits_as_digits(mnist):
    """Besides the three held-out kinds, half as many digits again as a box-filling form
    scanner stores them: wide blocks a real bold 1 resembles, learned as digits."""
    from ml.fitting.reject import detector_data

    x, y = detector_data((mnist.train.images[:200], mnist.train.labels[:200]), count=40, seed=0, log=lambda _: None)
    digits = x[y == 0]
    # 40 clean, up to 40 realistic and 40 styled (what the preprocessing reads), 20 scanned.
    assert 40 + 20 < len(digits) <= 3 * 40 + 20 and (y > 0).sum() >= 100
    scanned = digits[-20:]
    width = lambda images: (images.max(axis=1) > 0.5).sum(axis=(1, 2))  # noqa: E731
    assert np.median(width(scanned)) >= 16 > np.median(width(digits[:40]))


THRESHOLDS = {"reject_below": 0.5, "unsure_below": 0.9}


def test_each_verdict_is_reached_and_a_rejection_says_what_it_looks_like():
    kinds = np.zeros((4, len(KINDS)))
    kinds[0, 0] = kinds[1, 0] = 0.95  # a digit, sure or not
    kinds[2, KINDS.index("text")] = 0.8  # letters
    kinds[3, KINDS.index("number")] = 0.7  # several digits
    kinds[:, 0] = [0.95, 0.95, 0.2, 0.3]
    judged = verdicts(kinds[:, 0], kinds, np.array([0.99, 0.6, 0.99, 0.99]), THRESHOLDS)
    assert [v.verdict for v in judged] == ["digit", "unsure", "not_a_digit", "not_a_digit"]
    assert judged[2].reason == REASONS["text"] and judged[3].reason == REASONS["number"]
    assert judged[0].reason == judged[1].reason == ""


def test_thresholds_keep_99_percent_of_digits_and_make_the_confident_ones_right():
    rng = np.random.default_rng(0)
    n = 20_000
    digit_share = rng.random(n) ** 0.3  # a tenth of the digits below one half
    confidence = rng.uniform(0.3, 1.0, n)
    # Right with the probability the confidence says: a calibrated model.
    correct = rng.random(n) < confidence
    chosen = choose_thresholds(digit_share, confidence, correct)
    kept = digit_share >= chosen["reject_below"]
    assert kept.mean() == pytest.approx(0.99, abs=0.002) and chosen["reject_below"] < 0.5
    # A detector that tells digits apart well rejects only what it finds likelier not a digit.
    assert choose_thresholds(np.full(n, 0.999), confidence, correct)["reject_below"] == 0.5
    answered = kept & (confidence >= chosen["unsure_below"])
    assert correct[answered].mean() >= 0.998
    # The lowest such threshold: a little lower and the answers are no longer right enough.
    looser = kept & (confidence >= chosen["unsure_below"] - 0.01)
    assert correct[looser].mean() < 0.998 or chosen["unsure_below"] < 0.31


@pytest.mark.slow
def test_a_model_trained_with_a_holdout_serves_verdicts(tiny_rejecting_model_dir, mnist):
    """A small model and a detector trained for seconds (``tiny_rejecting_model_dir``: 300
    digits held out, a detector on 150): the thresholds are chosen on held-out digits,
    recorded, and every prediction carries a verdict from them."""
    from ml.serving.inference import Predictor
    from ml.tests.conftest import TRAINING_LOG

    bundle = tiny_rejecting_model_dir
    lines = (bundle / TRAINING_LOG).read_text().splitlines()
    metadata = json.loads((bundle / METADATA_FILE).read_text())
    verdict = metadata["verdict"]
    assert 0 < verdict["reject_below"] < 1 and 0 < verdict["unsure_below"] <= 1
    assert set(verdict["held_out"]) == {"clean", "realistic", "styles", "non_digits"}
    # The reject threshold keeps 99% of the held-out digits it was chosen on.
    assert verdict["held_out"]["clean"]["not_a_digit"] < 0.05
    assert set(verdict["held_out"]["non_digits"]) == set(FAMILIES)
    assert (bundle / "reject.keras").is_file()
    assert any(line.startswith("reject below") for line in lines)

    predictor = Predictor(bundle)
    assert predictor.detector is not None and predictor.thresholds["reject_below"] == verdict["reject_below"]
    predictions = predictor.predict_arrays(to_model_array(mnist.test.images[:200]))
    assert {p.verdict for p in predictions} <= {"digit", "unsure", "not_a_digit"}
    # A model trained for seconds is rarely sure, but what it calls a digit is right more often.
    right = np.array([p.digit for p in predictions]) == mnist.test.labels[:200]
    answered = np.array([p.verdict == "digit" for p in predictions])
    assert answered.any() and right[answered].mean() >= right.mean()
    assert all(p.reason for p in predictions if p.verdict == "not_a_digit")
    words = [u.data for u in negative_set(mnist.test.images, count=60, seed=9, families=("printed", "drawn"))]
    caught = [r.prediction.verdict != "digit" for r in predictor.predict_images(words) if r.prediction]
    assert np.mean(caught) > 0.5
