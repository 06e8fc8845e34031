"""The only bridge between Django and ``ml``: typed, keyword-only services."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from django.conf import settings

from ml.data import Mnist, load_mnist


def mnist_load() -> Mnist:
    return load_mnist(settings.MNIST_DATA_DIR)


def model_train(
    *,
    arch: str,
    out_dir: Path | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    train_limit: int | None = None,
    log: Callable[[str], None] = print,
):
    from ml.train import TrainConfig, train_model

    config = TrainConfig.for_arch(arch, epochs=epochs, seed=seed, train_limit=train_limit)
    out = Path(out_dir) if out_dir else settings.TRAINED_MODELS_DIR / arch
    return train_model(mnist=mnist_load(), config=config, out_dir=out, log=log)


def model_path_default() -> Path:
    """The model that serves predictions: the shipped one (until versions exist)."""
    return settings.SHIPPED_MODEL_DIR


def model_evaluate(*, model_path: Path | None = None, realistic: int = 0, seed: int = 0) -> dict:
    """Accuracy and loss on the MNIST test set; with ``realistic``, also on that many
    realistic uploads rendered from the test set."""
    from ml.evaluation import evaluate_mnist, evaluate_realistic
    from ml.inference import Predictor

    predictor = Predictor(model_path or model_path_default())
    test = mnist_load().test
    report = {"model": str(predictor.model_path)} | evaluate_mnist(predictor, test)
    if realistic:
        report["realistic"] = evaluate_realistic(predictor, test, count=realistic, seed=seed)
    return report


def image_files_predict(*, paths: list[Path], model_path: Path | None = None) -> list[dict]:
    """Classify image files: one dict per file, in order, with the prediction or an error."""
    from ml.inference import Predictor

    blobs, read_errors = [], {}
    for index, path in enumerate(paths):
        try:
            blobs.append(Path(path).read_bytes())
        except OSError as exc:
            blobs.append(b"")
            read_errors[index] = f"cannot read the file: {exc.strerror or exc}"
    predictor = Predictor(model_path or model_path_default())
    results = predictor.predict_images(blobs)
    report = []
    for index, (path, result) in enumerate(zip(paths, results, strict=True)):
        if index in read_errors:
            report.append({"file": str(path), "error": read_errors[index]})
        elif result.prediction is None:
            report.append({"file": str(path), "error": result.error})
        else:
            report.append({"file": str(path)} | result.prediction.as_dict())
    return report
