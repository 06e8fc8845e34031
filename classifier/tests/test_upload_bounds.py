"""Uploads stay cheap for the web process: it reads headers and a bounded number of pixels,
a request carries a bounded number of files and pixels, and whatever is stored is queued.

The red team's attack: small files that decode to huge images (a 64-megapixel lossless WebP
is a few dozen bytes), twenty to a request, through the form and the API. So small, they are
refused from their headers (``ml.serving.decoding_limits``, as a JPEG of too many scans is); padded
to the size such an image needs, the web process still reads only their headers.
"""

import io
import sys
import time

import numpy as np
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from classifier.models import DigitImage
from classifier.services import image_upload_create
from classifier.tests.conftest import broker
from classifier.tests.factories import UserFactory
from classifier.tests.hostile import COSTLY_TO_DECODE, NEAR_LIMIT
from digitsite.celery import app as celery_app
from ml.serving.decoding_limits import jpeg_scan_limit, jpeg_scans
from ml.tests.bombs import progressive_scan_bomb
from ml.tests.conftest import encode

MB = 1024 * 1024
WEB_PROCESS_BUDGET_MB = 300


def _memory_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field))
    return int(line.split()[1]) * 1024 / MB


def peak_memory_growth_mb(action) -> tuple[float, object]:
    """Run ``action`` and return how far this process's resident memory rose above where it
    started (Linux: the peak is reset through /proc/self/clear_refs), and what it returned."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset VmHWM, the peak resident set size, to the current size
    before = _memory_mb("VmRSS")
    result = action()
    return _memory_mb("VmHWM") - before, result


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")


@linux_only
@pytest.mark.slow
@pytest.mark.django_db
@pytest.mark.parametrize("fmt", list(NEAR_LIMIT))
@pytest.mark.parametrize("via", ["api", "form"])
def test_twenty_near_limit_images_keep_the_web_process_small(client, fmt, via):
    """20 images of ~64 megapixels each in one request: every file is answered (stored, or
    refused for the request's pixel budget), and the web process grows by less than 300 MB;
    decoding each in full took ~0.2-0.9 GB and 0.4-1.4 s apiece."""
    data = NEAR_LIMIT[fmt]()
    width, height = Image.open(io.BytesIO(data)).size
    assert width * height > 60_000_000 and len(data) < settings.UPLOAD_MAX_BYTES
    user = UserFactory()
    client.force_login(user)
    files = [SimpleUploadedFile(f"large-{i}.{fmt}", data) for i in range(20)]
    url = reverse("api:image-list") if via == "api" else reverse("classifier:home")

    growth, response = peak_memory_growth_mb(lambda: client.post(url, {"images": files}))

    assert growth < WEB_PROCESS_BUDGET_MB, f"the web process grew by {growth:.0f} MB"
    stored = DigitImage.objects.filter(owner=user).count()
    assert stored == settings.UPLOAD_MAX_REQUEST_PIXELS // (width * height)
    if via == "api":
        body = response.json()
        assert response.status_code == 202
        assert len(body["images"]) == stored and len(body["errors"]) == 20 - stored
        assert all("megapixels one upload may hold" in error["error"] for error in body["errors"])
    else:
        page = client.get(response.url).content.decode()
        assert page.count("megapixels one upload may hold") == 20 - stored
        assert f"{stored} images uploaded" in page


@pytest.mark.django_db
@pytest.mark.parametrize("via", ["api", "form"])
def test_small_files_that_cost_a_lot_to_decode_are_refused_at_upload_with_a_reason(client, via):
    """Issue 42: a progressive JPEG whose scan is repeated 2,000 times took the web process
    17-74 CPU-s to inspect; an 8000x8000 GIF logical screen and a blank WebP were stored for the
    worker to decode (1-2 GB). Each is refused with its reason, before decoding: the whole
    request costs a fraction of a CPU-second, and nothing is stored."""
    client.force_login(UserFactory())
    data = {name: make() for name, (make, _reason) in COSTLY_TO_DECODE.items()}
    files = [SimpleUploadedFile(name, content) for name, content in data.items()]
    url = reverse("api:image-list") if via == "api" else reverse("classifier:home")

    started = time.process_time()
    response = client.post(url, {"images": files})
    cpu_seconds = time.process_time() - started

    assert cpu_seconds < 1.0
    assert not DigitImage.objects.exists()
    if via == "api":
        assert response.status_code == 400
        reasons = {error["file"]: error["error"] for error in response.json()["errors"]}
    else:
        assert response.status_code == 302
        page = client.get(response.url).content.decode()
        reasons = {name: page for name in data}
    for name, (_make, reason) in COSTLY_TO_DECODE.items():
        assert reason in reasons[name], name


@pytest.mark.django_db
def test_a_request_decodes_only_the_images_within_its_pixels(client):
    """A 64-megapixel JPEG of 16 scans (the most one that large may have) costs ~0.5 CPU-s to
    check; twenty to a request cost ~11 s when each was checked before the request's pixels
    were counted. Now the headers are counted first: only the four that fit are decoded."""
    client.force_login(UserFactory())
    data = progressive_scan_bomb(side=8000, extra_scans=10)  # grey: 6 scans, then 10 more
    assert jpeg_scans(data) == jpeg_scan_limit(8000 * 8000) == 16
    files = [SimpleUploadedFile(f"photo-{i}.jpg", data) for i in range(20)]

    started = time.process_time()
    response = client.post(reverse("classifier:home"), {"images": files})
    cpu_seconds = time.process_time() - started

    assert response.status_code == 302
    assert DigitImage.objects.count() == settings.UPLOAD_MAX_REQUEST_PIXELS // (8000 * 8000) == 4
    assert cpu_seconds < 6.0


@pytest.mark.django_db
def test_the_api_takes_as_many_files_per_request_as_the_form(client, settings):
    user = UserFactory()
    client.force_login(user)
    png = encode(np.zeros((28, 28), dtype=np.uint8))
    many = [SimpleUploadedFile(f"{i}.png", png) for i in range(settings.UPLOAD_MAX_FILES + 1)]
    response = client.post(reverse("api:image-list"), {"images": many})
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"file": "", "error": f"Upload at most {settings.UPLOAD_MAX_FILES} files at once."}
    ]
    assert not DigitImage.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["api:image-list", "classifier:home"])
def test_more_files_than_django_reads_get_a_reason_not_a_bare_page(client, url):
    """Past DATA_UPLOAD_MAX_NUMBER_FILES Django refuses to parse the request: the API still
    answers JSON, and the site a page that says what to do."""
    client.force_login(UserFactory())
    png = encode(np.zeros((28, 28), dtype=np.uint8))
    files = [SimpleUploadedFile(f"{i}.png", png) for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FILES + 1)]
    response = client.post(reverse(url), {"images": files})
    assert response.status_code == 400
    reason = f"Upload at most {settings.UPLOAD_MAX_FILES} files at once."
    if url.startswith("api"):
        assert response["Content-Type"] == "application/json"
        assert response.json() == {"detail": reason}
    else:
        assert reason in response.content.decode()


@pytest.mark.django_db
def test_a_request_that_dies_while_its_files_are_judged_leaves_no_image_behind():
    """Gunicorn ends a sync worker past its timeout by raising SystemExit in it. Images were
    stored one by one and queued at the end, so the ones stored before stayed pending with no
    task; now nothing is stored until every file is judged."""
    png = encode(np.zeros((28, 28), dtype=np.uint8))

    def files_then_timeout():
        yield SimpleUploadedFile("first.png", png)
        yield SimpleUploadedFile("second.png", png)
        raise SystemExit(1)

    with pytest.raises(SystemExit):
        image_upload_create(owner=UserFactory(), files=files_then_timeout())
    assert not DigitImage.objects.exists()


@pytest.mark.django_db
def test_stored_images_are_queued_as_their_rows_commit(tmp_path, mnist, django_capture_on_commit_callbacks):
    files = [SimpleUploadedFile(f"{i}.png", encode(mnist.test.images[i])) for i in range(3)]
    with broker("embedded", tmp_path / "broker"):
        with django_capture_on_commit_callbacks(execute=True):
            outcome = image_upload_create(owner=UserFactory(), files=files)
        with celery_app.connection_for_read() as connection:
            queue = connection.SimpleQueue(settings.CELERY_TASK_DEFAULT_QUEUE)
            message = queue.get(timeout=5)
            queue.close()
    assert message.headers["task"] == "classifier.classify_images"
    args, _kwargs, _embed = message.decode()
    assert sorted(args[0]) == sorted(image.pk for image in outcome.created)
