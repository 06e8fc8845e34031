"""The model bundle and the layout of ml/: serving never pulls in training or TensorFlow early."""

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np

from ml.artifacts import ModelBundle, confusion_matrix, to_model_array

ML = Path(__file__).resolve().parents[1]


def test_importing_the_artifacts_does_not_import_tensorflow():
    code = "import sys, ml.artifacts; print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ML.parent, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def _imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_only_training_imports_the_training_module():
    """Serving (inference, evaluation, explanations, preprocessing) must not pull in training;
    fine-tuning (ml/retrain.py) is training and builds on it, and so does the detector's own
    training in ml/reject.py (inside ``train_detector``, which serving never calls)."""
    importers = sorted(path.name for path in ML.glob("*.py") if "ml.train" in _imports_of(path))
    assert importers == ["reject.py", "retrain.py"]
    module_level = {
        node.module
        for node in ast.parse((ML / "reject.py").read_text()).body
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert "ml.train" not in module_level


def test_serving_does_not_load_the_training_module():
    code = (
        "import sys, ml.inference, ml.evaluation, ml.explain, ml.preprocessing, ml.reject; "
        "print('ml.train' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ML.parent, capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_a_bundle_knows_its_files_and_round_trips_its_metadata(tmp_path):
    bundle = ModelBundle(tmp_path / "v3")
    assert bundle.metadata() == {} and bundle.files() == []
    bundle.write_metadata({"architecture": "deep", "test_accuracy": 0.99})
    assert bundle.metadata() == {"architecture": "deep", "test_accuracy": 0.99}
    assert bundle.files() == [bundle.metadata_path]
    assert ModelBundle.at(bundle.model_path) == bundle == ModelBundle.at(bundle.directory)


def test_model_arrays_and_the_confusion_matrix():
    images = np.array([np.zeros((28, 28)), np.full((28, 28), 255)], dtype=np.uint8)
    arrays = to_model_array(images)
    assert arrays.shape == (2, 28, 28, 1) and arrays.dtype == np.float32 and arrays.max() == 1.0
    matrix = confusion_matrix(np.array([1, 1, 2]), np.array([1, 2, 2]))
    assert matrix[1, 1] == 1 and matrix[1, 2] == 1 and matrix[2, 2] == 1 and matrix.sum() == 3
