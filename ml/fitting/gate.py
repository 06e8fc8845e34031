"""The retraining gate: whether a candidate replaces the version it was fine-tuned from, why,
and what staff's corrections can show (fitting only; ``ml.fitting.retrain`` runs it).

A candidate is promoted when it reads none of the fixed judging sets worse than the active
version beyond that set's noise (``ml.fitting.judging``), loses at most ``max_mnist_drop`` of
MNIST test accuracy, its calibration error on MNIST test grows by at most ``MAX_ECE_RISE``, it
is better on the corrections it is judged on, and those were held out: with too few
corrections to keep a fifth apart (``split_corrections``), a candidate is stored, never promoted
on its own, and ``gate_caveat`` says why and how many more it takes. ``RetrainResult`` carries
the decision into the version's metrics and the report table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ml.fitting.judging import SetRow
from ml.serving.artifacts import ModelBundle

# How much worse a candidate's calibration error on MNIST test may be (0.5 points).
MAX_ECE_RISE = 0.005
HELD_OUT = "held-out"
PASSED = "better on the corrections, within the MNIST tolerance and as honest about its confidence"


@dataclass(frozen=True)
class Scores:
    mnist_accuracy: float
    mnist_loss: float
    corrections_accuracy: float | None  # None: no corrections to judge on
    mnist_ece: float = 0.0  # expected calibration error of the confidence served
    rejects_caught: float | None = None  # share of staff's "not a digit" images it says so of


@dataclass(frozen=True)
class Decision:
    parent: Scores
    candidate: Scores
    promoted: bool
    reason: str
    sets: tuple[SetRow, ...] = ()  # the fixed judging sets, each compared (``ml.fitting.judging``)

    @property
    def worse_on(self) -> tuple[SetRow, ...]:
        return tuple(row for row in self.sets if row.worse)


def judge(
    *,
    parent: Scores,
    candidate: Scores,
    max_mnist_drop: float,
    force: bool = False,
    sets: Sequence[SetRow] = (),
    unseen: bool = True,
) -> Decision:
    """Promote a candidate that reads none of the judging ``sets`` worse than its parent beyond
    the set's noise, is no worse on MNIST than its parent (within ``max_mnist_drop``), as
    honest about its confidence, and better at what staff corrected: better on at least one
    of the digit corrections and the images staff said are not digits, and worse on neither;
    and only where the corrections it is judged on are ``unseen`` (held out), else it shows
    only that it learnt them. ``force`` promotes it anyway, saying what it failed."""
    failed = _failure(parent=parent, candidate=candidate, max_mnist_drop=max_mnist_drop, sets=sets, unseen=unseen)
    if failed is None:
        reason = PASSED + (", and no judging set reads worse" if sets else "")
    else:
        reason = f"forced, although {failed}" if force else failed
    promoted = force or failed is None
    return Decision(parent=parent, candidate=candidate, promoted=promoted, reason=reason, sets=tuple(sets))


def _failure(
    *, parent: Scores, candidate: Scores, max_mnist_drop: float, sets: Sequence[SetRow], unseen: bool
) -> str | None:
    """The first of the gate's rules the candidate fails, said; None where it passes them all."""
    if worse := [row for row in sets if row.worse]:
        return "it reads " + "; ".join(row.describe() for row in worse)
    if candidate.mnist_accuracy < parent.mnist_accuracy - max_mnist_drop:
        return (
            f"its MNIST test accuracy {candidate.mnist_accuracy:.2%} is below the active model's "
            f"{parent.mnist_accuracy:.2%} minus the {100 * max_mnist_drop:.2f}-point tolerance"
        )
    if candidate.mnist_ece > parent.mnist_ece + MAX_ECE_RISE:
        return (
            f"its calibration error on MNIST test {100 * candidate.mnist_ece:.2f}% is more than "
            f"{100 * MAX_ECE_RISE:.1f} points above the active model's {100 * parent.mnist_ece:.2f}%"
        )
    judged = [
        (name, old, new)
        for name, old, new in (
            ("the corrections", parent.corrections_accuracy, candidate.corrections_accuracy),
            ("the images staff said are not digits", parent.rejects_caught, candidate.rejects_caught),
        )
        if old is not None
    ]
    learnt = not judged or (
        all(new is not None and new >= old for _, old, new in judged)
        and any(new is not None and new > old for _, old, new in judged)
    )
    if not learnt:
        return "not better on " + " nor on ".join(
            f"{name} ({_share(new)} vs {_share(old)})" for name, old, new in judged
        )
    if not unseen:
        return "too few corrections to hold any out: it was judged only on what it trained on"
    return None


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


@dataclass(frozen=True)
class CorrectionSplit:
    """Which corrections the candidate trains on and which it is judged on."""

    train: np.ndarray  # indices of the examples (rows of the corrections' arrays)
    judged: np.ndarray
    kind: str  # "held-out", or "all (too few to hold out)"
    trained: np.ndarray  # indices of the corrections whose examples are ``train``


def split_corrections(
    count: int, *, seed: int, min_for_holdout: int, sizes: Sequence[int] | None = None
) -> CorrectionSplit:
    """With enough corrections a fifth is held out, so that "better on the corrections" is
    measured on images the candidate never saw; with few, all are used for both.

    ``sizes``: how many examples each correction gives, one after another (a number's
    digits; one each by default). A correction goes whole to one side: the candidate is never
    judged on a digit of a number it was trained on."""
    order = np.random.default_rng(seed).permutation(count)
    held = order[: count // 5] if count >= min_for_holdout else order[:0]
    sizes = np.ones(count, dtype=int) if sizes is None else np.asarray(sizes, dtype=int)
    starts = np.cumsum(sizes) - sizes

    def rows(corrections: np.ndarray) -> np.ndarray:
        return np.concatenate([np.arange(starts[c], starts[c] + sizes[c]) for c in corrections] or [np.zeros(0, int)])

    if len(held):
        trained = np.setdiff1d(order, held)
        return CorrectionSplit(train=rows(trained), judged=rows(held), kind=HELD_OUT, trained=trained)
    trained = np.sort(order)
    return CorrectionSplit(train=rows(trained), judged=rows(order), kind="all (too few to hold out)", trained=trained)


def gate_caveat(decision: Decision, split: CorrectionSplit, *, min_for_holdout: int, parent: str) -> str:
    """What the comparison on staff's corrections can and cannot show where they are too few
    to hold any out, why the candidate was then stored and not promoted, and how many more
    corrections it takes; "" where a fifth was held out."""
    if len(split.judged) and split.kind == HELD_OUT:
        return ""
    count = len(split.trained)
    stored = (
        f"Below {min_for_holdout} digit corrections a candidate is stored, never promoted on its own: with "
        f"{min_for_holdout - count} more, a fifth is held out and it is judged on images it never saw. "
        "Staff may still activate it."
    )
    if count == 0:
        said = "There were no digit corrections to judge on"
        if decision.parent.rejects_caught is not None:
            said += ", only the images staff said are not digits, which it also trained on"
        said += ": beyond those, the gate could only check that it reads the judging sets no worse."
        return said if decision.promoted else f"{said} {stored}"
    parts = [
        f"With {count} digit correction{'s' if count != 1 else ''}, fewer than the {min_for_holdout} it takes to "
        "hold a fifth out, the candidate was judged on the same corrections it trained on: that shows it learnt "
        "them, not that it reads new images better."
    ]
    if not decision.promoted:
        if decision.parent.corrections_accuracy == 1.0:
            parts.append(f"{parent} already read every one of them right, so no candidate could be better there.")
        parts.append(stored)
    return " ".join(parts)


@dataclass(frozen=True)
class RetrainResult:
    """A retrain's outcome: the candidate's bundle, the gate's decision and the corrections'
    split, as the version's metrics and the report table."""

    bundle: ModelBundle
    decision: Decision
    split: CorrectionSplit
    test_samples: int

    @property
    def metrics(self) -> dict:
        """The candidate's figures, with its parent's to compare."""
        parent, candidate = self.decision.parent, self.decision.candidate
        return {
            "test_accuracy": candidate.mnist_accuracy,
            "test_loss": candidate.mnist_loss,
            "test_ece": candidate.mnist_ece,
            "parent_test_ece": parent.mnist_ece,
            "test_samples": self.test_samples,
            "flag_accuracy": candidate.corrections_accuracy,
            "parent_test_accuracy": parent.mnist_accuracy,
            "parent_flag_accuracy": parent.corrections_accuracy,
            "flag_eval": self.split.kind,
            "flag_eval_samples": len(self.split.judged),
            "rejects_caught": candidate.rejects_caught,
            "parent_rejects_caught": parent.rejects_caught,
            "judging": [row.as_dict() for row in self.decision.sets],
        }

    def rows(self, *, parent: str, candidate: str) -> list[tuple[str, str, str]]:
        """(metric, parent, candidate): the report table, the models named as given."""

        old, new, promoted = self.decision.parent, self.decision.candidate, self.decision.promoted
        return [
            ("version", parent, candidate),
            ("MNIST test accuracy", _share(old.mnist_accuracy), _share(new.mnist_accuracy)),
            ("MNIST test loss", f"{old.mnist_loss:.4f}", f"{new.mnist_loss:.4f}"),
            ("MNIST test calibration error", f"{100 * old.mnist_ece:.2f}%", f"{100 * new.mnist_ece:.2f}%"),
            (
                f"corrections ({self.split.kind}, {len(self.split.judged)})",
                _share(old.corrections_accuracy),
                _share(new.corrections_accuracy),
            ),
            ("said not a digit, of staff's", _share(old.rejects_caught), _share(new.rejects_caught)),
            *(
                (
                    f"{row.set} ({row.samples:,}, {row.measure})",
                    _share(row.parent),
                    f"{_share(row.candidate)} {row.verdict} ({100 * row.difference:+.2f}, noise {100 * row.noise:.2f})",
                )
                for row in self.decision.sets
            ),
            ("active", "no" if promoted else "yes", "yes" if promoted else "no"),
        ]
