"""How control moves between the project's files while an upload is read (issue 44).

``ml.serving.numbers.read_numbers`` reads a few representative uploads with the shipped model
(``models/deep``), one at a time, under ``sys.setprofile``; every Python call (a generator
resumed by ``send`` too) whose caller and callee lie in different project files is a crossing.
Per upload, and for all of them together, it prints: the project files touched, the hops
(distinct caller-file -> callee-file edges), the crossings (every such call, counted each
time) and the back-and-forth pairs (files that call each other both ways). ``--edges`` lists
the edges with their counts.

Run: ``MNIST_DATA_DIR=... .venv/bin/python bench/hops.py [--edges]``.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ml.fitting import synth  # noqa: E402
from ml.fitting.data import load_mnist  # noqa: E402
from ml.serving.inference import Predictor  # noqa: E402
from ml.serving.numbers import read_numbers  # noqa: E402

SEED = 44
PROJECT = str(REPO) + os.sep
OUTSIDE = (str(REPO / ".venv"), str(Path(__file__).resolve()))


def uploads() -> dict[str, bytes]:
    """A single digit scanned, a 4-digit number with touching digits, a photo of a number
    askew on ruled paper: the three ways through segmentation (one group, cuts, turned level)."""
    mnist = load_mnist(os.environ.get("MNIST_DATA_DIR"))
    images, labels = mnist.test.images, mnist.test.labels
    rng = np.random.default_rng(SEED)
    four, three = rng.choice(len(images), 4, replace=False), rng.choice(len(images), 3, replace=False)

    def number(picks: np.ndarray, **render) -> bytes:
        digits = "".join(str(int(labels[i])) for i in picks)
        return synth.render_number(images[picks], rng=rng, number=digits, **render).data

    return {
        "single digit (scan)": synth.render_upload(images[0], scenario="scan", rng=rng, label=int(labels[0])).data,
        "4-digit number (scan, touching)": number(four, scenario="scan", touch_rate=1.0),
        "photo (3 digits, ruled, askew)": number(three, scenario="photo", paper="ruled", turn=15.0),
    }


def project_file(path: str) -> str | None:
    if not path.startswith(PROJECT) or path.startswith(OUTSIDE):
        return None
    return path[len(PROJECT) :]


def crossings(predictor: Predictor, blob: bytes) -> Counter:
    """Every call from one project file into another while ``read_numbers`` reads ``blob``."""
    calls: Counter = Counter()
    files: dict[str, str | None] = {}

    def where(code) -> str | None:
        if code.co_filename not in files:
            files[code.co_filename] = project_file(code.co_filename)
        return files[code.co_filename]

    def profile(frame, event, _arg) -> None:
        if event != "call" or frame.f_back is None:
            return
        callee, caller = where(frame.f_code), where(frame.f_back.f_code)
        if callee and caller:
            calls[(caller, callee)] += 1

    sys.setprofile(profile)
    try:
        read_numbers(predictor, [blob])
    finally:
        sys.setprofile(None)
    return calls


def figures(calls: Counter) -> tuple[int, int, int, int]:
    """Files touched, hops (distinct edges across files), crossings, back-and-forth pairs."""
    touched = {file for edge in calls for file in edge}
    across = {edge: n for edge, n in calls.items() if edge[0] != edge[1]}
    both_ways = {frozenset(edge) for edge in across if edge[::-1] in across}
    return len(touched), len(across), sum(across.values()), len(both_ways)


def row(name: str, calls: Counter) -> None:
    files, hops, crossed, both = figures(calls)
    print(f"{name:34} {files:5} {hops:5} {crossed:9} {both:9}")


def main() -> None:
    predictor = Predictor(REPO / "models" / "deep")
    samples = uploads()
    read_numbers(predictor, list(samples.values()))  # warm: the model's first call traces it
    total: Counter = Counter()
    print(f"{'upload':34} {'files':>5} {'hops':>5} {'crossings':>9} {'both ways':>9}")
    for name, blob in samples.items():
        calls = crossings(predictor, blob)
        total.update(calls)
        row(name, calls)
    row("all three", total)
    if "--edges" in sys.argv:
        for (caller, callee), n in sorted(total.items()):
            if caller != callee:
                mark = "  <->" if (callee, caller) in total else ""
                print(f"{n:7}  {caller} -> {callee}{mark}")


if __name__ == "__main__":
    main()
