"""The model bundle and the layout of ml/: serving never pulls in fitting, nor TensorFlow early."""

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np

from ml.serving.artifacts import ModelBundle, confusion_matrix, to_model_array

ML = Path(__file__).resolve().parents[1]


def test_importing_the_artifacts_does_not_import_tensorflow():
    code = "import sys, ml.serving.artifacts; print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ML.parent, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def _imported_ml_modules(path: Path) -> set[str]:
    """The ``ml`` modules a file imports anywhere in its source, function bodies included."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name == "ml" or name.startswith("ml.")}


def test_ml_is_two_packages_serving_and_fitting():
    """The folder listing shows the rule: every module of ``ml`` is in ``serving`` or ``fitting``."""
    loose = sorted(path.name for path in ML.glob("*.py") if path.name != "__init__.py")
    assert loose == [], "put a new module in ml/serving/ or ml/fitting/"
    assert (ML / "serving" / "__init__.py").is_file() and (ML / "fitting" / "__init__.py").is_file()


def test_no_serving_module_imports_fitting_anywhere_in_its_source():
    """Not at the top, not inside a function: a worker that reads uploads never loads the
    code that trains (synthetic data, stand-ins, the fitting loop, the detector's fitting)."""
    wrong = {
        path.name: sorted(name for name in _imported_ml_modules(path) if name.startswith("ml.fitting"))
        for path in sorted((ML / "serving").glob("*.py"))
    }
    assert {name: found for name, found in wrong.items() if found} == {}


SERVING_PATH = """
import io, sys
from pathlib import Path
import numpy as np
from PIL import Image
from ml.serving.inference import Predictor
from ml.serving.numbers import read_numbers

real = Path(sys.argv[1])
blobs = [path.read_bytes() for path in sorted(real.glob("*.png"))[:4]] if real.is_dir() else []
canvas = np.full((60, 160), 255, np.uint8)
canvas[10:50, 20:26] = 0  # a 1
canvas[10:50, 90:96] = 0  # and another: a number of two digits
out = io.BytesIO()
Image.fromarray(canvas).save(out, format="PNG")
blobs.append(out.getvalue())
predictor = Predictor(sys.argv[2])
assert len(predictor.predict_images(blobs)) == len(blobs)
assert len(read_numbers(predictor, blobs)) == len(blobs)
print(len(blobs), sorted(name for name in sys.modules if name.startswith("ml.fitting")))
"""


def test_the_serving_path_loads_no_fitting_module(tmp_path):
    """A Predictor on the shipped bundle reading real files one digit and whole numbers at a
    time, in a fresh process: no fitting module is imported."""
    real = ML.parent.parent / "shared" / "data" / "real-digits" / "hwd-1000"
    files = tmp_path / "real"
    files.mkdir()
    if real.is_dir():  # a few real files, by the names the labels give (never a listing)
        for line in (real / "labels.csv").read_text().splitlines()[1:5]:
            name = line.split(",")[0]
            (files / name).write_bytes((real / name).read_bytes())
    result = subprocess.run(
        [sys.executable, "-c", SERVING_PATH, str(files), str(ML.parent / "models" / "deep")],
        cwd=ML.parent,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    count, loaded = result.stdout.strip().splitlines()[-1].split(" ", 1)
    assert loaded == "[]"
    assert int(count) == (5 if real.is_dir() else 1)


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
