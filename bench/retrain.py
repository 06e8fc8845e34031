"""A retrain (the service `manage.py retrain` calls) with ``--flags`` corrections, timed end to
end and per stage as the stage callback announces them (gathering, fine-tuning on a replay of
MNIST plus the corrections, calibrating with the reject option, judging, storing), with the
judging table of the candidate against its parent.

Run: ``make bench`` or ``.venv/bin/python bench/retrain.py [--flags 5] [--not-digits 0]``.
"""

from __future__ import annotations

import argparse
import os
import time

from stack import Stack, mnist_uploads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flags", type=int, default=5)
    parser.add_argument("--not-digits", type=int, default=0, help="also flag this many generated non-digits")
    args = parser.parse_args()

    with Stack(start=False) as stack:
        os.environ["MODEL_VERSIONS_DIR"] = str(stack.scratch / "versions")
        from django.conf import settings
        from django.contrib.auth.models import User
        from django.core.files.uploadedfile import SimpleUploadedFile

        from classifier.services import image_flag, image_upload_create, predictions_run
        from classifier.services.retraining import model_retrain

        settings.MODEL_VERSIONS_DIR = stack.scratch / "versions"
        owner = User.objects.get(username="bench")
        files = [SimpleUploadedFile(name, data) for name, data, _ in mnist_uploads(args.flags)]
        images = image_upload_create(owner=owner, files=files).created
        predictions_run(image_ids=[image.pk for image in images])
        for image in images:  # staff say each is the next digit: corrections the model must learn
            image.refresh_from_db()
            image_flag(image=image, correct_number=str((image.prediction.digit + 1) % 10), flagged_by=owner)
        if args.not_digits:
            flag_not_digits(owner, args.not_digits)
        print(f"stack: {stack.describe()}; {args.flags} flags, {args.not_digits} not digits")
        stages: list[tuple[str, float]] = []
        started = time.monotonic()
        report = model_retrain(
            log=lambda line: print(f"  {time.monotonic() - started:6.1f}s {line}", flush=True),
            stage=lambda name: stages.append((name, time.monotonic())),
        )
        ended = time.monotonic()
        width = max(len(row[0]) for row in report.rows)
        print()
        for metric, active, candidate in report.rows:
            print(f"{metric:<{width}}  {active:>10}  {candidate:>10}")
        print(f"\n{'promoted' if report.promoted else 'kept'}: {report.reason}")
        print(f"\nretrain with {args.flags} flags and {args.not_digits} not digits, per stage:")
        for (name, begun), (_, after) in zip(stages, [*stages[1:], ("end", ended)], strict=True):
            print(f"  {name:<12} {after - begun:6.1f} s")
        print(f"  {'total':<12} {ended - started:6.1f} s wall (target: at most 300 s)")


def flag_not_digits(owner, count: int) -> None:
    """Upload ``count`` generated non-digits (words, drawings, ...) and have staff say of each
    that it is not a digit."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from classifier.services import image_flag, image_upload_create, predictions_run
    from ml.fitting.data import load_mnist
    from ml.fitting.negatives import negative_set

    uploads = negative_set(load_mnist(os.environ.get("MNIST_DATA_DIR")).test.images, count=count, seed=7)
    files = [SimpleUploadedFile(f"not-a-digit-{i}.png", upload.data) for i, upload in enumerate(uploads)]
    images = image_upload_create(owner=owner, files=files).created
    predictions_run(image_ids=[image.pk for image in images])
    for image in images:
        image.refresh_from_db()
        image_flag(image=image, correct_number=None, flagged_by=owner)


if __name__ == "__main__":
    main()
