"""The draw page's live answer: what one update while drawing costs, beside a classified upload.

Each update is what the page sends a moment after the pen pauses: the canvas as a PNG, posted
to draw/preview/, read by the worker (queue ``preview``), then asked for every POLL_MS until the
answer is there. Measured in the same run, on the same worker: the same drawings uploaded
through "Classify drawing" (upload_inline) until their prediction is stored. The web side runs
in this process through Django's test client (the view is the same code gunicorn runs); the
worker is a real Celery worker on the stack's broker.

Run: ``.venv/bin/python bench/preview.py [--drawings 60] [--broker filesystem://]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from stack import MNIST_DIR, Stack, percentiles, png

POLL_MS = 10  # finer than the page's 80 ms, to see the pipeline's own latency


def canvases(count: int) -> list[tuple[bytes, int]]:
    """MNIST test digits drawn as the 280x280 canvas sends them (dark ink on white)."""
    from ml.fitting.data import load_mnist

    test = load_mnist(MNIST_DIR).test
    return [
        (png(255 - np.kron(test.images[i], np.ones((10, 10), dtype=np.uint8))), int(test.labels[i]))
        for i in range(count)
    ]


def live_updates(client, drawings) -> dict:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from classifier.models import DrawingPreview

    post_ms, round_trip_ms, polls, worker_ms, right = [], [], [], [], 0
    for data, label in drawings:
        started = time.perf_counter()
        response = client.post("/draw/preview/", {"drawing": SimpleUploadedFile("drawing.png", data)})
        post_ms.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 202, response.content
        url, asked = response.json()["url"], 0
        while client.get(url).status_code == 202:
            asked += 1
            time.sleep(POLL_MS / 1000)
            assert time.perf_counter() - started < 30, "no live answer within 30 s"
        round_trip_ms.append((time.perf_counter() - started) * 1000)
        polls.append(asked + 1)
        preview = DrawingPreview.objects.get(pk=url.rstrip("/").rsplit("/", 1)[1])
        worker_ms.append(preview.inference_ms)
        right += preview.result.get("digit") == label
    return {"post": post_ms, "round_trip": round_trip_ms, "polls": polls, "worker": worker_ms, "right": right}


def classified_uploads(client, drawings) -> dict:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from classifier.models import DigitImage

    round_trip_ms, worker_ms = [], []
    for data, _ in drawings:
        started = time.perf_counter()
        response = client.post("/upload/inline/", {"images": [SimpleUploadedFile("drawing.png", data)]})
        assert response.status_code == 201, response.content
        image = DigitImage.objects.latest("pk")
        while not DigitImage.objects.filter(pk=image.pk, status="done").exists():
            time.sleep(POLL_MS / 1000)
            assert time.perf_counter() - started < 30, "no prediction within 30 s"
        round_trip_ms.append((time.perf_counter() - started) * 1000)
        worker_ms.append(image.prediction.inference_ms)
    return {"round_trip": round_trip_ms, "worker": worker_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drawings", type=int, default=60)
    parser.add_argument("--broker", help="a broker URL (default: Redis where one runs, else the embedded one)")
    args = parser.parse_args()

    with Stack(concurrency=1, broker=args.broker) as stack:
        from django.test import Client

        client = Client()
        client.force_login(stack.user)
        drawings = canvases(args.drawings)
        print(f"stack: {stack.describe()}; worker concurrency 1 (as make run); {len(drawings)} drawings")
        print(f"drawing as sent: {np.mean([len(d) for d, _ in drawings]) / 1000:.1f} KB PNG on average")
        live = live_updates(client, drawings)
        upload = classified_uploads(client, drawings)

        def row(name, samples, unit="ms"):
            p50, p95, _ = percentiles(samples)
            print(f"  {name:<44} p50 {p50:7.1f} {unit}   p95 {p95:7.1f} {unit}")

        print("live answer, per update while drawing:")
        row("POST draw/preview/ in the web process", live["post"])
        row("worker: preprocessing and model", live["worker"])
        row("until the answer is there (POST to 200)", live["round_trip"])
        row("requests per update (1 POST + polls)", [p + 1 for p in live["polls"]], "")
        print(f"  read right: {live['right']} of {len(drawings)}")
        print("'Classify drawing', the same drawings (stored, with Grad-CAM):")
        row("worker: preprocessing and model, per image", upload["worker"])
        row("until the prediction is stored", upload["round_trip"])
        ratio = np.median(upload["round_trip"]) / np.median(live["round_trip"])
        print(f"ratio: a classified upload takes {ratio:.1f}x the live answer's time (p50)")


if __name__ == "__main__":
    main()
