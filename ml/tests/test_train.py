import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from ml.fitting.augment import augment_batch, writer_variants
from ml.fitting.train import TrainConfig
from ml.serving.artifacts import (
    CONFUSION_FILE,
    CURVES_FILE,
    METADATA_FILE,
    MODEL_FILE,
    confusion_matrix,
    to_model_array,
)


def test_training_writes_model_metadata_and_plots(tiny_model_dir, mnist):
    for name in (MODEL_FILE, METADATA_FILE, CURVES_FILE, CONFUSION_FILE):
        assert (tiny_model_dir / name).is_file(), name
    metadata = json.loads((tiny_model_dir / METADATA_FILE).read_text())
    assert metadata["architecture"] == "basic"
    assert metadata["epochs"] == 1
    assert metadata["seed"] == 42
    assert metadata["train_samples"] == 3000
    assert metadata["train_data_sha256"] == mnist.train.sha256
    assert metadata["training_seconds"] > 0
    # Even a few seconds of training beats chance by far.
    assert 0.5 < metadata["test_accuracy"] <= 1.0
    assert metadata["test_loss"] > 0
    matrix = np.array(metadata["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 500
    assert np.trace(matrix) / matrix.sum() == pytest.approx(metadata["test_accuracy"], abs=1e-6)
    assert len(metadata["history"]["loss"]) == 1
    with Image.open(tiny_model_dir / CURVES_FILE) as curves:
        assert curves.format == "PNG" and curves.width > 400


@pytest.mark.slow  # trains: `make test-fast` leaves it out
def test_progress_is_reported_per_epoch(tmp_path, mnist):
    from ml.fitting.train import train_model

    lines = []
    config = TrainConfig.for_arch("dense", epochs=2, train_limit=1000, test_limit=200)
    train_model(mnist=mnist, config=config, out_dir=tmp_path, log=lines.append)
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert [line.split()[1] for line in epoch_lines] == ["1/2", "2/2"]
    assert all("test_acc" in line for line in epoch_lines)
    assert lines[-1].startswith("test accuracy")


def test_recipes_and_overrides():
    deep = TrainConfig.for_arch("deep")
    assert deep.augment and deep.schedule == "cosine"
    quick = TrainConfig.for_arch("deep", epochs=3, seed=None)
    assert quick.epochs == 3 and quick.clean_epochs == 3  # the recipe's clean finish, cut to fit
    assert TrainConfig.for_arch("deep", seed=None).seed == 42
    with pytest.raises(ValueError, match="unknown architecture"):
        TrainConfig.for_arch("resnet")


def test_augmentation_keeps_shape_range_and_the_digit(mnist):
    batch = to_model_array(mnist.train.images[:64])
    augmented = np.asarray(augment_batch(batch))
    assert augmented.shape == batch.shape
    assert augmented.min() >= 0 and augmented.max() <= 1.0 + 1e-6
    # Changed, but still mostly the same picture: a small affine move, not a new image.
    assert not np.allclose(augmented, batch)
    similarity = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(augmented, batch, strict=True)]
    assert np.median(similarity) > 0.5


def test_elastic_distortion_keeps_each_image_its_own_inside_tf_data(mnist):
    """Traced as the training pipeline traces it (batch size unknown): every image is moved
    a pixel or two, never replaced by another of the batch."""
    import tensorflow as tf

    from ml.fitting.augment import _random_elastic

    tf.random.set_seed(0)  # the field is random: the same one every run
    batch = to_model_array(mnist.train.images[:64])
    distorted = next(iter(tf.data.Dataset.from_tensor_slices(batch).batch(64).map(_random_elastic))).numpy()
    assert distorted.shape == batch.shape and not np.allclose(distorted, batch)
    similarity = np.corrcoef(distorted.reshape(64, -1), batch.reshape(64, -1))[:64, 64:]
    # Each distorted image looks more like its own original than like a typical other one.
    assert (np.diag(similarity) > np.median(similarity, axis=1)).mean() >= 0.95
    assert len({image.tobytes() for image in distorted}) == 64


def test_writer_augmentation_keeps_shapes_and_mostly_the_picture(mnist):
    batch = to_model_array(mnist.train.images[:64])
    augmented = np.asarray(augment_batch(batch, writers=True))
    assert augmented.shape == batch.shape
    assert augmented.min() >= 0 and augmented.max() <= 1.0 + 1e-6
    similarity = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(augmented, batch, strict=True)]
    assert np.median(similarity) > 0.4


def test_a_form_scan_fills_the_box_both_ways_in_ink_or_paper():
    """A thin upright 1, as a box-filling scanner stores it: as wide as the 20 px box."""
    from ml.fitting.augment import form_scan

    one = np.zeros((1, 28, 28, 1), np.float32)
    one[0, 4:24, 13:15] = 1.0  # 20 tall, 2 wide
    one[0, 4:7, 10:13] = 1.0  # a short flag to the left
    scanned = np.asarray(form_scan(one))[0, ..., 0]
    columns = np.flatnonzero(scanned.max(axis=0) > 0.5)
    rows = np.flatnonzero(scanned.max(axis=1) > 0.5)
    assert columns[-1] - columns[0] >= 17 and rows[-1] - rows[0] >= 17  # filled, not 5 px wide
    # Ink or paper on a coarse grid, brought back with smooth edges: mostly 0 or 1.
    assert ((scanned < 0.05) | (scanned > 0.95)).mean() > 0.7
    # The scan of an empty image is empty.
    assert np.asarray(form_scan(np.zeros((1, 28, 28, 1), np.float32))).max() == 0


def test_form_scans_stay_through_the_clean_epochs_and_only_with_the_writers(mnist):
    """augment_batch(scanners=True) scans a share of the batch on its own; the fit loop asks
    for it whenever the recipe has the writer augmentation, clean epochs included."""
    import inspect

    from ml.fitting import loop as fitting

    batch = to_model_array(mnist.train.images[:256])
    scanned = np.asarray(augment_batch(batch, scanners=True))
    plain = np.asarray(augment_batch(batch))
    # Scanned digits are wider: more columns hold ink on average than in the plain batch.
    width = lambda images: (images.max(axis=1) > 0.5).sum(axis=(1, 2)).mean()  # noqa: E731
    assert width(scanned) > width(plain) + 0.3
    assert "scanners=writers" in inspect.getsource(fitting.fit)


def test_writer_variants_add_flagged_ones_and_crossed_sevens(mnist):
    images, labels = mnist.train.images[:3000], mnist.train.labels[:3000]
    extra, extra_labels = writer_variants(images, labels, seed=0)
    ones, sevens = (labels == 1).sum(), (labels == 7).sum()
    assert set(np.unique(extra_labels)) == {1, 7}
    assert (extra_labels == 1).sum() == int(ones * 0.3) and (extra_labels == 7).sum() == int(sevens * 0.3)
    assert extra.shape[1:] == (28, 28) and extra.dtype == np.uint8
    # Each variant is a digit of the set with ink added, never removed.
    originals = images[labels == 7]
    crossed = extra[extra_labels == 7][0].astype(int)
    closest = originals[np.argmin([np.abs(crossed - o.astype(int)).sum() for o in originals])].astype(int)
    assert (crossed >= closest - 40).all() and (crossed > closest + 60).sum() >= 5


def test_writer_augmentation_is_a_choice_the_metadata_records():
    assert TrainConfig.for_arch("deep").writers  # the recipe of the shipped model
    assert not TrainConfig.for_arch("deep", writers=False).writers
    assert not TrainConfig.for_arch("deeper").writers


@pytest.mark.slow  # trains: `make test-fast` leaves it out
def test_a_clean_finish_trains_the_last_epochs_without_the_writer_augmentation(tmp_path, mnist):
    from ml.fitting.train import train_model

    assert TrainConfig.for_arch("deep").clean_epochs == 5  # the recipe of the shipped model
    with pytest.raises(ValueError, match="clean epochs"):
        TrainConfig.for_arch("dense", epochs=2, clean_epochs=3)
    lines = []
    config = TrainConfig.for_arch("dense", epochs=2, clean_epochs=1, writers=True, train_limit=1000, test_limit=200)
    train_model(mnist=mnist, config=config, out_dir=tmp_path, log=lines.append)

    metadata = json.loads((tmp_path / METADATA_FILE).read_text())
    assert metadata["clean_epochs"] == 1 and metadata["writers"] is True
    assert all(len(values) == 2 for values in metadata["history"].values())
    # One run as far as the log can tell: the second phase goes on counting the epochs.
    assert [line.split()[1] for line in lines if line.startswith("epoch ")] == ["1/2", "2/2"]


@pytest.mark.slow  # trains: `make test-fast` leaves it out
def test_a_holdout_is_never_trained_on_and_the_metadata_records_it(tmp_path, mnist):
    from ml.fitting.train import train_model

    with pytest.raises(ValueError, match="held-out images"):
        TrainConfig.for_arch("dense", holdout=-1)
    lines = []
    config = TrainConfig.for_arch("dense", epochs=1, holdout=300, train_limit=1000, detector_digits=0, test_limit=200)
    train_model(mnist=mnist, config=config, out_dir=tmp_path, log=lines.append)
    metadata = json.loads((tmp_path / METADATA_FILE).read_text())
    assert metadata["holdout"] == 300 and metadata["train_samples"] == 1000
    assert any("1,000 images (300 more held out)" in line for line in lines)


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    matrix = confusion_matrix(np.array([1, 1, 2, 3]), np.array([1, 7, 2, 3]))
    assert matrix[1, 1] == 1 and matrix[1, 7] == 1 and matrix[2, 2] == 1 and matrix[3, 3] == 1
    assert matrix.sum() == 4


@pytest.mark.slow  # trains: `make test-fast` leaves it out
def test_an_ensemble_trains_each_member_and_serves_their_mean(tmp_path, mnist):
    from ml.fitting.train import train_model
    from ml.serving.architectures import members_of
    from ml.serving.inference import Predictor

    lines = []
    config = TrainConfig.for_arch("dense", epochs=1, members=2, train_limit=1000, test_limit=200)
    # The first member was trained before (a run that stopped): it is kept, not trained again.
    train_model(mnist=mnist, config=replace(config, members=1), out_dir=tmp_path / "members" / "seed-42", log=print)
    first = json.loads((tmp_path / "members" / "seed-42" / METADATA_FILE).read_text())
    result = train_model(mnist=mnist, config=config, out_dir=tmp_path, log=lines.append)

    metadata = json.loads((tmp_path / METADATA_FILE).read_text())
    assert metadata["member_models"][0]["seed"] == 42 and metadata["member_models"][1]["seed"] == 43
    assert metadata["member_models"][0]["history"] == first["history"]
    assert sum(1 for line in lines if line.startswith("epoch ")) == 1  # only the second member trained
    assert any("trained before to the same recipe" in line for line in lines)
    assert metadata["training_seconds"] == pytest.approx(
        sum(m["training_seconds"] for m in metadata["member_models"]), abs=0.2
    )
    for name in (MODEL_FILE, CURVES_FILE, CONFUSION_FILE):
        assert (tmp_path / name).is_file(), name
    for member in metadata["member_models"]:
        directory = tmp_path / member["path"]
        assert (directory / METADATA_FILE).is_file() and (directory / CURVES_FILE).is_file()

    predictor = Predictor(tmp_path)
    members = members_of(predictor.model)
    assert len(members) == 2
    batch = to_model_array(mnist.test.images[:200])
    mean = np.mean([member.predict(batch, verbose=0) for member in members], axis=0)
    np.testing.assert_allclose(predictor.probabilities(batch), mean, atol=1e-6)
    assert (predictor.probabilities(batch).argmax(axis=1) == mnist.test.labels[:200]).mean() == pytest.approx(
        result.test_accuracy
    )


def test_a_thin_one_is_stretched_towards_its_box_and_keeps_its_height():
    """Form scanners store a digit stretched to fill a square box: a 1 as wide as it is tall."""
    import tensorflow as tf

    from ml.fitting.augment import _stretched_to_box

    one = np.zeros((1, 28, 28, 1), np.float32)
    one[0, 4:24, 13:15] = 1.0  # 20 tall, 2 wide
    out = _stretched_to_box(tf.constant(one)).numpy()[0, ..., 0] > 0.3
    columns, rows = np.flatnonzero(out.any(axis=0)), np.flatnonzero(out.any(axis=1))
    assert columns.max() - columns.min() + 1 >= 4  # at least twice as wide: 0.6 of the way at the least
    assert rows.min() == 4 and rows.max() == 23  # as tall as before
    # A digit already as wide as tall is left as it is.
    square = np.zeros((1, 28, 28, 1), np.float32)
    square[0, 4:24, 4:24] = 1.0
    assert np.allclose(_stretched_to_box(tf.constant(square)).numpy(), square, atol=1e-5)


def test_a_binary_scan_keeps_ink_or_paper_and_drops_faint_strokes():
    import tensorflow as tf

    from ml.fitting.augment import BINARY_THRESHOLDS, _binary_scan

    images = np.zeros((8, 28, 28, 1), np.float32)
    images[:, 4:24, 10:18] = 1.0  # ink
    images[:, 4:24, 20:22] = BINARY_THRESHOLDS[0] / 2  # fainter than any threshold: paper
    out = _binary_scan(tf.constant(images)).numpy()
    assert out[:, 8:20, 12:16].min() > 0.9  # the ink's middle stays ink
    assert out[:, :, 21:23].max() < 0.05  # the faint stroke is gone


def test_plain_members_must_be_among_the_members():
    with pytest.raises(ValueError, match="plain members must be between 0 and the members"):
        TrainConfig.for_arch("deep", members=2, plain_members=3)


@pytest.mark.slow  # trains: `make test-fast` leaves it out
def test_plain_members_train_without_the_writer_augmentation(tmp_path, mnist):
    """A mixed ensemble: the first member learns MNIST alone, the second with the writer
    augmentation; each says so in the metadata, with the augmentation it was trained with."""
    from ml.fitting.augment import AUGMENTATION
    from ml.fitting.train import train_model

    lines = []
    config = TrainConfig.for_arch(
        "dense", epochs=1, members=2, plain_members=1, writers=True, train_limit=500, test_limit=200
    )
    train_model(mnist=mnist, config=config, out_dir=tmp_path, log=lines.append)
    metadata = json.loads((tmp_path / METADATA_FILE).read_text())
    assert [m["writers"] for m in metadata["member_models"]] == [False, True]
    assert metadata["plain_members"] == 1 and metadata["augmentation"] == AUGMENTATION
    members = [json.loads((tmp_path / m["path"] / METADATA_FILE).read_text()) for m in metadata["member_models"]]
    assert members[0]["train_samples"] == 500  # no writer variants added
    assert members[1]["train_samples"] > 500
    assert any("MNIST only" in line for line in lines) and any("with the writer augmentation" in line for line in lines)


@pytest.mark.slow  # trains: `make test-fast` leaves it out
def test_a_student_learns_from_a_teacher_and_is_saved_alone(tmp_path, mnist, tiny_model_dir):
    """Distillation: the student trains on the teacher's softened answers beside the labels;
    what is saved and served is the student alone, and the metadata names its teacher."""
    from ml.fitting.train import train_model
    from ml.serving.inference import Predictor

    lines = []
    config = TrainConfig.for_arch("dense", epochs=1, train_limit=2000, test_limit=500, teacher=str(tiny_model_dir))
    result = train_model(mnist=mnist, config=config, out_dir=tmp_path, log=lines.append)
    metadata = json.loads((tmp_path / METADATA_FILE).read_text())
    assert metadata["teacher"] == str(tiny_model_dir)
    assert any(line.startswith("distilled from") for line in lines)
    predictor = Predictor(tmp_path)
    assert predictor.model.count_params() == metadata["parameters"]  # the student only, no teacher inside
    assert result.test_accuracy > 0.5  # one epoch on 2,000 digits: it learned (chance is 0.1)
