"""The worker alone, fed from the queue: how many images a second it classifies, one task per
image against micro-batches of CLASSIFY_BATCH_SIZE (one model call each), and its memory.

The queue is filled first, then the worker starts; the rate counts from its first stored
prediction to its last, so loading the model is not in it. Run: ``make bench`` or
``.venv/bin/python bench/worker.py [--images 2000] [--concurrency 2]``.

``--numbers N`` measures reading whole numbers instead: N numbers of 2 to 8 digits rendered
from MNIST test digits (``ml.fitting.synth.number_set``) against N single-digit images in the same run,
both in batches of ``--batch``, as milliseconds per digit.
"""

from __future__ import annotations

import argparse
import time

from stack import MNIST_DIR, Stack, mnist_uploads


def realistic_uploads(count: int) -> list[tuple[str, bytes, int]]:
    from ml.fitting.data import load_mnist
    from ml.fitting.synth import realistic_set

    test = load_mnist(MNIST_DIR).test
    return [
        (f"{upload.scenario}-{i}", upload.data, upload.label)  # the name is data; the content decides
        for i, upload in enumerate(realistic_set(test.images, test.labels, count=count, seed=11))
    ]


def number_uploads(count: int) -> list[tuple[str, bytes, str]]:
    from ml.fitting.data import load_mnist
    from ml.fitting.synth import number_set

    test = load_mnist(MNIST_DIR).test
    return [
        (f"{upload.scenario}-{i}", upload.data, upload.number)
        for i, upload in enumerate(number_set(test.images, test.labels, count=count, seed=11))
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


def drain(stack: Stack, ids: list[int], labels: dict[int, int | str], answer: str = "digit") -> dict:
    """The worker's rate on the queued ``ids``; accuracy compares each prediction's ``answer``
    field (``digit``, or ``number`` for whole numbers) with ``labels``."""
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
    answers = dict(predictions.values_list("image_id", answer))
    return {
        "rate": (len(times) - 1) / span if span else float("inf"),
        "wall": wall,
        "done": DigitImage.objects.filter(pk__in=ids, status="done").count(),
        "accuracy": sum(answers[pk] == labels[pk] for pk in answers) / max(len(answers), 1),
        "memory": memory,
    }


def numbers_mode(count: int, concurrency: int, batch: int) -> None:
    runs = [("single digits", mnist_uploads(count), "digit"), ("numbers", number_uploads(count), "number")]
    with Stack(concurrency=concurrency, start=False) as stack:
        print(
            f"stack: {stack.describe()}; {count} numbers of 2 to 8 digits and {count} single digits, batches of {batch}"
        )
        per_digit = {}
        for label, uploads, answer in runs:
            ids = fill_queue(uploads, batch)
            truths = {pk: truth for pk, (_, _, truth) in zip(ids, uploads, strict=True)}
            result = drain(stack, ids, truths, answer)
            digits = sum(len(str(truth)) for _, _, truth in uploads)
            per_digit[label] = 1000 / result["rate"] * count / digits
            print(
                f"{label:<14} {per_digit[label]:6.2f} ms per digit  ({digits} digits in {count} images, "
                f"{result['rate']:.0f} images/s; {result['done']} done, read exactly {result['accuracy']:.1%})"
            )
        ratio = per_digit["numbers"] / per_digit["single digits"]
        print(f"ratio          {ratio:6.2f}x   a digit of a number against a single-digit image")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32, help="CLASSIFY_BATCH_SIZE for the batched run")
    parser.add_argument("--realistic", action="store_true", help="phone photos, scans, canvas... instead of MNIST PNGs")
    parser.add_argument("--numbers", type=int, metavar="N", help="N rendered numbers against N single digits")
    args = parser.parse_args()
    if args.numbers:
        numbers_mode(args.numbers, args.concurrency, args.batch)
        return

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
