"""The retraining gate, the correction split, and a whole run writing its own bundle."""

import shutil

import numpy as np
import pytest

from ml.fitting.calibration import model_inputs
from ml.fitting.gate import Scores, gate_caveat, judge, split_corrections
from ml.fitting.line_training import build_line_reader
from ml.fitting.negatives import negative_set
from ml.fitting.reject import TEACH_EPOCHS, build_detector, teach_detector
from ml.fitting.retrain import CALIBRATING, FINE_TUNING, JUDGING, replay_sample
from ml.serving.artifacts import METADATA_FILE, ModelBundle
from ml.tests.retrains import retrain_for_test

PARENT = Scores(mnist_accuracy=0.990, mnist_loss=0.03, corrections_accuracy=0.50)


def test_a_candidate_better_on_the_corrections_and_as_good_on_mnist_is_promoted():
    candidate = Scores(mnist_accuracy=0.989, mnist_loss=0.03, corrections_accuracy=0.75)
    decision = judge(parent=PARENT, candidate=candidate, max_mnist_drop=0.002)
    assert decision.promoted
    assert decision.reason == "better on the corrections, within the MNIST tolerance and as honest about its confidence"
    assert (decision.parent, decision.candidate) == (PARENT, candidate)


def test_a_candidate_that_loses_more_mnist_accuracy_than_allowed_is_refused():
    candidate = Scores(mnist_accuracy=0.987, mnist_loss=0.04, corrections_accuracy=1.0)
    decision = judge(parent=PARENT, candidate=candidate, max_mnist_drop=0.002)
    assert not decision.promoted
    assert "98.70% is below the active model's 99.00% minus the 0.20-point tolerance" in decision.reason


@pytest.mark.parametrize("corrections", [0.50, 0.25])
def test_a_candidate_not_better_on_the_corrections_is_refused(corrections):
    candidate = Scores(mnist_accuracy=0.995, mnist_loss=0.02, corrections_accuracy=corrections)
    decision = judge(parent=PARENT, candidate=candidate, max_mnist_drop=0.002)
    assert not decision.promoted
    assert decision.reason == f"not better on the corrections ({corrections:.2%} vs 50.00%)"


def test_a_forced_candidate_is_promoted_and_the_reason_says_what_it_failed():
    candidate = Scores(mnist_accuracy=0.95, mnist_loss=0.2, corrections_accuracy=0.5)
    decision = judge(parent=PARENT, candidate=candidate, max_mnist_drop=0.002, force=True)
    assert decision.promoted
    assert decision.reason.startswith("forced, although its MNIST test accuracy 95.00%")


def test_a_candidate_whose_calibration_error_grows_by_more_than_half_a_point_is_refused():
    parent = Scores(mnist_accuracy=0.99, mnist_loss=0.03, corrections_accuracy=0.5, mnist_ece=0.004)
    slightly = Scores(mnist_accuracy=0.99, mnist_loss=0.03, corrections_accuracy=0.75, mnist_ece=0.0089)
    assert judge(parent=parent, candidate=slightly, max_mnist_drop=0.002).promoted
    worse = Scores(mnist_accuracy=0.995, mnist_loss=0.03, corrections_accuracy=1.0, mnist_ece=0.0091)
    decision = judge(parent=parent, candidate=worse, max_mnist_drop=0.002)
    assert not decision.promoted
    assert decision.reason == (
        "its calibration error on MNIST test 0.91% is more than 0.5 points above the active model's 0.40%"
    )


def test_without_corrections_only_mnist_decides():
    parent = Scores(mnist_accuracy=0.99, mnist_loss=0.03, corrections_accuracy=None)
    same = Scores(mnist_accuracy=0.99, mnist_loss=0.03, corrections_accuracy=None)
    assert judge(parent=parent, candidate=same, max_mnist_drop=0.0).promoted


def test_images_staff_said_are_not_digits_count_in_the_gate_beside_the_corrections():
    perfect = Scores(mnist_accuracy=0.99, mnist_loss=0.03, corrections_accuracy=1.0, rejects_caught=0.0)
    # Every digit correction was already right: learning to refuse the non-digits is the gain.
    learnt = Scores(mnist_accuracy=0.99, mnist_loss=0.03, corrections_accuracy=1.0, rejects_caught=1.0)
    assert judge(parent=perfect, candidate=learnt, max_mnist_drop=0.0).promoted
    # Refusing more non-digits never buys a loss on the digits.
    traded = Scores(mnist_accuracy=0.99, mnist_loss=0.03, corrections_accuracy=0.5, rejects_caught=1.0)
    decision = judge(parent=perfect, candidate=traded, max_mnist_drop=0.0)
    assert not decision.promoted
    assert decision.reason == (
        "not better on the corrections (50.00% vs 100.00%) nor on the images staff said are not digits "
        "(100.00% vs 0.00%)"
    )
    same = Scores(mnist_accuracy=0.99, mnist_loss=0.03, corrections_accuracy=1.0, rejects_caught=0.0)
    assert not judge(parent=perfect, candidate=same, max_mnist_drop=0.0).promoted
    # Only non-digits to judge on (staff flagged nothing else): those decide, with MNIST.
    only = Scores(mnist_accuracy=0.99, mnist_loss=0.03, corrections_accuracy=None, rejects_caught=0.5)
    better = Scores(mnist_accuracy=0.99, mnist_loss=0.03, corrections_accuracy=None, rejects_caught=1.0)
    assert judge(parent=only, candidate=better, max_mnist_drop=0.0).promoted
    assert not judge(parent=only, candidate=only, max_mnist_drop=0.0).promoted


def test_with_few_corrections_the_gate_says_what_its_comparison_can_and_cannot_show():
    few = split_corrections(2, seed=42, min_for_holdout=10)
    parent = Scores(mnist_accuracy=0.99, mnist_loss=0.03, corrections_accuracy=1.0)
    decision = judge(parent=parent, candidate=parent, max_mnist_drop=0.002)
    assert decision.reason == "not better on the corrections (100.00% vs 100.00%)"
    caveat = gate_caveat(decision, few, min_for_holdout=10, parent="v1")
    assert caveat.startswith("With 2 digit corrections, fewer than the 10 it takes to hold a fifth out, the candidate")
    assert "that shows it learnt them, not that it reads new images better" in caveat
    assert "v1 already read every one of them right, so no candidate could be better there." in caveat
    assert "stored, never promoted on its own: with 8 more, a fifth is held out" in caveat and "--" not in caveat
    # Forced on few: the caveat still says what the comparison showed, without the advice.
    better = Scores(mnist_accuracy=0.99, mnist_loss=0.03, corrections_accuracy=0.5)
    promoted = judge(parent=better, candidate=parent, max_mnist_drop=0.002, unseen=False, force=True)
    assert promoted.promoted and "more, a fifth" not in gate_caveat(promoted, few, min_for_holdout=10, parent="v1")
    # Enough to hold a fifth out: nothing to explain.
    held = split_corrections(10, seed=42, min_for_holdout=10)
    assert gate_caveat(decision, held, min_for_holdout=10, parent="v1") == ""
    # No digit corrections at all: MNIST (and the non-digits) decided.
    none = split_corrections(0, seed=42, min_for_holdout=10)
    assert gate_caveat(decision, none, min_for_holdout=10, parent="v1").startswith(
        "There were no digit corrections to judge on"
    )


def test_a_fifth_of_the_corrections_is_held_out_once_there_are_enough():
    split = split_corrections(10, seed=42, min_for_holdout=10)
    assert split.kind == "held-out" and len(split.judged) == 2 and len(split.train) == 8
    assert sorted([*split.train, *split.judged]) == list(range(10))
    few = split_corrections(9, seed=42, min_for_holdout=10)
    assert few.kind == "all (too few to hold out)"
    assert sorted(few.train) == sorted(few.judged) == list(range(9))
    assert list(split.trained) == list(split.train) and list(few.trained) == list(few.train)


def test_a_number_goes_whole_to_training_or_to_judging():
    sizes = [1, 4, 1, 1, 3, 1, 1, 1, 2, 1]  # rows 0, 1-4, 5, 6, 7-9, 10, 11, 12, 13-14, 15
    starts = np.cumsum(sizes) - sizes
    split = split_corrections(10, seed=42, min_for_holdout=10, sizes=sizes)
    plain = split_corrections(10, seed=42, min_for_holdout=10)
    assert list(split.trained) == list(plain.train)  # the same corrections as one example each
    assert sorted([*split.train, *split.judged]) == list(range(sum(sizes)))
    for corrections, rows in ((split.trained, split.train), (plain.judged, split.judged)):
        expected = [row for c in corrections for row in range(starts[c], starts[c] + sizes[c])]
        assert list(rows) == expected


@pytest.mark.slow
def test_a_retrain_writes_its_own_bundle_and_judges_it(tiny_model_dir, mnist, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((10, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 10).astype("int32")
    out = ModelBundle(tmp_path / "v2")
    # The parent reads whole numbers with a line reader: the candidate keeps it as it is.
    parent = ModelBundle(tmp_path / "v1")
    shutil.copytree(tiny_model_dir, parent.directory)
    build_line_reader().save(parent.line_reader_path)
    parent.line_reader_metadata_path.write_text('{"epochs": 1}')
    result = retrain_for_test(parent=parent, out=out, mnist=mnist, x=x, y=y, test_limit=200)
    assert [path.name for path in out.files()] == [
        "model.keras",
        "metadata.json",
        "training_curves.png",
        "confusion_matrix.png",
        "lines.keras",
        "lines.json",
    ]
    assert out.line_reader_path.read_bytes() == parent.line_reader_path.read_bytes()
    metadata = out.metadata()
    assert (out.directory / METADATA_FILE).is_file()
    assert metadata["parent_version"] == 1 and metadata["corrections"] == 8 and metadata["epochs"] == 1
    assert metadata["train_samples"] == 500 and metadata["test_samples"] == 200
    assert metadata["train_data_sha256"] == mnist.train.sha256
    assert metadata["test_accuracy"] == result.decision.candidate.mnist_accuracy
    assert result.metrics["flag_eval_samples"] == 2 and result.metrics["flag_eval"] == "held-out"
    assert result.rows(parent="v1", candidate="v2")[0] == ("version", "v1", "v2")


@pytest.mark.slow
def test_a_retrain_keeps_the_parents_holdout_out_and_calibrates_the_candidate_on_it(
    mnist, tmp_path, tiny_rejecting_model_dir
):
    parent = ModelBundle(tiny_rejecting_model_dir)  # 300 digits held out, a reject option
    rng = np.random.default_rng(0)
    out = ModelBundle(tmp_path / "v2")
    lines, stages = [], []
    words, _ = model_inputs(negative_set(mnist.test.images, count=6, seed=1, families=("printed", "drawn")))
    result = retrain_for_test(
        parent=parent,
        out=out,
        mnist=mnist,
        x=rng.random((5, 28, 28, 1), dtype=np.float32),
        y=rng.integers(0, 10, 5).astype("int32"),
        rejects_x=words,
        log=lines.append,
        stage=stages.append,
        train_limit=1000,
    )
    metadata = out.metadata()
    assert stages == [FINE_TUNING, CALIBRATING, JUDGING]
    # Both models judged on the images staff said are not digits, beside the corrections.
    assert 0 <= result.metrics["rejects_caught"] <= 1 and 0 <= result.metrics["parent_rejects_caught"] <= 1
    assert any(row[0] == "said not a digit, of staff's" for row in result.rows(parent="v1", candidate="v2"))
    # Images staff said are not digits, and the corrections, taught the candidate's reject option.
    assert any(f"{len(words) + 5} staff corrections" in line for line in lines)  # all 5 train: too few to judge
    assert out.detector_path.is_file() and metadata["verdict"]["reject_below"] > 0
    # Taught, not fitted anew: the parent's detector, warm-started, moved a little.
    taught = metadata["verdict"]["detector"]["taught"]
    assert taught["corrections"] == len(words) + 5 and taught["epochs"] == TEACH_EPOCHS
    moved = weight_distance(parent.detector_path, out.detector_path)
    assert 0 < moved < weight_distance(parent.detector_path, build_detector())
    # Fine-tuned as the parent learned, without the 300 digits it held out: calibrated on those.
    assert metadata["holdout"] == 300 and metadata["train_samples"] == 1000
    assert metadata["calibration"]["fitted_on"]["clean"] == 300
    assert metadata["calibration"]["temperature"] != 1.0
    assert result.decision.candidate.mnist_ece == pytest.approx(result.metrics["test_ece"])
    assert 0 < result.metrics["parent_test_ece"] < 1


@pytest.mark.slow  # trains: `make test-fast` leaves it out
def test_fine_tuning_an_ensemble_trains_every_member(mnist, tmp_path):
    import keras

    from ml.fitting.retrain import fine_tune
    from ml.serving.architectures import build, ensemble, members_of
    from ml.serving.artifacts import to_model_array

    bundle = ModelBundle(tmp_path / "ensemble")
    bundle.directory.mkdir()
    keras.utils.set_random_seed(1)
    ensemble([build("dense"), build("dense")], name="dense").save(bundle.model_path)
    before = [member.get_weights() for member in members_of(keras.saving.load_model(bundle.model_path))]

    result = fine_tune(
        model_path=bundle.directory,
        mnist_x=to_model_array(mnist.train.images[:512]),
        mnist_y=mnist.train.labels[:512].astype("int32"),
        extra_x=to_model_array(mnist.test.images[:8]),
        extra_y=mnist.test.labels[:8].astype("int32"),
        epochs=1,
        log=lambda line: None,
    )
    after = [member.get_weights() for member in members_of(result.model)]
    assert len(after) == 2
    for old, new in zip(before, after, strict=True):
        # Every layer of every member moved.
        assert all(not np.allclose(o, n) for o, n in zip(old, new, strict=True) if o.size > 1)


def weight_distance(a, b) -> float:
    """The largest difference between two detectors' weights (saved files or models)."""
    import keras

    a, b = (keras.saving.load_model(m, compile=False) if not isinstance(m, keras.Model) else m for m in (a, b))
    return max(float(np.abs(x - y).max()) for x, y in zip(a.get_weights(), b.get_weights(), strict=True))


def test_the_replay_is_fixed_by_the_seed_bounded_and_as_many_of_each_digit(mnist):
    labels = mnist.train.labels
    picks = replay_sample(mnist.train.images, labels, count=1000, seed=42)
    assert len(picks) == 1000 and len(set(picks)) == 1000
    assert np.bincount(labels[picks], minlength=10).tolist() == [100] * 10
    assert np.array_equal(picks, replay_sample(mnist.train.images, labels, count=1000, seed=42))
    assert not np.array_equal(picks, replay_sample(mnist.train.images, labels, count=1000, seed=43))
    # Never more than there are: a small training set is replayed whole.
    assert len(replay_sample(mnist.train.images[:300], labels[:300], count=1000, seed=42)) == 300


@pytest.mark.slow
def test_without_not_a_digit_lessons_the_candidate_keeps_the_parents_detector(
    mnist, tmp_path, tiny_rejecting_model_dir, monkeypatch
):
    monkeypatch.setattr("ml.fitting.retrain.VERDICT_NON_DIGITS", 16)  # sizes for a test: seconds
    monkeypatch.setattr("ml.fitting.retrain.CALIBRATION_DIGITS", 100)
    parent = ModelBundle(tiny_rejecting_model_dir)
    out = ModelBundle(tmp_path / "v2")
    lines = []
    retrain_for_test(
        parent=parent,
        out=out,
        mnist=mnist,
        x=np.asarray(mnist.test.images[:12, ..., None] / 255, dtype="float32"),
        y=mnist.test.labels[:12].astype("int32"),
        log=lines.append,
        train_limit=1000,
        replay_digits=500,
    )
    metadata = out.metadata()
    assert weight_distance(parent.detector_path, out.detector_path) == 0.0
    assert metadata["verdict"]["detector"]["kept"] is True and "taught" not in metadata["verdict"]["detector"]
    assert any("keeping the detector" in line for line in lines)
    assert not any("detector data" in line for line in lines)  # nothing generated to fit one
    # Its thresholds are chosen again, for the candidate.
    assert metadata["verdict"]["reject_below"] > 0 and metadata["verdict"]["unsure_below"] > 0
    assert metadata["replay_digits"] == 500 and metadata["train_samples"] == 500
    assert metadata["calibration"]["fitted_on"]["clean"] == 100


@pytest.mark.slow  # trains: `make test-fast` leaves it out
def test_teaching_a_detector_starts_from_its_weights_and_learns_the_lessons(mnist, tiny_rejecting_model_dir):
    import keras

    from ml.serving.verdicts import KINDS

    parent = ModelBundle(tiny_rejecting_model_dir).detector_path
    detector = keras.saving.load_model(parent, compile=False)
    words, _ = model_inputs(negative_set(mnist.test.images, count=16, seed=5, families=("printed",)))
    kind = KINDS.index("drawing")  # a kind the words are not: a lesson the detector has to learn
    before = detector.predict(words, verbose=0)[:, kind].mean()
    record = teach_detector(
        detector,
        mnist,
        (words, np.full(len(words), kind, dtype="int32")),
        holdout=300,
        seed=42,
        replay_digits=30,
        log=lambda line: None,
    )
    assert record["corrections"] == len(words) and record["replay_samples"] > 0
    assert detector.predict(words, verbose=0)[:, kind].mean() > before
    moved = weight_distance(parent, detector)
    assert 0 < moved < weight_distance(parent, build_detector())
