"""The web process serves every page without loading TensorFlow (it stays small and starts
fast; only the worker and the commands load the model)."""

import os
import subprocess
import sys

import pytest

from classifier.tests.conftest import REPO

pytestmark = pytest.mark.slow

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
"""


def test_the_web_process_serves_every_page_without_loading_tensorflow(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")} | {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "MEDIA_ROOT": str(tmp_path / "media"),
        "CELERY_BROKER_URL": "filesystem://",
        "CELERY_BROKER_FOLDER": str(tmp_path / "broker"),
        "DJANGO_SETTINGS_MODULE": "digitsite.settings",
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True, timeout=300)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "loaded: []" in result.stdout, result.stdout
