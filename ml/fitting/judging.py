"""Judging a retrained candidate against the version it would replace on the fixed sets people
rely on (fitting only): MNIST test, every real set ``evaluate --real`` reads (``ml.fitting.choosing``:
realistic uploads, scikit-learn's 43 writers, each folder of real digits found, as drawn and
box-scanned), generated non-digits (``ml.fitting.negatives``) and whole numbers (``ml.fitting.synth``).

Both models read the same images, each image as the worker reads it: single digits through
``predict_images``, non-digits and numbers through ``read_numbers``. Per set, one figure: a
digit read right; a non-digit answered as anything but a confident reading (unsure, not a digit
or refused: what ``evaluate --non-digits`` counts as caught); a number read exactly.

The noise rule is ``evaluate --real``'s (``ml.fitting.choosing.compare``: worse by more than ``NOISE``,
0.2 points, with McNemar's paired test beside), with that test in points: the images one model
reads right and the other wrong (``b`` and ``c`` of ``n``) make a difference of ``Z`` standard
errors ``sqrt(b + c) / n`` by chance alone. A set reads worse, or better, only beyond the larger
of the two. On 10,000 MNIST digits that is the 0.2 points; on a few hundred images, where one
image is 0.2 points or more, it is what the set can tell.

So that judging fits a retrain's few minutes on two cores, each set but MNIST test's arrays is
at most ``per_set`` images, drawn with a fixed seed: every retrain judges on the same images
(``RETRAIN_JUDGING_PER_SET``; ``bench/judging.py`` times it). Being the same every time, the
built sets are kept between retrains: in the trainer's process, and on disk where the plan has a
``cache_dir`` (a file keyed by MNIST test, the real folders' files, the size and the seed).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ml.fitting.choosing import NOISE, Reading, compare, read_mnist, read_uploads, real_sets
from ml.fitting.data import Split
from ml.fitting.negatives import FAMILIES, negative_set
from ml.fitting.synth import NumberUpload, Upload, number_set
from ml.serving.inference import Predictor
from ml.serving.numbers import read_numbers

# Standard errors of a paired difference that chance alone would rarely reach (95%, two-sided).
Z = 1.96
# Images per read_numbers call, as the worker's batches.
NUMBERS_BATCH = 32
MNIST_TEST, NON_DIGITS, NUMBERS = "MNIST test", "non-digits (generated)", "whole numbers (generated)"
# What each set's figure counts, as the page says it.
READ_RIGHT, CAUGHT, READ_EXACTLY = "read right", "not read as a digit", "read exactly"
WORSE, BETTER, SAME = "worse", "better", "same"
# The draw of every subsampled set and generated image: the same images at every retrain.
JUDGING_SEED = 0
# Part of the cache key: changed whenever what judging_sets builds changes.
JUDGING_SETS_FORMAT = 1


@dataclass(frozen=True)
class JudgingPlan:
    """Where the real folders are (``None``: none) and at most how many images of each set
    but MNIST test to judge on (``None``: all, and 2,000 realistic uploads, 500 non-digits
    and numbers)."""

    real_dir: Path | None
    per_set: int | None
    seed: int = JUDGING_SEED
    cache_dir: Path | None = None  # where built sets are kept between processes; None: not kept

    def key(self, test: Split) -> str:
        """What the sets are made of: MNIST test, every file of the real folders (name, size,
        time), the size and the seed. Another key, other sets."""
        files = sorted(
            (str(path.relative_to(self.real_dir)), path.stat().st_size, path.stat().st_mtime_ns)
            for path in (Path(self.real_dir).rglob("*") if self.real_dir is not None else ())
            if path.is_file()
        )
        described = [JUDGING_SETS_FORMAT, test.sha256, len(test.labels), self.per_set, self.seed, files]
        return hashlib.sha256(json.dumps(described).encode()).hexdigest()[:20]

    def sets(self, test: Split) -> JudgingSets:
        """The judging sets: kept from an earlier retrain where they are the same, else built."""
        key = self.key(test)
        if key in _BUILT:
            return _BUILT[key]
        path = None if self.cache_dir is None else Path(self.cache_dir) / f"judging-{key}.pickle"
        if path is not None and path.is_file():
            sets = pickle.loads(path.read_bytes())  # our own file, written below
        else:
            sets = judging_sets(test, real_dir=self.real_dir, per_set=self.per_set, seed=self.seed)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = path.with_suffix(f".{os.getpid()}.partial")
                partial.write_bytes(pickle.dumps(sets, protocol=pickle.HIGHEST_PROTOCOL))
                partial.replace(path)  # whole or not at all, whoever reads it
        _BUILT.clear()  # one plan's sets at a time: a few megabytes
        _BUILT[key] = sets
        return sets


@dataclass(frozen=True)
class JudgingSets:
    """The fixed sets, built once per retrain and read by both models."""

    mnist: Split
    digits: dict[str, list[Upload]]
    non_digits: list[Upload] = field(default_factory=list)
    numbers: list[NumberUpload] = field(default_factory=list)

    def sizes(self) -> dict[str, int]:
        return (
            {MNIST_TEST: len(self.mnist.labels)}
            | {name: len(uploads) for name, uploads in self.digits.items()}
            | ({NON_DIGITS: len(self.non_digits)} if self.non_digits else {})
            | ({NUMBERS: len(self.numbers)} if self.numbers else {})
        )


@dataclass(frozen=True)
class SetRow:
    """One set's comparison: each model's share (of ``measure``), the candidate's difference in
    points of a share, the noise it must exceed, and the verdict: ``worse``, ``better`` or ``same``."""

    set: str
    samples: int
    measure: str
    parent: float
    candidate: float
    difference: float
    noise: float
    verdict: str

    def as_dict(self) -> dict:
        return dict(vars(self))

    @property
    def worse(self) -> bool:
        return self.verdict == WORSE

    def describe(self) -> str:
        """``hwd-1000 worse: read right 91.2% against 93.0%, 1.8 points down where its noise is 1.1``"""
        return (
            f"{self.set} {self.verdict}: {self.measure} {self.candidate:.1%} against {self.parent:.1%}, "
            f"{abs(100 * self.difference):.1f} points {'down' if self.difference < 0 else 'up'} "
            f"where its noise is {100 * self.noise:.1f}"
        )


# The judging sets this process built last, by ``JudgingPlan.key``.
_BUILT: dict[str, JudgingSets] = {}


def _sample(items: list, per_set: int | None, seed: int) -> list:
    if per_set is None or len(items) <= per_set:
        return items
    picks = np.sort(np.random.default_rng(seed).choice(len(items), size=per_set, replace=False))
    return [items[i] for i in picks]


def judging_sets(test: Split, *, real_dir: Path | None, per_set: int | None, seed: int) -> JudgingSets:
    """MNIST test as given (arrays cost little); the real sets, the non-digits and the numbers,
    each at most ``per_set`` images drawn with ``seed`` (None: whole). A real folder's
    box-scanned view scans the same drawn images."""
    sets = real_sets(test, real_dir=real_dir, realistic=per_set or 2000, seed=seed)
    count = per_set or 500
    families = tuple(family for family in FAMILIES if family != "number")  # a number is read, rightly
    return JudgingSets(
        mnist=test,
        # A folder and its box-scanned view are as long: the same draw picks the same images.
        digits={name: _sample(uploads, per_set, seed) for name, uploads in sets.items() if uploads},
        non_digits=negative_set(test.images, count=count, seed=seed, families=families),
        numbers=number_set(test.images, test.labels, count=count, seed=seed),
    )


def _read_numbers(predictor: Predictor, blobs: list[bytes]) -> list:
    return [
        result
        for start in range(0, len(blobs), NUMBERS_BATCH)
        for result in read_numbers(predictor, blobs[start : start + NUMBERS_BATCH])
    ]


def read_sets(
    predictor: Predictor,
    sets: JudgingSets,
    *,
    mnist: Reading | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> dict[str, Reading]:
    """Every set read by ``predictor``: per image, whether it was read as that set counts right.
    ``mnist``: its reading of MNIST test where it was read already (the gate's evaluation).
    ``log`` hears each set's name as it is read."""
    names = list(sets.sizes())
    log(f"reading {MNIST_TEST} (1 of {len(names)} sets)")
    readings = {MNIST_TEST: mnist if mnist is not None else read_mnist(predictor, sets.mnist)}
    for name, uploads in sets.digits.items():
        log(f"reading {name} ({names.index(name) + 1} of {len(names)} sets)")
        readings[name] = read_uploads(predictor, uploads)
    if sets.non_digits:
        log(f"reading {NON_DIGITS} ({names.index(NON_DIGITS) + 1} of {len(names)} sets)")
        results = _read_numbers(predictor, [upload.data for upload in sets.non_digits])
        caught = [r.error is not None or r.verdict not in ("digit", "number") for r in results]
        readings[NON_DIGITS] = Reading(np.array(caught, dtype=bool), tuple(r.verdict or "refused" for r in results))
    if sets.numbers:
        log(f"reading {NUMBERS} ({len(names)} of {len(names)} sets)")
        results = _read_numbers(predictor, [upload.data for upload in sets.numbers])
        exact = [r.number == u.number for r, u in zip(results, sets.numbers, strict=True)]
        readings[NUMBERS] = Reading(np.array(exact, dtype=bool), tuple(r.verdict or "refused" for r in results))
    return readings


def noise(compared: dict, samples: int) -> float:
    """The difference chance alone makes on these images: ``NOISE`` at least, else ``Z``
    standard errors of the paired difference (the images only one model reads right)."""
    split = compared["only_candidate"] + compared["only_baseline"]
    return max(NOISE, Z * math.sqrt(split) / samples) if samples else NOISE


def compare_sets(parent: dict[str, Reading], candidate: dict[str, Reading]) -> tuple[SetRow, ...]:
    """Each set both read, the candidate against the parent, in the parent's order."""
    rows = []
    for name, old in parent.items():
        new = candidate[name]
        compared = compare(new, old)
        samples = len(old.correct)
        margin = noise(compared, samples)
        difference = compared["difference"]
        verdict = WORSE if difference < -margin else BETTER if difference > margin else SAME
        measure = CAUGHT if name == NON_DIGITS else READ_EXACTLY if name == NUMBERS else READ_RIGHT
        rows.append(
            SetRow(
                set=name,
                samples=samples,
                measure=measure,
                parent=float(old.correct.mean()) if samples else 0.0,
                candidate=float(new.correct.mean()) if samples else 0.0,
                difference=difference,
                noise=margin,
                verdict=verdict,
            )
        )
    return tuple(rows)


def judge_on_sets(
    parent: Predictor,
    candidate: Predictor,
    sets: JudgingSets,
    *,
    mnist: tuple[Reading, Reading] | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> tuple[SetRow, ...]:
    """Both models read every set; each set compared (``compare_sets``). ``mnist``: the
    parent's and the candidate's readings of MNIST test where they were read already."""
    readings = []
    for role, predictor, read in (
        ("active version", parent, mnist and mnist[0]),
        ("candidate", candidate, mnist and mnist[1]),
    ):
        readings.append(
            read_sets(predictor, sets, mnist=read, log=lambda line, role=role: log(f"judging: the {role} {line}"))
        )
    return compare_sets(*readings)
