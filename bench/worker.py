"""The worker alone, fed from the queue: how many images a second it classifies, one task per
image against micro-batches of CLASSIFY_BATCH_SIZE (one model call each), and its memory.

The queue is filled first, then the worker starts; the rate counts from its first stored
prediction to its last, so loading the model is not in it. Run: ``make bench`` or
``.venv/bin/python bench/worker.py [--images 2000] [--concurrency 2]``.
"""

from __future__ import annotations

import argparse
import time

from stack import MNIST_DIR, Stack, mnist_uploads


def realistic_uploads(count: int) -> list[tuple[str, bytes, int]]:
    from ml.data import load_mnist
    from ml.synth import realistic_set

    test = load_mnist(MNIST_DIR).test
    return [
        (f"{upload.scenario}-{i}", upload.data, upload.label)  # the name is data; the content decides
        for i, upload in enumerate(realistic_set(test.images, test.labels, count=count, seed=11))
    ]


def fill_queue(uploads, batch_size: int) -> list[int]:
    from django.conf import settings
    from django.core.files.uploadedfile import SimpleUploadedFile

    from classifier.services import image_upload_create

    settings.CLASSIFY_BATCH_SIZE = batch_size
    from django.contrib.auth.models import User

    owner = User.objects.get(username="bench")
    ids = []
    for start in range(0, len(uploads), 32):
        files = [SimpleUploadedFile(name, data) for name, data, _ in uploads[start : start + 32]]
        ids += [image.pk for image in image_upload_create(owner=owner, files=files).created]
    return ids


def drain(stack: Stack, ids: list[int], labels: dict[int, int]) -> dict:
    from classifier.models import DigitImage, Prediction

    started = time.monotonic()
    stack.start_worker(warm=False)
    stack.wait_until_finished()
    wall = time.monotonic() - started
    memory = stack.memory()
    stack.stop_worker()
    predictions = Prediction.objects.filter(image_id__in=ids)
    times = sorted(predictions.values_list("created_at", flat=True))
    span = (times[-1] - times[0]).total_seconds()
    digits = dict(predictions.values_list("image_id", "digit"))
    return {
        "rate": (len(times) - 1) / span if span else float("inf"),
        "wall": wall,
        "done": DigitImage.objects.filter(pk__in=ids, status="done").count(),
        "accuracy": sum(digits[pk] == labels[pk] for pk in digits) / max(len(digits), 1),
        "memory": memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32, help="CLASSIFY_BATCH_SIZE for the batched run")
    parser.add_argument("--realistic", action="store_true", help="phone photos, scans, canvas... instead of MNIST PNGs")
    args = parser.parse_args()

    uploads = realistic_uploads(args.images) if args.realistic else mnist_uploads(args.images)
    with Stack(concurrency=args.concurrency, start=False) as stack:
        kind = "realistic uploads rendered from MNIST test digits" if args.realistic else "MNIST test digits as PNG"
        print(f"stack: {stack.describe()}; {args.images} {kind}")
        results = {}
        for label, batch in [("one task per image", 1), (f"batches of {args.batch}", args.batch)]:
            ids = fill_queue(uploads, batch)
            labels = {pk: digit for pk, (_, _, digit) in zip(ids, uploads, strict=True)}
            results[label] = result = drain(stack, ids, labels)
            print(
                f"{label:<20} {result['rate']:7.0f} images/s  ({result['done']} done, accuracy "
                f"{result['accuracy']:.2%}, {result['wall']:.1f} s with worker start-up)"
            )
        naive, batched = results.values()
        print(f"ratio                {batched['rate'] / naive['rate']:7.1f}x   (target: batched >= 500 images/s)")
        memory = batched["memory"]
        print(
            f"memory: worker process with the model {memory['worker_child_mb']:.0f} MB (target <= 700), "
            f"worker parent {memory['worker_parent_mb']:.0f} MB"
        )


if __name__ == "__main__":
    main()
