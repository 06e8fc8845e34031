"""What the offline commands do: MNIST, training, evaluation, calibration and reading files
(`train`, `train_lines`, `evaluate`, `calibrate`, `calibrate_numbers`, `predict`). Only commands import it: it
loads fitting code, which web processes and classifying workers never do."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

from classifier.services.versions import model_path_default
from ml.fitting.data import Mnist, load_mnist, mnist_missing
from ml.serving.artifacts import ModelBundle
from ml.serving.segment import AUTO

if TYPE_CHECKING:
    from ml.fitting.evaluation import EvaluationPlan


def mnist_load() -> Mnist:
    return load_mnist(settings.MNIST_DATA_DIR)


def mnist_missing_here() -> str:
    """What keeps this process from loading MNIST without a download ("" where nothing does):
    ``ml.fitting.data.mnist_missing`` of ``MNIST_DATA_DIR``."""
    return mnist_missing(settings.MNIST_DATA_DIR)


def model_train(
    *,
    arch: str,
    out_dir: Path | None = None,
    log: Callable[[str], None] = print,
    **recipe: int | bool | None,
):
    """Train ``arch`` with its recipe, changed by ``recipe`` (``TrainConfig`` fields: epochs,
    seed, train_limit, writers, members, plain_members, clean_epochs, holdout; None keeps the recipe's value)."""
    from ml.fitting.train import TrainConfig, train_model

    config = TrainConfig.for_arch(arch, **recipe)
    out = Path(out_dir) if out_dir else settings.TRAINED_MODELS_DIR / arch
    return train_model(mnist=mnist_load(), config=config, out_dir=out, log=log)


def line_reader_train(
    *,
    out_dir: Path | None = None,
    lines: int,
    validation: int,
    epochs: int,
    seed: int,
    workers: int,
    log: Callable[[str], None] = print,
) -> dict:
    """Fit the line reader (``ml.fitting.line_training``) on numbers rendered from MNIST's training
    digits, the rendered lines kept under ``TRAINED_MODELS_DIR/lines`` for the next run."""
    from ml.fitting.line_training import line_reader_fit

    mnist = mnist_load()
    out = Path(out_dir) if out_dir else settings.TRAINED_MODELS_DIR / "line_reader"
    return line_reader_fit(
        mnist.train.images,
        mnist.train.labels,
        out=out,
        lines=lines,
        validation=validation,
        epochs=epochs,
        seed=seed,
        workers=workers,
        cache=settings.TRAINED_MODELS_DIR / "lines",
        log=log,
    )


def model_evaluate(*, model_path: Path | None = None, plan: EvaluationPlan) -> dict:
    """Accuracy, loss, calibration error and verdicts on the MNIST test set, then what ``plan``
    asks for (``ml.fitting.evaluation.EvaluationPlan``: realistic uploads, the stand-ins and
    scikit-learn's 43 writers, generated non-digits, numbers, single digits of every kind read
    as the worker reads them, the coverage plot), of the model at ``model_path`` (default: the
    one serving)."""
    from ml.fitting.evaluation import evaluate_planned
    from ml.serving.inference import Predictor

    predictor = Predictor(model_path or model_path_default())
    report = evaluate_planned(predictor, mnist_load().test, plan, real_dir=settings.REAL_DIGITS_DIR)
    return {"model": str(predictor.model_path)} | report


def model_evaluate_real(
    *, model_path: Path | None = None, against: Path | None = None, plan: EvaluationPlan, record: bool = False
) -> dict:
    """Every real set we have and the stand-ins (``ml.fitting.choosing``), read by the model at
    ``model_path`` (default: the one serving), as many of each as ``plan`` says; with
    ``against``, read by that model too, each real set compared, and whether the first would
    ship in its place. With ``record``, the report is also written into the bundle's metadata
    (``real_evaluation``)."""
    from ml.fitting.choosing import evaluate_real
    from ml.serving.inference import Predictor

    predictor = Predictor(model_path or model_path_default())
    report = evaluate_real(
        predictor,
        mnist_load().test,
        real_dir=settings.REAL_DIGITS_DIR,
        plan=plan,
        against=Predictor(against) if against else None,
    )
    if record:
        bundle = ModelBundle.at(model_path)
        bundle.write_metadata(bundle.metadata() | {"real_evaluation": report})
    return report


def model_calibrate(
    *, model_path: Path | None = None, keep_detector: bool = False, log: Callable[[str], None] = print
) -> dict:
    """Fit the calibrated confidence of a model bundle again, on the training digits its
    metadata says it was never trained on, and its verdicts (a new detector, or with
    ``keep_detector`` the bundle's own, and the thresholds); record both in the bundle."""
    from ml.fitting.evaluation import calibrate_bundle
    from ml.fitting.reject import DETECTOR_DIGITS

    bundle = ModelBundle.at(model_path or model_path_default())
    metadata = bundle.metadata()
    if not metadata:
        raise FileNotFoundError(f"no model metadata at {bundle.metadata_path}")
    return calibrate_bundle(
        bundle.directory,
        mnist_load(),
        holdout=metadata.get("holdout", 0),
        seed=metadata.get("seed", 0),
        detector_digits=metadata.get("detector_digits", DETECTOR_DIGITS),
        keep_detector=keep_detector,
        log=log,
    )


def model_calibrate_numbers(
    *, model_path: Path | None = None, numbers: int, seed: int, log: Callable[[str], None] = print
) -> dict:
    """Fit how sure a model's whole numbers are (``ml.fitting.sureness``) on ``numbers`` numbers
    written with the training digits it never trained on, and keep it in its bundle
    (``numbers.json``). Returns what the fit recorded, with the level and the file."""
    from ml.fitting.sureness import fit_sureness
    from ml.serving.inference import Predictor

    bundle = ModelBundle.at(model_path or model_path_default())
    holdout = int(bundle.metadata().get("holdout", 0))
    if not holdout:
        raise ValueError(f"{bundle.directory} held no training digits out: nothing it never saw to fit on")
    predictor = Predictor(bundle.directory)
    sureness = fit_sureness(predictor, mnist_load(), holdout=holdout, count=numbers, seed=seed, log=log)
    path = sureness.save(bundle.directory)
    return sureness.fitted | {"sure_above": sureness.sure_above, "path": str(path)}


def image_files_predict(*, paths: list[Path], model_path: Path | None = None, reading: str = AUTO) -> list[dict]:
    """Read image files: one dict per file, in order, with an error or the reading: ``number``
    (the digits left to right) and ``digits`` (each digit's ``digit``, ``confidence``,
    ``probabilities`` and ``box`` on the image) for every image; for an image of one digit also
    the single-digit fields (``digit``, ``confidence``, ``probabilities``, ``verdict``, and
    ``reason`` when it is not a digit); for several, ``verdict`` (``number`` or ``unsure``, with
    its ``reason``), ``confidence``, that of the least sure digit, and ``number_confidence``, the
    calibrated probability that the whole number is right (None where the model has none). Each
    file is read as ``reading`` says, as the worker reads an upload
    (``ml.serving.segment.READINGS``); ``reading`` is in every dict."""
    from ml.serving.inference import Predictor
    from ml.serving.numbers import read_numbers

    blobs, read_errors = [], {}
    for index, path in enumerate(paths):
        try:
            blobs.append(Path(path).read_bytes())
        except OSError as exc:
            blobs.append(b"")
            read_errors[index] = f"cannot read the file: {exc.strerror or exc}"
    predictor = Predictor(model_path or model_path_default())
    results = read_numbers(predictor, blobs, [reading] * len(blobs))
    report = []
    for index, (path, result) in enumerate(zip(paths, results, strict=True)):
        head = {"file": str(path), "reading": reading}
        if index in read_errors:
            report.append(head | {"error": read_errors[index]})
        elif result.error is not None:
            report.append(head | {"error": result.error})
        elif result.prediction is not None:
            single = result.prediction.as_dict() | ({"reason": result.reason} if result.reason else {})
            report.append(head | single | result.as_dict() | {"verdict": result.verdict})
        else:
            least = min(digit.prediction.confidence for digit in result.digits)
            why = {"reason": result.reason} if result.reason else {}
            report.append(head | result.as_dict() | {"confidence": least} | why)
    return report
