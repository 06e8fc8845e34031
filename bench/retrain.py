"""`manage.py retrain` with a handful of flags, timed end to end (fine-tuning on all 60,000
MNIST training images plus the corrections, evaluation, the gate, plots).

Run: ``make bench`` or ``.venv/bin/python bench/retrain.py [--flags 5]``.
"""

from __future__ import annotations

import argparse
import os
import time
from io import StringIO

from stack import Stack, mnist_uploads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flags", type=int, default=5)
    args = parser.parse_args()

    with Stack(start=False) as stack:
        os.environ["MODEL_VERSIONS_DIR"] = str(stack.scratch / "versions")
        from django.conf import settings
        from django.contrib.auth.models import User
        from django.core.files.uploadedfile import SimpleUploadedFile
        from django.core.management import call_command

        from classifier.services import image_flag, image_upload_create, predictions_run

        settings.MODEL_VERSIONS_DIR = stack.scratch / "versions"
        owner = User.objects.get(username="bench")
        files = [SimpleUploadedFile(name, data) for name, data, _ in mnist_uploads(args.flags)]
        images = image_upload_create(owner=owner, files=files).created
        predictions_run(image_ids=[image.pk for image in images])
        for image in images:  # staff say each is the next digit: corrections the model must learn
            image.refresh_from_db()
            image_flag(image=image, correct_number=str((image.prediction.digit + 1) % 10), flagged_by=owner)
        print(f"stack: {stack.describe()}; {args.flags} flags")
        out = StringIO()
        started = time.monotonic()
        call_command("retrain", stdout=out)
        seconds = time.monotonic() - started
        print(out.getvalue().rstrip())
        print(f"\nretrain with {args.flags} flags: {seconds:.0f} s wall (target: at most 600 s)")


if __name__ == "__main__":
    main()
