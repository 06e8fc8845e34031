import gzip

import numpy as np
import pytest

import ml.fitting.data
from ml.fitting.data import IMAGES_MAGIC, LABELS_MAGIC, MnistDataError, idx_bytes, load_mnist, load_split, parse_idx

CANONICAL_TRAIN_SHA256 = "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"


def write_split(directory, split, images, labels, *, gz=True):
    names = {
        "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }[split]
    for name, payload in zip(
        names, (idx_bytes(images, magic=IMAGES_MAGIC), idx_bytes(labels, magic=LABELS_MAGIC)), strict=True
    ):
        if gz:
            with gzip.open(directory / f"{name}.gz", "wb") as fh:
                fh.write(payload)
        else:
            (directory / name).write_bytes(payload)


@pytest.fixture
def small_files(tmp_path, monkeypatch):
    """IDX files of a few images, with the expected counts shrunk to match."""
    monkeypatch.setattr(
        "ml.fitting.data.FILES",
        {
            "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 6),
            "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 4),
        },
    )
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8), np.arange(6, dtype=np.uint8)
    test = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8), np.arange(4, dtype=np.uint8)
    write_split(tmp_path, "train", *train, gz=True)
    write_split(tmp_path, "test", *test, gz=False)
    return tmp_path, train, test


def test_loads_gzipped_and_plain_idx_files(small_files):
    directory, (train_x, train_y), (test_x, test_y) = small_files
    mnist = load_mnist(directory)
    np.testing.assert_array_equal(mnist.train.images, train_x)
    np.testing.assert_array_equal(mnist.train.labels, train_y)
    np.testing.assert_array_equal(mnist.test.images, test_x)
    np.testing.assert_array_equal(mnist.test.labels, test_y)
    assert mnist.train.sha256 != mnist.test.sha256


def test_wrong_magic_number_is_refused(small_files):
    directory, *_ = small_files
    raw = bytearray(gzip.decompress((directory / "train-images-idx3-ubyte.gz").read_bytes()))
    raw[3] = 0x01
    (directory / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(MnistDataError, match="magic number"):
        load_split(directory, "train")


def test_truncated_file_is_refused(small_files):
    directory, *_ = small_files
    raw = (directory / "t10k-images-idx3-ubyte").read_bytes()
    (directory / "t10k-images-idx3-ubyte").write_bytes(raw[:-100])
    with pytest.raises(MnistDataError, match="holds"):
        load_split(directory, "test")


def test_corrupt_gzip_is_refused(small_files):
    directory, *_ = small_files
    (directory / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(MnistDataError, match="cannot read"):
        load_split(directory, "train")


def test_count_mismatch_is_refused(small_files, monkeypatch):
    directory, *_ = small_files
    monkeypatch.setitem(ml.fitting.data.FILES, "test", ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10_000))
    with pytest.raises(MnistDataError, match="expected 10000"):
        load_split(directory, "test")


def test_missing_file_and_directory_are_named(tmp_path):
    with pytest.raises(MnistDataError, match="train-images-idx3-ubyte"):
        load_split(tmp_path, "train")
    with pytest.raises(MnistDataError, match="does not exist"):
        load_mnist(tmp_path / "nowhere")


def test_label_out_of_range_is_refused(tmp_path, small_files):
    directory, (train_x, _), _ = small_files
    write_split(directory, "train", train_x, np.array([0, 1, 2, 3, 4, 12], dtype=np.uint8))
    with pytest.raises(MnistDataError, match="not a digit"):
        load_split(directory, "train")


def test_header_shorter_than_declared_dimensions():
    with pytest.raises(MnistDataError, match="too short"):
        parse_idx(b"\x00\x00", expected_magic=IMAGES_MAGIC)
    with pytest.raises(MnistDataError, match="header truncated"):
        parse_idx(IMAGES_MAGIC.to_bytes(4, "big") + b"\x00\x00\x00\x01", expected_magic=IMAGES_MAGIC)


def test_canonical_mnist_loads_with_its_known_hash(mnist):
    assert mnist.train.images.shape == (60_000, 28, 28)
    assert mnist.test.images.shape == (10_000, 28, 28)
    assert mnist.train.sha256 == CANONICAL_TRAIN_SHA256
    assert sorted(np.unique(mnist.test.labels)) == list(range(10))


def test_a_holdout_is_the_last_training_images_and_never_among_the_learned(mnist):
    learned_images, learned_labels = mnist.training(5000)
    held_images, held_labels = mnist.held_out(5000)
    assert len(learned_images) == len(learned_labels) == 55_000 and len(held_images) == len(held_labels) == 5000
    assert np.array_equal(np.concatenate([learned_images, held_images]), mnist.train.images)
    assert np.array_equal(np.concatenate([learned_labels, held_labels]), mnist.train.labels)
    assert len(mnist.training()[0]) == 60_000 and len(mnist.held_out(0)[0]) == 0
    # Every digit is held out in about its share (MNIST's order is not sorted by digit).
    assert np.bincount(held_labels, minlength=10).min() >= 400
    with pytest.raises(ValueError, match="cannot hold out 60,000 of 60,000"):
        mnist.training(60_000)


def test_what_keeps_mnist_from_loading_is_said_without_loading_it(small_files, tmp_path_factory, monkeypatch):
    directory, _, _ = small_files
    assert ml.fitting.data.mnist_missing(directory) == ""  # gzipped or not
    (directory / "t10k-labels-idx1-ubyte").unlink()
    assert ml.fitting.data.mnist_missing(directory) == f"MNIST_DATA_DIR {directory} lacks t10k-labels-idx1-ubyte"
    assert ml.fitting.data.mnist_missing(directory / "nowhere").endswith("nowhere does not exist")
    # No directory: Keras' earlier download, where Keras keeps it.
    home = tmp_path_factory.mktemp("keras-home")
    monkeypatch.setenv("KERAS_HOME", str(home))
    assert ml.fitting.data.keras_download_path() == home / "datasets" / "mnist.npz"
    assert ml.fitting.data.mnist_missing(None) == f"no MNIST_DATA_DIR, and no earlier download in {home / 'datasets'}"
    (home / "datasets").mkdir()
    (home / "datasets" / "mnist.npz").write_bytes(b"kept by an earlier download")
    assert ml.fitting.data.mnist_missing(None) == ""
