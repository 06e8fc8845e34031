"""How long a retrain's judging takes: the shipped model read against itself on the fixed
judging sets (``ml.fitting.judging``), as a retrain reads the candidate and the active version, with
the time to build the sets and to read them, per model and per set.

Run: ``.venv/bin/python bench/judging.py [--per-set 500] [--model DIR]``. Judged against
itself, every set must come out ``same``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stack import MNIST_DIR  # noqa: E402

from ml.fitting.data import load_mnist  # noqa: E402
from ml.fitting.judging import compare_sets, judging_sets, read_sets  # noqa: E402
from ml.serving.inference import Predictor  # noqa: E402

REAL_DIGITS_DIR = REPO.parent / "shared" / "data" / "real-digits"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-set", type=int, default=500)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "deep")
    parser.add_argument("--real-dir", type=Path, default=REAL_DIGITS_DIR)
    args = parser.parse_args()

    test = load_mnist(MNIST_DIR).test
    started = time.monotonic()
    sets = judging_sets(test, real_dir=args.real_dir, per_set=args.per_set, seed=42)
    built = time.monotonic() - started
    print(f"sets built in {built:.1f} s: " + ", ".join(f"{name} {n}" for name, n in sets.sizes().items()))
    readings, seconds, per_set = [], [], dict.fromkeys(sets.sizes(), 0.0)
    for _ in range(2):  # the parent, then the candidate (here the same model)
        predictor = Predictor(args.model)
        started = time.monotonic()
        marks = []  # when each set's reading began, in the order of sets.sizes()
        readings.append(read_sets(predictor, sets, log=lambda line, marks=marks: marks.append(time.monotonic())))
        seconds.append(time.monotonic() - started)
        for name, begun, ended in zip(per_set, marks, [*marks[1:], started + seconds[-1]], strict=True):
            per_set[name] += ended - begun
    for row in compare_sets(*readings):
        print(
            f"  {row.set:<28} {row.samples:>6} {row.measure:<20} {row.parent:7.2%} {row.candidate:7.2%} "
            f"{row.verdict:<5} {per_set[row.set]:5.1f} s (both models)"
        )
    total = built + sum(seconds)
    print(
        f"judging {args.model.name} against itself, at most {args.per_set} per set: build {built:.1f} s, "
        f"read {seconds[0]:.1f} s + {seconds[1]:.1f} s, {total:.1f} s in all"
    )


if __name__ == "__main__":
    main()
