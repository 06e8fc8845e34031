"""Load test: thousands of uploads through the real web server, broker and worker.

Starts gunicorn and a Celery worker on a scratch database and media folder, signs up
users through the site, uploads MNIST test digits (and a few blank images, which must end
``failed`` with a reason) in requests of 20 files from several client threads, waits for
every image to finish, and checks that none was lost and none classified twice. Prints
upload and classification throughput, upload-to-result latency and accuracy.

Run: ``make bench-load`` or ``.venv/bin/python bench/load.py [--uploads 2000]``. The broker is
Redis when CELERY_BROKER_URL says so or the machine runs one (else the embedded broker,
``--embedded`` forces it); the database is a scratch
SQLite file unless ``--database-url`` names a scratch database.
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stack import MNIST_DIR, Stack, png  # noqa: E402

from ml.fitting.data import load_mnist  # noqa: E402

FILES_PER_REQUEST = 20
BLANK_EVERY = 100  # one upload in this many is a blank page: it must end failed, with a reason
PASSWORD = "load-test-password-42"


def csrf_token(session: requests.Session, url: str) -> str:
    page = session.get(url, timeout=30).text
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


def sign_up(base: str, username: str) -> requests.Session:
    session = requests.Session()
    token = csrf_token(session, f"{base}/signup/")
    response = session.post(
        f"{base}/signup/",
        data={"csrfmiddlewaretoken": token, "username": username, "password1": PASSWORD, "password2": PASSWORD},
        headers={"Referer": f"{base}/signup/"},
        timeout=30,
    )
    response.raise_for_status()
    assert "sessionid" in session.cookies, f"sign-up of {username} failed"
    return session


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=2000)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--clients", type=int, default=4, help="client threads uploading at once")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--database-url", help="a scratch database (default: a new SQLite file)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for classification")
    parser.add_argument("--embedded", action="store_true", help="the embedded broker even where Redis runs")
    return parser.parse_args()


def _uploads(count: int) -> list[tuple[str, bytes, int | None]]:
    """(file name, bytes, expected digit or None for blank): MNIST test digits, a blank page
    every BLANK_EVERY."""
    mnist = load_mnist(MNIST_DIR).test
    blank = png(np.full((64, 64), 255, dtype=np.uint8))
    uploads = []
    for i in range(count):
        if i % BLANK_EVERY == BLANK_EVERY - 1:
            uploads.append((f"blank-{i}.png", blank, None))
        else:
            index = i % len(mnist.images)
            uploads.append((f"d{i}.png", png(255 - mnist.images[index]), int(mnist.labels[index])))
    return uploads


def _upload_all(base: str, sessions: list[requests.Session], tokens: dict, batches: list, clients: int) -> list[float]:
    """Post every batch as a request of the upload form, ``clients`` at once; the milliseconds
    of each request. Any refused request ends the bench."""
    errors, lock, request_ms = [], threading.Lock(), []

    def send(number_and_batch):
        number, batch = number_and_batch
        session = sessions[number % len(sessions)]
        files = [("images", (name, data, "image/png")) for name, data, _ in batch]
        started = time.perf_counter()
        response = session.post(
            f"{base}/",
            data={"csrfmiddlewaretoken": tokens[id(session)]},
            files=files,
            headers={"Referer": f"{base}/"},
            timeout=120,
            allow_redirects=False,
        )
        with lock:
            request_ms.append((time.perf_counter() - started) * 1000)
            if response.status_code != 302:
                errors.append(f"request {number}: HTTP {response.status_code}")

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(send, enumerate(batches)))
    if errors:
        raise SystemExit("upload errors:\n" + "\n".join(errors[:20]))
    return request_ms


def _report(expected: dict[str, int | None], *, upload_seconds: float, total_seconds: float, request_ms) -> bool:
    """Print what became of the uploads, and whether none was lost or duplicated."""
    from django.db.models import Count

    from classifier.models import DigitImage, Prediction

    images = DigitImage.objects.all()
    stored = images.count()
    names = list(images.values_list("original_name", flat=True))
    by_status = dict(images.values_list("status").annotate(n=Count("id")))
    duplicates = Prediction.objects.values("image").annotate(n=Count("id")).filter(n__gt=1).count()
    done = images.filter(status="done").select_related("prediction")
    failed_without_reason = images.filter(status="failed", error_message="").count()
    blank_not_failed = images.filter(original_name__startswith="blank-").exclude(status="failed").count()
    correct = sum(image.prediction.digit == expected[image.original_name] for image in done)
    latencies = [
        (created - uploaded).total_seconds()
        for uploaded, created in done.values_list("uploaded_at", "prediction__created_at")
    ]
    lost = len(expected) - stored

    print()
    print(f"uploads sent          {len(expected)}")
    print(f"stored                {stored}  (lost {lost}, names repeated {len(names) - len(set(names))})")
    print(f"done / failed         {by_status.get('done', 0)} / {by_status.get('failed', 0)}")
    print(f"predictions per image exactly one ({duplicates} images with more)")
    print(f"failed without reason {failed_without_reason}; blank images not failed {blank_not_failed}")
    print(f"accuracy on digits    {correct / max(len(latencies), 1):.2%} ({correct}/{len(latencies)})")
    rate = len(expected) / upload_seconds
    print(f"upload phase          {upload_seconds:.1f} s, {rate:.0f} images/s through the web")
    q = np.percentile(request_ms, [50, 95])
    print(f"request of 20 files   p50 {q[0]:.0f} ms, p95 {q[1]:.0f} ms")
    print(f"all classified after  {total_seconds:.1f} s, {stored / total_seconds:.0f} images/s end to end")
    q = np.percentile(latencies, [50, 95, 99])
    print(f"upload to result      p50 {q[0]:.1f} s, p95 {q[1]:.1f} s, p99 {q[2]:.1f} s (queueing included)")
    ok = lost == 0 and duplicates == 0 and failed_without_reason == 0 and blank_not_failed == 0
    return ok and by_status.get("done", 0) + by_status.get("failed", 0) == stored


def main() -> None:
    args = _arguments()
    stack = Stack(
        web_workers=args.web_workers,
        concurrency=args.concurrency,
        database_url=args.database_url,
        broker="filesystem://" if args.embedded else None,
        start=False,
    )
    with stack:
        print(f"stack: {stack.describe()}")
        stack.start_web()
        stack.start_worker(warm=False)  # the first batches pay for loading the model, as after a deploy
        uploads = _uploads(args.uploads)
        expected = {name: digit for name, _, digit in uploads}
        sessions = [sign_up(stack.base, f"load{n}") for n in range(args.users)]
        batches = [uploads[i : i + FILES_PER_REQUEST] for i in range(0, len(uploads), FILES_PER_REQUEST)]
        tokens = {id(s): csrf_token(s, f"{stack.base}/") for s in sessions}
        print(f"uploading {len(uploads)} images as {args.users} users, {len(batches)} requests, {args.clients} clients")
        started = time.monotonic()
        request_ms = _upload_all(stack.base, sessions, tokens, batches, args.clients)
        upload_seconds = time.monotonic() - started
        stack.wait_until_finished(timeout=args.timeout)
        total_seconds = time.monotonic() - started
        ok = _report(expected, upload_seconds=upload_seconds, total_seconds=total_seconds, request_ms=request_ms)
        print("RESULT", "ok: none lost, none duplicated" if ok else "FAILED")
        if not ok:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
