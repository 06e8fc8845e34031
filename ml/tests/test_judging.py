"""The fixed judging sets a retrained candidate and the active version both read (``ml.fitting.judging``),
the noise rule, and the gate refusing a candidate that reads one of them worse, naming it."""

import shutil

import numpy as np
import pytest

from ml.fitting.choosing import REAL_FOLDERS, Reading
from ml.fitting.data import Split
from ml.fitting.gate import Scores, gate_caveat, judge, split_corrections
from ml.fitting.judging import (
    BETTER,
    MNIST_TEST,
    NON_DIGITS,
    NUMBERS,
    SAME,
    WORSE,
    JudgingPlan,
    compare_sets,
    judge_on_sets,
    judging_sets,
)
from ml.fitting.retrain import JUDGING
from ml.serving.artifacts import ModelBundle
from ml.serving.inference import Predictor
from ml.tests.conftest import REAL_DIGITS_DIR, swapped, unavailable
from ml.tests.retrains import retrain_for_test

PER_SET = 30
PARENT = Scores(mnist_accuracy=0.99, mnist_loss=0.03, corrections_accuracy=0.5)
LEARNT = Scores(mnist_accuracy=0.99, mnist_loss=0.03, corrections_accuracy=1.0)


@pytest.fixture(scope="module")
def test_split(mnist):
    return Split(images=mnist.test.images[:300], labels=mnist.test.labels[:300], sha256=mnist.test.sha256)


@pytest.fixture(scope="module")
def sets(test_split):
    if not all((REAL_DIGITS_DIR / name / "labels.csv").is_file() for name in REAL_FOLDERS):
        unavailable(f"the real digits are not at {REAL_DIGITS_DIR}")
    return judging_sets(test_split, real_dir=REAL_DIGITS_DIR, per_set=PER_SET, seed=0)


def reading(wrong: int, *, samples: int) -> tuple[Reading, Reading]:
    """A parent that reads every image right, and a candidate that reads ``wrong`` of them wrong."""
    parent = np.ones(samples, dtype=bool)
    candidate = parent.copy()
    candidate[:wrong] = False
    return Reading(parent, ("digit",) * samples), Reading(candidate, ("digit",) * samples)


@pytest.mark.slow  # builds the judging sets a second time: `make test-fast` leaves it out
def test_the_judging_sets_are_every_set_people_rely_on_and_the_same_draw_every_time(sets, test_split):
    sizes = sets.sizes()
    assert next(iter(sizes)) == MNIST_TEST and sizes[MNIST_TEST] == 300  # MNIST test as given, whole
    for name in ("realistic uploads", "scikit-learn 43 writers", *REAL_FOLDERS, NON_DIGITS, NUMBERS):
        assert sizes[name] == PER_SET, name
    assert {f"{name} box 16x16" for name in REAL_FOLDERS} <= set(sizes)
    again = judging_sets(test_split, real_dir=REAL_DIGITS_DIR, per_set=PER_SET, seed=0)
    for name, uploads in sets.digits.items():
        assert [u.data for u in again.digits[name]] == [u.data for u in uploads], name
    assert [u.data for u in again.numbers] == [u.data for u in sets.numbers]
    # A real folder's box-scanned view is the same images, scanned.
    drawn, scanned = sets.digits["hwd-1000"], sets.digits["hwd-1000 box 16x16"]
    assert [u.label for u in drawn] == [u.label for u in scanned]


def test_a_model_judged_against_itself_reads_every_set_the_same(sets, tiny_model_dir):
    rows = judge_on_sets(Predictor(tiny_model_dir), Predictor(tiny_model_dir), sets)
    assert [row.set for row in rows] == list(sets.sizes())
    assert all(row.verdict == SAME and row.difference == 0 for row in rows)
    decision = judge(parent=PARENT, candidate=LEARNT, max_mnist_drop=0.002, sets=rows)
    assert decision.promoted and decision.reason.endswith("and no judging set reads worse")


def test_a_harmed_candidate_reads_sets_worse_and_the_gate_refuses_it_naming_them(sets, tiny_model_dir, tmp_path):
    harmed = swapped(tiny_model_dir, tmp_path / "harmed")
    rows = judge_on_sets(Predictor(tiny_model_dir), Predictor(harmed), sets)
    by_set = {row.set: row for row in rows}
    assert by_set[MNIST_TEST].verdict == WORSE
    assert by_set[MNIST_TEST].difference < -by_set[MNIST_TEST].noise
    # Better on the corrections, MNIST within a tolerance that lets anything through: the
    # judging sets alone refuse it, and say which and by how much.
    decision = judge(parent=PARENT, candidate=LEARNT, max_mnist_drop=1.0, sets=rows)
    assert not decision.promoted
    assert decision.worse_on and decision.worse_on[0].set == MNIST_TEST
    points = -100 * by_set[MNIST_TEST].difference
    assert decision.reason.startswith(
        f"it reads MNIST test worse: read right {by_set[MNIST_TEST].candidate:.1%} against "
        f"{by_set[MNIST_TEST].parent:.1%}, {points:.1f} points down where its noise is "
        f"{100 * by_set[MNIST_TEST].noise:.1f}"
    )
    # Staff may still activate it: forced, the reason keeps what it failed.
    forced = judge(parent=PARENT, candidate=LEARNT, max_mnist_drop=1.0, sets=rows, force=True)
    assert forced.promoted and forced.reason.startswith("forced, although it reads MNIST test")


@pytest.mark.parametrize(
    ("samples", "wrong", "verdict"),
    [
        (10_000, 15, SAME),  # 0.15 points: within evaluate --real's 0.2
        (10_000, 25, WORSE),  # 0.25 points, and 25 images one way is no chance
        (300, 3, SAME),  # 1 point, but 3 images one way happen by chance: noise 1.13 points
        (300, 8, WORSE),  # 2.7 points beyond a noise of 1.85
    ],
)
def test_a_set_reads_worse_only_beyond_its_noise(samples, wrong, verdict):
    parent, candidate = reading(wrong, samples=samples)
    (row,) = compare_sets({"a set": parent}, {"a set": candidate})
    assert row.verdict == verdict
    assert row.difference == pytest.approx(-wrong / samples)
    assert row.noise == pytest.approx(max(0.002, 1.96 * np.sqrt(wrong) / samples))
    (back,) = compare_sets({"a set": candidate}, {"a set": parent})
    assert back.verdict == (BETTER if verdict == WORSE else SAME)


def test_with_too_few_corrections_to_hold_any_out_a_candidate_is_stored_not_promoted():
    decision = judge(parent=PARENT, candidate=LEARNT, max_mnist_drop=0.002, unseen=False)
    assert not decision.promoted
    assert decision.reason == "too few corrections to hold any out: it was judged only on what it trained on"
    caveat = gate_caveat(decision, split_corrections(3, seed=42, min_for_holdout=10), min_for_holdout=10, parent="v1")
    assert "Below 10 digit corrections a candidate is stored, never promoted on its own: with 7 more" in caveat
    none = gate_caveat(decision, split_corrections(0, seed=42, min_for_holdout=10), min_for_holdout=10, parent="v1")
    assert none.startswith("There were no digit corrections to judge on") and "with 10 more" in none
    forced = judge(parent=PARENT, candidate=LEARNT, max_mnist_drop=0.002, unseen=False, force=True)
    assert forced.promoted and forced.reason.startswith("forced, although too few corrections")


@pytest.mark.slow
def test_a_retrain_whose_candidate_is_harmed_before_judging_is_not_promoted(tiny_model_dir, mnist, tmp_path):
    """The whole run: fine-tuned on corrections it reads better (a fifth held out), then harmed
    as judging begins; the judging sets refuse it and the metrics carry the table."""
    out = ModelBundle(tmp_path / "v2")
    parent = ModelBundle(tmp_path / "v1")
    shutil.copytree(tiny_model_dir, parent.directory)
    if not all((REAL_DIGITS_DIR / name / "labels.csv").is_file() for name in REAL_FOLDERS):
        unavailable(f"the real digits are not at {REAL_DIGITS_DIR}")

    def harm(name: str) -> None:
        if name == JUDGING:  # the candidate's bundle is written: damage it
            shutil.rmtree(tmp_path / "harmed", ignore_errors=True)
            swapped(out.directory, tmp_path / "harmed")
            shutil.copyfile(ModelBundle(tmp_path / "harmed").model_path, out.model_path)

    x = mnist.test.images[1000:1010, ..., None].astype("float32") / 255
    y = mnist.test.labels[1000:1010].astype("int32")
    result = retrain_for_test(
        parent=parent,
        out=out,
        mnist=mnist,
        x=x,
        y=y,
        stage=harm,
        judging=JudgingPlan(real_dir=REAL_DIGITS_DIR, per_set=PER_SET),
    )
    assert not result.decision.promoted
    assert result.decision.reason.startswith("it reads MNIST test worse: read right")
    table = result.metrics["judging"]
    assert (table[0]["set"], table[0]["verdict"]) == (MNIST_TEST, WORSE)
    assert {row["set"] for row in table} >= {"realistic uploads", "hwd-1000", NON_DIGITS, NUMBERS}
    rows = result.rows(parent="v1", candidate="v2")
    assert any(label.startswith("MNIST test (300, read right)") and "worse" in new for label, _, new in rows)


def test_built_judging_sets_are_kept_on_disk_by_what_they_are_made_of(test_split, tmp_path):
    import pickle

    from ml.fitting import judging

    real = tmp_path / "real"
    real.mkdir()
    plan = JudgingPlan(real_dir=real, per_set=8, cache_dir=tmp_path / "cache")
    built = plan.sets(test_split)
    [kept] = (tmp_path / "cache").iterdir()
    assert kept.name == f"judging-{plan.key(test_split)}.pickle"
    judging._BUILT.clear()  # as a fresh trainer process
    again = plan.sets(test_split)
    assert again.sizes() == built.sizes()
    assert [u.data for u in again.non_digits] == [u.data for u in built.non_digits]
    # What is on disk is what a later retrain reads, not built anew.
    kept.write_bytes(pickle.dumps(judging.JudgingSets(mnist=test_split, digits={})))
    judging._BUILT.clear()
    assert plan.sets(test_split).sizes() == {MNIST_TEST: 300}
    # Another seed, size, MNIST test, or a changed real folder: other sets.
    (real / "note.txt").write_text("a new file")
    keys = {
        plan.key(test_split),
        JudgingPlan(real_dir=real, per_set=9, cache_dir=None).key(test_split),
        JudgingPlan(real_dir=real, per_set=8, seed=1).key(test_split),
        plan.key(Split(images=test_split.images[:100], labels=test_split.labels[:100], sha256="other")),
        kept.name.removeprefix("judging-").removesuffix(".pickle"),
    }
    assert len(keys) == 5
