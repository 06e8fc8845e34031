"""Where the worker spends a batch of realistic uploads (pyinstrument, statistical): reading
the stored files, preprocessing, the model call, Grad-CAM and storing, in this process with
the worker's own code (``predictions_run``), no broker in between.

Run: ``.venv/bin/python bench/profile_worker.py [--images 320] [--batch 32]``.
"""

from __future__ import annotations

import argparse

from pyinstrument import Profiler
from stack import Stack
from worker import fill_queue, realistic_uploads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=320)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    uploads = realistic_uploads(args.images + args.batch)
    with Stack(start=False):
        from classifier.services import predictions_run

        ids = fill_queue(uploads, args.batch)
        predictions_run(image_ids=ids[: args.batch])  # loads the model and traces its functions
        profiler = Profiler()
        with profiler:
            for start in range(args.batch, len(ids), args.batch):
                predictions_run(image_ids=ids[start : start + args.batch])
        profiler.print(show_all=False)


if __name__ == "__main__":
    main()
