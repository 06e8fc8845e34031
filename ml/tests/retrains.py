"""A retrain as the tests run one: a small model's v1 fine-tuned into v2 on a few corrections,
at sizes that take seconds, each test saying only what it changes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from ml.fitting.data import Mnist
from ml.fitting.gate import RetrainResult, split_corrections
from ml.fitting.retrain import Corrections, RetrainOptions, retrain
from ml.serving.artifacts import ModelBundle

# One epoch over a replay of the first 500 training digits, judged on 300 test digits; the
# gate's MNIST tolerance wide open, so that what a test checks is what it names.
TEST_OPTIONS = RetrainOptions(epochs=1, seed=42, max_mnist_drop=1.0, train_limit=500, test_limit=300)
MIN_FOR_HOLDOUT = 10


def retrain_for_test(
    *,
    parent: ModelBundle,
    out: ModelBundle,
    mnist: Mnist,
    x: np.ndarray,
    y: np.ndarray,
    rejects_x: np.ndarray | None = None,
    log: Callable[[str], None] = lambda line: None,
    stage: Callable[[str], None] = lambda name: None,
    **options,
) -> RetrainResult:
    """``parent`` (as v1) fine-tuned into ``out`` on the corrections ``x``, ``y`` (a fifth held
    out from ``MIN_FOR_HOLDOUT`` on) and ``rejects_x``, with ``TEST_OPTIONS`` but ``options``."""
    split = split_corrections(len(x), seed=42, min_for_holdout=MIN_FOR_HOLDOUT)
    return retrain(
        parent=parent,
        parent_version=1,
        out=out,
        mnist=mnist,
        corrections=Corrections(x=x, y=y, split=split, rejects_x=rejects_x),
        options=replace(TEST_OPTIONS, **options),
        log=log,
        stage=stage,
    )
