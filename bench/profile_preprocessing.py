"""Where preprocessing a realistic upload spends its time (pyinstrument, statistical).

Run: ``.venv/bin/python bench/profile_preprocessing.py [--images 300]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pyinstrument import Profiler  # noqa: E402
from stack import MNIST_DIR  # noqa: E402

from ml.fitting.data import load_mnist  # noqa: E402
from ml.fitting.synth import realistic_set  # noqa: E402
from ml.serving.preprocessing import to_model_input  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=300)
    args = parser.parse_args()
    test = load_mnist(MNIST_DIR).test
    uploads = realistic_set(test.images, test.labels, count=args.images, seed=7)
    for upload in uploads[:20]:  # warm caches and lazy imports
        to_model_input(upload.data)
    profiler = Profiler(interval=0.0005)
    profiler.start()
    for upload in uploads:
        to_model_input(upload.data)
    profiler.stop()
    print(profiler.output_text(unicode=False, color=False))


if __name__ == "__main__":
    main()
