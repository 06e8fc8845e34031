import pytest

from ml.tests.conftest import SHIPPED_MODEL_DIR, mnist, mnist_dir, tiny_model_dir  # noqa: F401


@pytest.fixture(autouse=True)
def _isolated_files(settings, tmp_path):
    """Uploads and trained models go to a temp dir; MNIST comes from the shared copy."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.TRAINED_MODELS_DIR = tmp_path / "models"
    settings.MNIST_DATA_DIR = str(mnist_dir())
    settings.SHIPPED_MODEL_DIR = SHIPPED_MODEL_DIR
