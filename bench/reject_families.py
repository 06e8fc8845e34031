"""Does the reject option generalise to kinds of non-digits it never saw? Leave one family out.

For each family of ``ml.fitting.negatives``, a detector is trained as ``train`` trains it but without
that family's images, and measured on that family alone (made with another seed), beside a
detector trained on every family. A family caught well only when it was trained on is one the
held-out sets of the real world will get wrong.

Run: ``.venv/bin/python bench/reject_families.py [--digits 2000] [--count 600]``
(about a minute per family on 2 cores with the defaults).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from stack import MNIST_DIR  # noqa: E402

from ml.fitting.calibration import held_out_inputs, model_inputs  # noqa: E402
from ml.fitting.data import load_mnist  # noqa: E402
from ml.fitting.negatives import FAMILIES, negative_set  # noqa: E402
from ml.fitting.reject import FAMILY_KIND, choose_thresholds, train_detector  # noqa: E402
from ml.serving.verdicts import KINDS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--digits", type=int, default=2000, help="training digits, three ways")
    parser.add_argument("--count", type=int, default=600, help="non-digits per family to measure on")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--holdout", type=int, default=5000)
    args = parser.parse_args()
    mnist = load_mnist(MNIST_DIR)
    learned_images, learned_labels = mnist.training(args.holdout)
    rng = np.random.default_rng(0)
    picks = rng.choice(len(learned_images), size=args.digits, replace=False)
    started = time.monotonic()
    positives = np.concatenate(
        [x for x, _ in held_out_inputs(learned_images[picks], learned_labels[picks], seed=0).values()]
    )
    uploads = negative_set(learned_images, count=3 * args.digits, seed=1)
    negatives, read = model_inputs(uploads)
    families = np.array([u.scenario for u in uploads])[read]
    kinds = np.array([KINDS.index(FAMILY_KIND[f]) for f in families])
    held_images, held_labels = mnist.held_out(args.holdout)
    held = np.concatenate([x for x, _ in held_out_inputs(held_images[:2000], held_labels[:2000], seed=5).values()])
    tests = {}
    for family in FAMILIES:
        test_uploads = negative_set(held_images, count=args.count, seed=7, families=(family,))
        tests[family] = model_inputs(test_uploads)
    print(f"data in {time.monotonic() - started:.0f} s: {len(positives):,} digits, {len(negatives):,} non-digits")

    def caught_by(left_out: str | None) -> dict[str, float]:
        keep = families != left_out
        x = np.concatenate([positives, negatives[keep]]).astype("float32")
        y = np.concatenate([np.zeros(len(positives), "int32"), kinds[keep].astype("int32")])
        detector, _ = train_detector(x, y, epochs=args.epochs, seed=0, log=lambda line: None)
        digit_share = detector.predict(held, batch_size=1000, verbose=0)[:, 0]
        reject_below = choose_thresholds(digit_share, np.ones(len(held)), np.ones(len(held), bool))["reject_below"]
        out = {"digits kept": float((digit_share >= reject_below).mean())}
        for family, (inputs, was_read) in tests.items():
            shares = detector.predict(inputs, batch_size=1000, verbose=0)[:, 0]
            # A refused file is caught too: it was never answered with a digit.
            out[family] = float(((shares < reject_below).sum() + (~was_read).sum()) / len(was_read))
        return out

    everything = caught_by(None)
    print(f"\n{'family':<10} {'trained on every family':>24} {'left out of training':>22}")
    for family in FAMILIES:
        left = caught_by(family)
        print(
            f"{family:<10} {everything[family]:>23.1%} {left[family]:>21.1%}   (digits kept {left['digits kept']:.1%})"
        )
    print(f"{'digits kept':<10} {everything['digits kept']:>23.1%}")
    print(f"\n(reject only: the unsure verdict catches more; {time.monotonic() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
