"""Training: a run's configuration (``TrainConfig``, from its architecture's recipe in
``ml.serving.architectures``), metrics, plots (augmentation in ``ml.fitting.augment``, the
fitting loop in ``ml.fitting.loop``).

``train_model`` writes a model bundle (``ml.serving.artifacts.ModelBundle``): the model, its
metadata (see ``bundle_metadata``), training curves and the MNIST test confusion matrix.
Kept whole: an ensemble's members are trained by the one-model path, and both
are scored and written by the same steps, so the halves apart would import each other.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ml.fitting.augment import AUGMENTATION, writer_variants
from ml.fitting.data import Mnist
from ml.fitting.evaluation import calibrate_bundle
from ml.fitting.loop import DISTIL_TEMPERATURE, DISTIL_WEIGHT, Distiller, fit
from ml.fitting.plots import write_bundle_plots
from ml.fitting.reject import DETECTOR_DIGITS
from ml.serving.architectures import architecture, build, ensemble
from ml.serving.artifacts import ModelBundle, confusion_matrix, to_model_array


@dataclass(frozen=True)
class TrainConfig:
    arch: str
    epochs: int
    batch_size: int
    learning_rate: float
    augment: bool
    schedule: str
    writers: bool = False
    members: int = 1
    plain_members: int = 0
    clean_epochs: int = 0
    holdout: int = 0
    # Which augmentation (``ml.fitting.augment.AUGMENTATION``): recorded, so that a member trained with
    # another is not taken for this recipe's.
    augmentation: int = AUGMENTATION
    # A model bundle to learn from as well as from the labels (``ml.fitting.loop.Distiller``): an
    # ensemble too costly to serve, distilled into a model that costs what one member does.
    teacher: str | None = None
    # With a holdout: the reject option's detector learns from this many training digits.
    detector_digits: int = DETECTOR_DIGITS
    seed: int = 42
    # Train on the first N training images only (tests and quick experiments).
    train_limit: int | None = None
    test_limit: int | None = None

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"the epochs must be at least 1, not {self.epochs}")
        if self.members < 1:
            raise ValueError(f"an ensemble needs at least 1 member, not {self.members}")
        if not 0 <= self.plain_members <= self.members:
            raise ValueError(
                f"the plain members must be between 0 and the members ({self.members}), not {self.plain_members}"
            )
        if self.detector_digits < 0:
            raise ValueError(f"the detector's digits cannot be fewer than 0, not {self.detector_digits}")
        if self.holdout < 0:
            raise ValueError(f"the held-out images cannot be fewer than 0, not {self.holdout}")
        if not 0 <= self.clean_epochs <= self.epochs:
            raise ValueError(
                f"the clean epochs must be between 0 and the number of epochs ({self.epochs}), not {self.clean_epochs}"
            )

    @classmethod
    def for_arch(cls, arch: str, **overrides) -> TrainConfig:
        recipe = architecture(arch).recipe
        given = {k: v for k, v in overrides.items() if v is not None}
        values = asdict(recipe) | given
        if "clean_epochs" not in given:
            # Fewer epochs than the recipe's clean finish (a quick run): all of them clean-finish.
            values["clean_epochs"] = min(values["clean_epochs"], values["epochs"])
        return cls(arch=arch, **values)


@dataclass
class TrainResult:
    out_dir: Path
    test_accuracy: float
    test_loss: float
    training_seconds: float
    metadata: dict = field(repr=False)


# --- Training -----------------------------------------------------------------------------


def _optimizer(config: TrainConfig, steps_per_epoch: int):
    if config.schedule == "cosine":
        total = steps_per_epoch * config.epochs
        warmup = min(steps_per_epoch, total // 2)
        learning_rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=config.learning_rate / 10,
            decay_steps=max(total - warmup, 1),
            alpha=1e-3,
            warmup_target=config.learning_rate,
            warmup_steps=warmup,
        )
    else:
        learning_rate = config.learning_rate
    return keras.optimizers.Adam(learning_rate=learning_rate)


def train_model(
    *,
    mnist: Mnist,
    config: TrainConfig,
    out_dir: str | Path,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train the model ``config`` describes (an ensemble when it has several members) and write
    its bundle to ``out_dir``; with a holdout, calibrate its confidence on those digits."""
    if config.members > 1:
        result = _train_ensemble(mnist=mnist, config=config, out=Path(out_dir), log=log)
    else:
        result = _train_one(mnist=mnist, config=config, out_dir=out_dir, log=log)
    if config.holdout:
        calibrate_bundle(
            result.out_dir,
            mnist,
            holdout=config.holdout,
            seed=config.seed,
            detector_digits=config.detector_digits,
            log=log,
        )
        result.metadata = ModelBundle(result.out_dir).metadata()
    return result


def _scores(model, x_test: np.ndarray, y_test: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Test accuracy, cross-entropy loss and confusion matrix: one pass, one way for a model
    and an ensemble alike."""
    probabilities = model.predict(x_test, batch_size=1000, verbose=0)
    picked = probabilities[np.arange(len(y_test)), y_test]
    predicted = probabilities.argmax(axis=1)
    loss = float(-np.log(np.clip(picked, 1e-7, 1.0)).mean())
    return float((predicted == y_test).mean()), loss, confusion_matrix(y_test, predicted)


def _recipe(config: TrainConfig) -> dict:
    return {k: v for k, v in asdict(config).items() if k not in ("arch", "test_limit")}


MEMBERS_DIR = "members"


def _test_set(mnist: Mnist, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    images, labels = mnist.test.images[: config.test_limit], mnist.test.labels[: config.test_limit]
    return to_model_array(images), labels.astype("int32")


def _train_ensemble(*, mnist: Mnist, config: TrainConfig, out: Path, log: Callable[[str], None]) -> TrainResult:
    """Each member trained on its own (its own seed, model, curves and confusion matrix under
    ``members/seed-N``), then one model that averages them. A member already trained to the
    same recipe and data (by a run that was stopped, or for an ensemble with fewer members) is
    taken as it is. The members' own model files stay for that; the ensemble's file holds all
    their weights, so only it is needed to serve."""
    members = [_ensemble_member(mnist, config, number, out, log) for number in range(1, config.members + 1)]
    model = ensemble(
        [keras.saving.load_model(ModelBundle(member.out_dir).model_path, compile=False) for member in members],
        name=config.arch,
    )
    result = _written(
        model,
        config=config,
        mnist=mnist,
        out=out,
        test=_test_set(mnist, config),
        train_count=members[0].metadata["train_samples"],
        training_seconds=sum(member.training_seconds for member in members),
        history={},
        plots={
            "history": {f"seed {member.metadata['seed']}": member.metadata["history"] for member in members},
            "title": f"{config.arch} CNN ensemble of {config.members} on MNIST (each member)",
            "name": f"{config.arch} ensemble",
        },
        more={"member_models": [_member_record(member, out) for member in members]},
    )
    log(
        f"ensemble of {config.members}: test accuracy {result.test_accuracy:.4%}  test loss {result.test_loss:.4f}  "
        f"members trained in {result.training_seconds:.0f}s  -> {out}"
    )
    return result


def _ensemble_member(
    mnist: Mnist, config: TrainConfig, number: int, out: Path, log: Callable[[str], None]
) -> TrainResult:
    """Member ``number`` (from 1) of the ensemble ``config`` describes: trained, or kept from
    a run before."""
    writers = config.writers and number > config.plain_members
    member = replace(
        config,
        members=1,
        plain_members=0,
        seed=config.seed + number - 1,
        writers=writers,
        clean_epochs=config.clean_epochs if writers else 0,
    )
    member_out = out / MEMBERS_DIR / f"seed-{member.seed}"
    kind = "with the writer augmentation" if writers else "MNIST only" if config.writers else ""
    log(f"ensemble member {number}/{config.members} (seed {member.seed}) {kind} -> {member_out}".replace("  ", " "))
    return _trained_before(member, member_out, mnist, log) or _train_one(
        mnist=mnist, config=member, out_dir=member_out, log=log
    )


def _member_record(member: TrainResult, out: Path) -> dict:
    """What the ensemble's metadata says of one member: how it was made, how good it is, where."""
    kept = ("seed", "writers", "training_seconds", "test_accuracy", "test_loss")
    return (
        {key: member.metadata.get(key) for key in kept}
        | {"history": member.metadata["history"]}
        | {"path": str(member.out_dir.relative_to(out))}
    )


def _trained_before(config: TrainConfig, out: Path, mnist: Mnist, log: Callable[[str], None]) -> TrainResult | None:
    bundle = ModelBundle(out)
    metadata = bundle.metadata()
    if not bundle.model_path.is_file() or not metadata:
        return None
    # A field the bundle does not record did not exist when it was trained: it had the default.
    defaults = {f.name: f.default for f in fields(TrainConfig)} | {"augmentation": 1}  # the first, unrecorded
    recorded = {key: metadata.get(key, defaults.get(key)) for key in _recipe(config)}
    same = recorded == _recipe(config) and (
        metadata.get("architecture") == config.arch
        and metadata.get("train_data_sha256") == mnist.train.sha256
        and metadata.get("test_samples") == len(mnist.test.images[: config.test_limit])
    )
    if not same:
        return None
    log(f"  trained before to the same recipe: test accuracy {metadata['test_accuracy']:.4%}, kept")
    return TrainResult(
        out_dir=out,
        test_accuracy=metadata["test_accuracy"],
        test_loss=metadata["test_loss"],
        training_seconds=metadata["training_seconds"],
        metadata=metadata,
    )


def _train_one(
    *,
    mnist: Mnist,
    config: TrainConfig,
    out_dir: str | Path,
    log: Callable[[str], None],
) -> TrainResult:
    out = Path(out_dir)
    if out.exists() and (out / MEMBERS_DIR).is_dir():
        shutil.rmtree(out / MEMBERS_DIR)  # an ensemble's leftovers do not describe this model
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    x_train, y_train = _training_set(mnist, config)
    test = _test_set(mnist, config)
    model = build(config.arch)
    steps_per_epoch = math.ceil(len(x_train) / config.batch_size)
    trained = _compiled(model, config, steps_per_epoch, log)
    log(_plan(config, model, len(x_train), steps_per_epoch))
    # The test set is only watched (curves), never used to choose anything during training.
    history, training_seconds = fit(
        trained,
        x_train,
        y_train,
        epochs=config.epochs,
        batch_size=config.batch_size,
        augment=config.augment,
        seed=config.seed,
        log=log,
        writers=config.writers,
        clean_epochs=config.clean_epochs,
        validation_data=test,
    )
    result = _written(
        model,
        config=config,
        mnist=mnist,
        out=out,
        test=test,
        train_count=len(x_train),
        training_seconds=training_seconds,
        history=history,
        plots={"history": history, "title": f"{config.arch} CNN on MNIST", "name": config.arch},
    )
    log(
        f"test accuracy {result.test_accuracy:.4%}  test loss {result.test_loss:.4f}  "
        f"trained in {training_seconds:.0f}s  -> {out}"
    )
    return result


def _training_set(mnist: Mnist, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """The images trained on: the training split but the holdout, cut to ``train_limit``, and
    with ``writers`` their other writers' variants."""
    images, labels = mnist.training(config.holdout)
    images, labels = images[: config.train_limit], labels[: config.train_limit]
    if config.writers:
        extra_images, extra_labels = writer_variants(images, labels, seed=config.seed)
        images = np.concatenate([images, extra_images])
        labels = np.concatenate([labels, extra_labels])
    return to_model_array(images), labels.astype("int32")


def _compiled(model: keras.Model, config: TrainConfig, steps_per_epoch: int, log: Callable[[str], None]):
    """``model`` compiled to train, or with a ``teacher`` the ``Distiller`` that trains it."""
    trained = model
    if config.teacher:
        teacher = keras.saving.load_model(ModelBundle.at(Path(config.teacher)).model_path, compile=False)
        trained = Distiller(model, teacher, temperature=DISTIL_TEMPERATURE, weight=DISTIL_WEIGHT)
        log(f"distilled from {config.teacher} (temperature {DISTIL_TEMPERATURE}, weight {DISTIL_WEIGHT})")
    trained.compile(
        optimizer=_optimizer(config, steps_per_epoch),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return trained


def _plan(config: TrainConfig, model: keras.Model, images: int, steps_per_epoch: int) -> str:
    return (
        f"training {config.arch}: {model.count_params():,} parameters, {images:,} images"
        + (f" ({config.holdout:,} more held out)" if config.holdout else "")
        + ", "
        f"{config.epochs} epochs of {steps_per_epoch} steps, augment={config.augment}"
        + (
            f", the last {config.clean_epochs} without the writer augmentation"
            if config.writers and config.clean_epochs
            else ""
        )
    )


def _written(
    model: keras.Model,
    *,
    config: TrainConfig,
    mnist: Mnist,
    out: Path,
    test: tuple[np.ndarray, np.ndarray],
    train_count: int,
    training_seconds: float,
    history: dict[str, list[float]],
    plots: dict,
    more: dict | None = None,
) -> TrainResult:
    """A trained model (one, or an ensemble) scored on the ``test`` set and written as a
    bundle: the model, its metadata (and ``more``), its curves (``plots``: the history, title
    and name ``write_bundle_plots`` draws) and its confusion matrix."""
    test_accuracy, test_loss, matrix = _scores(model, *test)
    bundle = ModelBundle(out)
    model.save(bundle.model_path)
    metadata = bundle_metadata(
        architecture=config.arch,
        model=model,
        recipe=_recipe(config),
        mnist=mnist,
        train_count=train_count,
        test_count=len(test[0]),
        training_seconds=training_seconds,
        test_loss=test_loss,
        test_accuracy=test_accuracy,
        matrix=matrix,
        history=history,
    ) | (more or {})
    bundle.write_metadata(metadata)
    write_bundle_plots(bundle, matrix=matrix, **plots)
    return TrainResult(
        out_dir=out,
        test_accuracy=test_accuracy,
        test_loss=test_loss,
        training_seconds=training_seconds,
        metadata=metadata,
    )


def bundle_metadata(
    *,
    architecture: str,
    model: keras.Model,
    recipe: dict,
    mnist: Mnist,
    train_count: int,
    test_count: int,
    training_seconds: float,
    test_loss: float,
    test_accuracy: float,
    matrix: np.ndarray,
    history: dict[str, list[float]],
) -> dict:
    """What a bundle's metadata.json records, for training and fine-tuning alike: how it was
    made (``recipe``: epochs, batch size, learning rate, schedule, augmentation, seed, and
    whatever else the run adds), on what data, and how good it is."""
    return {
        "architecture": architecture,
        "parameters": int(model.count_params()),
        **recipe,
        "train_samples": train_count,
        "test_samples": test_count,
        "train_data_sha256": mnist.train.sha256,
        "test_data_sha256": mnist.test.sha256,
        "training_seconds": round(training_seconds, 1),
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        "confusion_matrix": np.asarray(matrix).tolist(),
        "history": history,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
        },
    }
