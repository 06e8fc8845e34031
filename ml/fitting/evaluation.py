"""How good a model is: on the MNIST test set, and on realistic uploads made from it; what
``manage.py evaluate`` measures, as its options say, is one ``EvaluationPlan``.

Kept whole: every measure ``evaluate`` reports lives here, one short function per kind of
image, beside the plan that picks them; the part that belongs elsewhere, fitting a bundle's
calibration (``calibrate_bundle`` and its three steps), could move to its own module.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import keras
import numpy as np

from ml.fitting.calibration import (
    CALIBRATION_MAX_DIGITS,
    expected_calibration_error,
    fit_calibration,
    held_out_inputs,
    labelled_inputs,
)
from ml.fitting.data import Mnist, Split
from ml.fitting.negatives import FAMILIES, negative_set
from ml.fitting.plots import plot_coverage_accuracy
from ml.fitting.real_digits import BOX_SIDE, real_digit_number_set
from ml.fitting.reject import DETECTOR_DIGITS, fit_reject_option, has_lessons
from ml.fitting.styles import STYLES, load_digits_uploads, style_set
from ml.fitting.synth import (
    PAPER_RULINGS,
    RULED_SCENARIOS,
    SCENARIOS,
    Upload,
    number_set,
    real_writer_number_set,
    realistic_set,
)
from ml.serving.artifacts import NUM_CLASSES, ModelBundle, confusion_matrix, to_model_array
from ml.serving.inference import Predictor
from ml.serving.numbers import read_numbers
from ml.serving.verdicts import VERDICTS, tempered


@dataclass(frozen=True)
class EvaluationPlan:
    """What ``manage.py evaluate`` measures beside MNIST test, as its options say: how many
    realistic uploads, of each stand-in, non-digits, numbers and single digits of each kind
    (0: none), the seed they are drawn with, and where to draw accuracy against coverage
    (None: nowhere)."""

    realistic: int = 0
    styles: int = 0
    non_digits: int = 0
    numbers: int = 0
    singles: int = 0
    seed: int = 0
    coverage_plot: Path | None = None

    def on_real_sets(self) -> EvaluationPlan:
        """The sizes ``evaluate --real`` reads: those given, else 2,000 realistic uploads, 500
        of each stand-in and 500 non-digits."""
        return replace(
            self, realistic=self.realistic or 2000, styles=self.styles or 500, non_digits=self.non_digits or 500
        )


def evaluate_planned(predictor: Predictor, split: Split, plan: EvaluationPlan, *, real_dir: Path | None = None) -> dict:
    """The report on ``split`` (MNIST test), then on each kind of image ``plan`` names, and the
    coverage plot drawn where it says; numbers are also written with the real digits of the
    folders under ``real_dir`` (``ml.fitting.real_digits``)."""
    seed = plan.seed
    report = evaluate_mnist(predictor, split)
    if plan.realistic:
        report["realistic"] = evaluate_realistic(predictor, split, count=plan.realistic, seed=seed)
    if plan.styles:
        report["styles"] = evaluate_styles(predictor, split, count=plan.styles, seed=seed)
    if plan.non_digits:
        report["non_digits"] = evaluate_non_digits(predictor, split.images, count=plan.non_digits, seed=seed)
    if plan.numbers:
        report["numbers"] = evaluate_numbers(predictor, split, count=plan.numbers, seed=seed, real_dir=real_dir)
    if plan.singles:
        report["singles"] = evaluate_singles(predictor, single_digit_sets(split, count=plan.singles, seed=seed))
    if plan.coverage_plot:
        curves = coverage_curves(predictor, split, realistic=plan.realistic, seed=seed)
        title = "Accuracy against coverage (calibrated confidence)"
        plot_coverage_accuracy(curves, Path(plan.coverage_plot), title=title)
        report["coverage_plot"] = str(plan.coverage_plot)
    return report


def evaluate_mnist(
    predictor: Predictor, split: Split, *, batch_size: int = 1000, predictions: list | None = None
) -> dict:
    """Accuracy, cross-entropy loss and confusion matrix on a split, as plain JSON types.
    ``predictions``: the predictor's of the split's images where it read them already."""
    x = to_model_array(split.images)
    labels = split.labels.astype(int)
    if predictions is None:
        predictions = [p for i in range(0, len(x), batch_size) for p in predictor.predict_arrays(x[i : i + batch_size])]
    probabilities = np.array([p.probabilities for p in predictions], dtype=np.float64).reshape(-1, NUM_CLASSES)
    predicted = probabilities.argmax(axis=1)
    picked = probabilities[np.arange(len(labels)), labels]
    return (
        {
            "accuracy": float((predicted == labels).mean()),
            "loss": float(-np.log(np.clip(picked, 1e-7, 1.0)).mean()),
            "samples": len(labels),
            "errors": int((predicted != labels).sum()),
            "confusion_matrix": confusion_matrix(labels, predicted).tolist(),
        }
        | _calibration_errors(predictor, probabilities, labels)
        | _verdict_report(predictions, labels)
    )


def _verdict_report(predictions: list, labels: np.ndarray) -> dict:
    """The share of each verdict, and how often a "digit" verdict is right."""
    given = np.array([p.verdict for p in predictions])
    right = np.array([p.digit for p in predictions]) == np.asarray(labels)
    answered = given == "digit"
    return {
        "verdicts": {name: float((given == name).mean()) if len(given) else 0.0 for name in VERDICTS}
        | {"digit_accuracy": float(right[answered].mean()) if answered.any() else None}
    }


def coverage_accuracy(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Answering only the most confident share of the inputs: for each share (coverage), how
    often those answers are right."""
    order = np.argsort(-np.asarray(confidence), kind="stable")
    counts = np.arange(1, len(order) + 1)
    return counts / len(order), np.cumsum(np.asarray(correct)[order]) / counts


def _calibration_errors(predictor: Predictor, probabilities: np.ndarray, labels: np.ndarray) -> dict:
    """ECE (15 bins) of the confidence served, and of the model's own before calibration."""
    return {
        "ece": expected_calibration_error(probabilities, labels),
        "ece_uncalibrated": expected_calibration_error(predictor.uncalibrated(probabilities), labels),
    }


def _uploads_accuracy(predictor: Predictor, uploads: list[Upload], *, by_scenario: bool = True) -> dict:
    """Accuracy on labelled uploads, overall and per scenario; a refused file counts as wrong."""
    results = predictor.predict_images([upload.data for upload in uploads])
    right, seen = Counter(), Counter()
    refused = 0
    answered, answered_labels, predictions = [], [], []
    for upload, result in zip(uploads, results, strict=True):
        seen[upload.scenario] += 1
        if result.prediction is None:
            refused += 1
            continue
        predictions.append(result.prediction)
        answered.append(result.prediction.probabilities)
        answered_labels.append(upload.label)
        if result.prediction.digit == upload.label:
            right[upload.scenario] += 1
    report = {"accuracy": sum(right.values()) / max(len(uploads), 1), "samples": len(uploads), "refused": refused}
    if answered:
        report |= _calibration_errors(predictor, np.array(answered), np.array(answered_labels))
        report |= _verdict_report(predictions, np.array(answered_labels))
    if by_scenario:
        report["by_scenario"] = {name: right[name] / seen[name] for name in seen}
    return report


def evaluate_realistic(predictor: Predictor, split: Split, *, count: int, seed: int = 0, scenarios=SCENARIOS) -> dict:
    """Accuracy on ``count`` realistic uploads rendered from ``split``, overall and per scenario.

    A file the preprocessing refuses counts as wrong.
    """
    uploads = realistic_set(split.images, split.labels, count=count, seed=seed, scenarios=scenarios)
    return _uploads_accuracy(predictor, uploads) | {"seed": seed}


def evaluate_styles(predictor: Predictor, split: Split, *, count: int, seed: int = 0) -> dict:
    """Accuracy on the stand-ins for other writers and scanners (``ml.fitting.styles``): ``count``
    uploads per style, and scikit-learn's 1,797 digits by 43 writers."""
    sets = {style: style_set(split.images, split.labels, style=style, count=count, seed=seed) for style in STYLES}
    sets["load_digits"] = load_digits_uploads()
    # One scenario per set: its breakdown would repeat the overall figure.
    report = {name: _uploads_accuracy(predictor, uploads, by_scenario=False) for name, uploads in sets.items()}
    return report | {"seed": seed}


def calibrate_bundle(
    directory,
    mnist: Mnist,
    *,
    holdout: int,
    seed: int,
    detector_digits: int = DETECTOR_DIGITS,
    detector_extra: tuple[np.ndarray, np.ndarray] | None = None,
    keep_detector: bool = False,
    calibration_digits: int = CALIBRATION_MAX_DIGITS,
    non_digits: int | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Make the model in bundle ``directory`` honest, on the ``holdout`` training digits it
    never trained on: fit its calibration (``ml.fitting.calibration``) and, with ``detector_digits``,
    its reject option (``ml.fitting.reject``: the detector, saved in the bundle, and the verdict
    thresholds). Record both in the bundle's metadata; return the calibration, with the
    MNIST test set's ECE before and after (measured, not fitted on). ``keep_detector``: keep
    the bundle's detector, taught the "not a digit" lessons of ``detector_extra`` if it has
    any (``ml.fitting.reject.fit_reject_option``). ``calibration_digits``: at most this many held-out
    digits (each made three ways); ``non_digits``: the non-digits the verdicts are measured on."""
    if holdout <= 0:
        raise ValueError(
            "this model was trained on every training image, so none is left to calibrate it on "
            "without touching the test set: train it with a holdout (train --holdout N)"
        )
    bundle = ModelBundle.at(directory)
    predictor = Predictor(bundle.directory)
    held_out = _held_out_digits(mnist, holdout=holdout, count=calibration_digits, seed=seed, log=log)
    calibration = _fitted_calibration(partial(predictor.probabilities, calibrated=False), held_out, mnist, log)
    metadata = bundle.metadata() | {"calibration": calibration}
    kept = _kept_detector(bundle, metadata, keep=keep_detector)
    if detector_digits or kept is not None:
        predictor.temperature = calibration["temperature"]
        detector, metadata["verdict"] = fit_reject_option(
            predictor,
            mnist,
            held_out,
            holdout=holdout,
            seed=seed,
            digits=detector_digits,
            extra=detector_extra,
            detector=kept,
            non_digits=non_digits,
            log=log,
        )
        if kept is None or has_lessons(detector_extra):
            detector.save(bundle.detector_path)  # fitted or taught; one kept as it was stays byte for byte
    bundle.write_metadata(metadata)
    return calibration


def _held_out_digits(
    mnist: Mnist, *, holdout: int, count: int, seed: int, log: Callable[[str], None]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """At most ``count`` of the held-out training digits, each made three ways."""
    images, labels = (part[:count] for part in mnist.held_out(holdout))
    log(f"calibrating on {len(images):,} held-out training digits: clean, as realistic uploads, in other styles")
    return held_out_inputs(images, labels, seed=seed)


def _fitted_calibration(raw: Callable, held_out: dict, mnist: Mnist, log: Callable[[str], None]) -> dict:
    """The temperature fitted on the ``held_out`` digits through the uncalibrated ``raw``
    probabilities, with the MNIST test set's ECE before and after (measured, not fitted on)."""
    calibration = fit_calibration(raw, held_out)
    test = raw(to_model_array(mnist.test.images))
    test_labels = mnist.test.labels.astype(int)
    calibration["test_ece_before"] = expected_calibration_error(test, test_labels)
    calibration["test_ece_after"] = expected_calibration_error(tempered(test, calibration["temperature"]), test_labels)
    log(
        f"temperature {calibration['temperature']:.3f}; ECE on the held-out digits "
        + ", ".join(
            f"{kind} {100 * calibration['ece_before'][kind]:.2f} -> {100 * calibration['ece_after'][kind]:.2f}%"
            for kind in calibration["ece_before"]
        )
        + f"; MNIST test {100 * calibration['test_ece_before']:.2f} -> {100 * calibration['test_ece_after']:.2f}%"
    )
    return calibration


def _kept_detector(bundle: ModelBundle, metadata: dict, *, keep: bool) -> tuple[keras.Model, dict] | None:
    """With ``keep``, the bundle's own detector and its record, marked kept; else none, and the
    bundle's detector file gone. The old verdict leaves ``metadata`` either way: its
    thresholds were chosen for the model before this calibration."""
    kept = None
    if keep:
        if not bundle.detector_path.is_file() or "verdict" not in metadata:
            raise ValueError(f"there is no detector in {bundle.directory} to keep: calibrate it without keeping one")
        record = metadata["verdict"].get("detector", {}) | {"kept": True}
        kept = (keras.saving.load_model(bundle.detector_path, compile=False), record)
    metadata.pop("verdict", None)
    if kept is None:
        bundle.detector_path.unlink(missing_ok=True)
    return kept


# Images per read_numbers call, as the worker's batches.
NUMBERS_BATCH = 32


def evaluate_non_digits(predictor: Predictor, digits: np.ndarray, *, count: int, seed: int = 0) -> dict:
    """How many of ``count`` generated non-digits (``ml.fitting.negatives``' families but numbers, which
    the site reads) come back as anything but a confident reading: unsure, not a digit, or
    refused; overall and per family. Read as the worker reads every upload, as a number."""
    families = tuple(family for family in FAMILIES if family != "number")
    uploads = negative_set(digits, count=count, seed=seed, families=families)
    results = [
        result
        for start in range(0, len(uploads), NUMBERS_BATCH)
        for result in read_numbers(predictor, [upload.data for upload in uploads[start : start + NUMBERS_BATCH]])
    ]
    caught, seen = Counter(), Counter()
    for upload, result in zip(uploads, results, strict=True):
        seen[upload.scenario] += 1
        caught[upload.scenario] += result.error is not None or result.verdict not in ("digit", "number")
    return {
        "caught": sum(caught.values()) / max(len(uploads), 1),
        "samples": len(uploads),
        "by_family": {family: caught[family] / seen[family] for family in seen},
        "seed": seed,
    }


def coverage_curves(predictor: Predictor, split: Split, *, realistic: int, seed: int) -> dict:
    """For the coverage/accuracy plot: the MNIST split and (with ``realistic``) that many
    realistic uploads made from it, each as (coverage, accuracy) by calibrated confidence and
    the point the verdicts reach (share answered "digit", their accuracy)."""
    sets = {"MNIST test": (to_model_array(split.images), split.labels.astype(int))}
    if realistic:
        uploads = realistic_set(split.images, split.labels, count=realistic, seed=seed)
        sets[f"realistic uploads ({realistic:,})"] = labelled_inputs(uploads)
    curves = {}
    for name, (x, labels) in sets.items():
        predictions = [p for i in range(0, len(x), 1000) for p in predictor.predict_arrays(x[i : i + 1000])]
        confidence = np.array([p.confidence for p in predictions])
        correct = np.array([p.digit for p in predictions]) == labels
        answered = np.array([p.verdict == "digit" for p in predictions])
        point = (float(answered.mean()), float(correct[answered].mean()) if answered.any() else 1.0)
        curves[name] = (*coverage_accuracy(confidence, correct), point)
    return curves


def _digits_right(truth: str, read: str) -> int:
    """Digits of ``truth`` read right: its length less the edit distance to ``read``, so that a
    digit missed or split in two costs one, not every digit after it."""
    previous = list(range(len(read) + 1))
    for i, expected in enumerate(truth, 1):
        current = [i]
        for j, got in enumerate(read, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (expected != got)))
        previous = current
    return max(len(truth) - previous[-1], 0)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    """The area two boxes (x, y, width, height) share."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(width, 0) * max(height, 0)


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    inter = _overlap(a, b)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


# Why a number came back with the wrong count of digits, as ``count_error_kinds`` tells them
# apart from the boxes read and the true ones.
COUNT_ERRORS = {
    "split": "a digit read as two (a broken stroke, a 1's or a 7's flag)",
    "extra": "a mark read as a digit where none was written (a speck, a ruling)",
    "merged": "two neighbours read as one (touching digits not cut)",
    "lost": "a digit not read at all (faint, or taken for a speck)",
}
# A box read lies on a true one where this share of its area lies inside it.
_ON_BOX = 0.4


def count_error_kinds(result, upload) -> list[str]:
    """The ``COUNT_ERRORS`` a reading of ``upload`` (a ``NumberResult``) shows, where it has
    the wrong count of digits: each box read matched to the true boxes it mostly lies on. A
    refusal, or a reading without boxes, is ``lost`` for every digit."""
    if len(result.number) == len(upload.number):
        return []
    read = [d.box for d in result.digits] if result.number else []
    if not read:
        return ["lost"]
    owners = [[n for n, true in enumerate(upload.boxes) if _inside(box, true) >= _ON_BOX] for box in read]
    kinds = []
    if any(not found for found in owners):
        kinds.append("extra")
    if any(sum(n in found for found in owners) >= 2 for n in range(len(upload.boxes))):
        kinds.append("split")
    if any(len(found) >= 2 for found in owners):
        kinds.append("merged")
    if any(not any(n in found for found in owners) for n in range(len(upload.boxes))):
        kinds.append("lost")
    return kinds or ["split" if len(result.number) > len(upload.number) else "merged"]


def _inside(box: tuple[int, int, int, int], true: tuple[int, int, int, int]) -> float:
    """The share of ``box``'s area that lies inside ``true``."""
    return _overlap(box, true) / max(box[2] * box[3], 1)


# Degrees askew of the numbers ``evaluate_numbers`` reports under ``askew``: a phone held at an
# angle over a meter or a receipt.
ASKEW_TURN = 25.0


def evaluate_numbers(
    predictor: Predictor, split: Split, *, count: int, seed: int = 0, batch: int = 32, real_dir: Path | None = None
) -> dict:
    """Numbers of 2 to 8 digits rendered from ``split``'s digits (``ml.fitting.synth.number_set``) read
    back: how many exactly, how many digits right, the numbers with touching digits apart, and
    how well the boxes found cover the true ones (where as many were found). Under
    ``real_writers``, the same for ``count`` numbers by load_digits' 43 real writers
    (``ml.fitting.synth.real_writer_number_set``): held out, never tuned on. Under ``papers``, the same
    for ``count`` numbers on plain, ruled and squared paper; under ``askew``, for the numbers
    photographed ``ASKEW_TURN`` degrees askew. Under ``real_digits``, for ``count`` numbers of
    the real digits of the folders under ``real_dir`` (``ml.fitting.real_digits``), as written
    and with each digit box-scanned, where the folders are found."""
    report = _numbers_report(predictor, number_set(split.images, split.labels, count=count, seed=seed), batch)
    real = _numbers_report(predictor, real_writer_number_set(count=count, seed=seed), batch)
    real_digits = {}
    for view, side in (("as written", None), (f"box {BOX_SIDE}x{BOX_SIDE}", BOX_SIDE)):
        uploads = real_digit_number_set(real_dir, count=count, seed=seed, box_side=side) if real_dir else []
        if uploads:
            real_digits[view] = {"numbers": count} | _numbers_report(predictor, uploads, batch)
    # The same numbers on plain, ruled and squared paper (photos, pencil, scans): the lines are
    # all that differs.
    papers = {
        paper: _numbers_report(
            predictor,
            number_set(split.images, split.labels, count=count, seed=seed, scenarios=RULED_SCENARIOS, paper=paper),
            batch,
        )
        for paper in PAPER_RULINGS
    }
    askew = _numbers_report(
        predictor, number_set(split.images, split.labels, count=count, seed=seed, turn=ASKEW_TURN), batch
    )
    return (
        {"numbers": count, "seed": seed}
        | report
        | {"real_writers": {"numbers": count, "seed": seed} | real}
        | {"papers": {paper: {"numbers": count} | result for paper, result in papers.items()}}
        | {"askew": {"numbers": count, "turn": ASKEW_TURN} | askew}
        | {"real_digits": real_digits}
    )


def _numbers_report(predictor: Predictor, uploads: list, batch: int) -> dict:
    count = len(uploads)
    results = [
        r for i in range(0, count, batch) for r in read_numbers(predictor, [u.data for u in uploads[i : i + batch]])
    ]
    exact = np.array([r.number == u.number for r, u in zip(results, uploads, strict=True)])
    touching = np.array([any(u.touching) for u in uploads])
    right = sum(_digits_right(u.number, r.number) for r, u in zip(results, uploads, strict=True))
    verdicts = Counter(r.verdict if r.error is None else "refused" for r in results)
    sure = np.array([r.verdict == "number" for r in results])
    ious = [
        _iou(d.box, box)
        for r, u in zip(results, uploads, strict=True)
        if len(r.digits) == len(u.boxes)
        for d, box in zip(r.digits, u.boxes, strict=True)
    ]
    count_errors = Counter(kind for r, u in zip(results, uploads, strict=True) for kind in count_error_kinds(r, u))
    by_scenario = {}
    for scenario in sorted({u.scenario for u in uploads}):
        chosen = np.array([u.scenario == scenario for u in uploads])
        by_scenario[scenario] = float(exact[chosen].mean())
    lengths = np.array([len(u.number) for u in uploads])
    return {
        "exact": float(exact.mean()),
        "by_length": {int(n): float(exact[lengths == n].mean()) for n in sorted(set(lengths))},
        "digit_accuracy": right / sum(len(u.number) for u in uploads),
        "touching_numbers": int(touching.sum()),
        "touching_exact": float(exact[touching].mean()) if touching.any() else None,
        "apart_exact": float(exact[~touching].mean()) if (~touching).any() else None,
        "digit_count_right": float(
            np.mean([len(r.number) == len(u.number) for r, u in zip(results, uploads, strict=True)])
        ),
        "count_errors": {kind: count_errors[kind] / count for kind in COUNT_ERRORS},
        "verdicts": {name: n / count for name, n in sorted(verdicts.items())},
        "sure": float(sure.mean()),
        "sure_exact": float(exact[sure].mean()) if sure.any() else None,
        "box_iou_median": float(np.median(ious)) if ious else None,
        "by_scenario": by_scenario,
        "misread": [
            (u.number, r.number or r.error, u.description)
            for r, u in zip(results, uploads, strict=True)
            if r.number != u.number
        ],
    }


def _mnist_pngs(split: Split, count: int) -> list[Upload]:
    from PIL import Image

    uploads = []
    for image, label in zip(split.images[:count], split.labels[:count], strict=True):
        out = io.BytesIO()
        Image.fromarray(image).save(out, "PNG")
        uploads.append(Upload(data=out.getvalue(), scenario="mnist_png", label=int(label), description="28x28 PNG"))
    return uploads


def single_digit_sets(split: Split, *, count: int, seed: int) -> dict[str, list[Upload]]:
    """Single digits as people send them, by kind: MNIST test digits as 28x28 PNGs, realistic
    uploads, each stand-in for other writers and scanners (``count`` of each) and scikit-learn's
    1,797 digits by 43 writers."""
    sets = {"mnist_png": _mnist_pngs(split, count)}
    sets["realistic"] = realistic_set(split.images, split.labels, count=count, seed=seed)
    sets |= {style: style_set(split.images, split.labels, style=style, count=count, seed=seed) for style in STYLES}
    sets["load_digits"] = load_digits_uploads()
    return sets


def evaluate_singles(
    predictor: Predictor, sets: dict[str, list[Upload]], *, batch: int = NUMBERS_BATCH
) -> dict[str, dict]:
    """Single digits read as the worker reads them (``read_numbers`` in ``auto``) beside the
    model's own reading (``predict_images``), per kind: how many come back as several digits,
    how many get the same digit both ways, and each way's accuracy."""
    report = {}
    for name, uploads in sets.items():
        blobs = [upload.data for upload in uploads]
        singles, autos = [], []
        for start in range(0, len(blobs), batch):
            singles += predictor.predict_images(blobs[start : start + batch])
            autos += read_numbers(predictor, blobs[start : start + batch])
        labels = [upload.label for upload in uploads]
        own = [s.prediction.digit if s.prediction else None for s in singles]
        worker = [a.digits[0].prediction.digit if a.error is None and len(a.digits) == 1 else None for a in autos]
        report[name] = {
            "samples": len(uploads),
            "several": sum(a.error is None and len(a.digits) > 1 for a in autos),
            "same_digit": sum(o == w for o, w in zip(own, worker, strict=True)) / len(uploads),
            "accuracy_single_path": sum(o == label for o, label in zip(own, labels, strict=True)) / len(uploads),
            "accuracy_worker_path": sum(w == label for w, label in zip(worker, labels, strict=True)) / len(uploads),
        }
    return report
