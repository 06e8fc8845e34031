"""The web process serves every page without loading TensorFlow (it stays small and starts
fast; only the worker and the commands load the model), and neither it nor a classifying worker
loads fitting code (``ml.fitting``, the commands' and the trainer's services): that runs in the
trainer and the commands only."""

import os
import subprocess
import sys

import pytest

from classifier.tests.conftest import REPO

pytestmark = pytest.mark.slow

FITTING = ("ml.fitting", "classifier.services.modelling", "classifier.services.retraining")

SCRIPT = r"""
import io, sys
import django
django.setup()
from django.contrib.auth.models import User
from django.test import Client
from PIL import Image
from classifier.models import DigitImage, ModelVersion, Prediction

staff = User.objects.create_user("staff", password="a long password 42", is_staff=True, is_superuser=True)
client = Client()
client.force_login(staff)
buffer = io.BytesIO()
Image.new("L", (64, 64), 255).save(buffer, "PNG")
buffer.name = "digit.png"
buffer.seek(0)
assert client.post("/", {"images": [buffer]}).status_code == 302
image = DigitImage.objects.get()
Prediction.objects.create(
    image=image, digit=7, confidence=0.9, probabilities=[0.01] * 9 + [0.91],
    model_version=ModelVersion.objects.get(is_active=True), model_input=bytes(784), saliency=bytes(range(28)) * 28,
    inference_ms=1.0,
)
pages = [
    "/", "/draw/", "/history/", "/history/export.csv", "/stats/", "/account/api-token/",
    f"/images/{image.pk}/", f"/images/{image.pk}/file/", f"/images/{image.pk}/model-input.png",
    f"/images/{image.pk}/grad-cam.png", "/api/v1/images/", f"/api/v1/images/{image.pk}/", "/api/v1/models/",
    "/api/schema/", "/api/docs/", "/admin/", "/admin/classifier/digitimage/", "/admin/classifier/feedback/",
]
for page in pages:
    status = client.get(page).status_code
    assert status == 200, (page, status)
print("loaded:", sorted(name for name in ("tensorflow", "keras") if name in sys.modules))
print("fitting:", sorted(name for name in sys.modules if name.startswith(FITTING)))
"""

# What a classifying worker's process runs, in the order it runs it: the Celery app loads the
# task modules and the worker's hooks, the pool process warms the model, then classifies a batch
# (a digit and a number).
WORKER_SCRIPT = r"""
import io, sys
import django
django.setup()
from digitsite.celery import app
app.loader.import_default_modules()
import classifier.queueing.worker
from PIL import Image, ImageDraw
from classifier.models import DigitImage
from classifier.services import model_warm_up, predictions_run
from classifier.tests.factories import DigitImageFactory

def drawing(text):
    image = Image.new("L", (40 * len(text) + 20, 60), 255)
    ImageDraw.Draw(image).text((10, 10), text, fill=0, font_size=40)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()

model_warm_up()
ids = [
    DigitImageFactory(data=drawing(text), reading=reading).pk for text, reading in (("7", "digit"), ("305", "number"))
]
predictions_run(image_ids=ids)
assert all(image.status == "done" for image in DigitImage.objects.filter(pk__in=ids)), "not classified"
print("fitting:", sorted(name for name in sys.modules if name.startswith(FITTING)))
"""


def _process_env(tmp_path) -> dict:
    """A process of its own, on a fresh SQLite database and the embedded broker."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")} | {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "MEDIA_ROOT": str(tmp_path / "media"),
        "CELERY_BROKER_URL": "filesystem://",
        "CELERY_BROKER_FOLDER": str(tmp_path / "broker"),
        "DJANGO_SETTINGS_MODULE": "digitsite.settings",
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True, timeout=300)
    return env


def _run(script: str, env: dict) -> str:
    code = f"FITTING = {FITTING!r}\n{script}"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_web_process_serves_every_page_without_loading_tensorflow_or_fitting_code(tmp_path):
    out = _run(SCRIPT, _process_env(tmp_path))
    assert "loaded: []" in out, out
    assert "fitting: []" in out, out


def test_a_classifying_worker_reads_uploads_without_loading_fitting_code(tmp_path):
    out = _run(WORKER_SCRIPT, _process_env(tmp_path))
    assert "fitting: []" in out, out
