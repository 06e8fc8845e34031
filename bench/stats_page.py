"""The staff statistics page with many predictions: its response time through Django's test
client, its number of queries, and both beside the history page measured in the same run.

Each size inserts rows in bulk into a throwaway database (a SQLite file in a scratch folder; with
DATABASE_URL set to PostgreSQL, a database created on that server and dropped afterwards): images
uploaded over the last 120 days by 50 users, predictions of three model versions with realistic
rows (the 784-byte input and heat map, ten probabilities), a few percent unsure or not a digit,
1% flagged, 10% reviewed. Sizes grow in one database: the second adds to the first.

Run: ``.venv/bin/python bench/stats_page.py [--predictions 11 200000] [--runs 7] [--before]``
(``--before`` also times the code before issue 18 in the same process: the selectors and
matplotlib charts of ``git show 24f5d06``, template excluded).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import types
import warnings
from datetime import timedelta

from stack import REPO, ScratchPostgres, Stack

USERS = 50
DAYS = 120
BATCH = 5_000
BEFORE = "24f5d06"  # main before the statistics page was redone


@contextlib.contextmanager
def timestamps_as_given(*models):
    """bulk_create would stamp every auto_now_add field with now; the bench spreads them over days."""
    fields = [field for model in models for field in model._meta.fields if getattr(field, "auto_now_add", False)]
    for field in fields:
        field.auto_now_add = False
    try:
        yield
    finally:
        for field in fields:
            field.auto_now_add = True


def insert(count: int, *, owners: list, versions: list, staff, rng: random.Random) -> None:
    from django.utils import timezone

    from classifier.models import DigitImage, Feedback, Flag, Prediction

    now = timezone.now()
    verdicts = [Prediction.Verdict.DIGIT] * 92 + [Prediction.Verdict.UNSURE] * 5 + [Prediction.Verdict.NOT_A_DIGIT] * 3
    model_input, heat = bytes(rng.randrange(256) for _ in range(784)), bytes(rng.randrange(256) for _ in range(784))
    with timestamps_as_given(DigitImage, Prediction, Flag, Feedback):
        for start in range(0, count, BATCH):
            size = min(BATCH, count - start)
            moments = [now - timedelta(days=DAYS * rng.random() ** 1.5) for _ in range(size)]  # busier lately
            images = DigitImage.objects.bulk_create(
                _image(start + offset, moment, owners=owners, staff=staff, rng=rng)
                for offset, moment in enumerate(moments)
            )
            predictions = [
                _prediction(image, versions=versions, verdicts=verdicts, inputs=(model_input, heat), rng=rng)
                for image in images
            ]
            Prediction.objects.bulk_create(predictions)
            _corrections_insert(predictions, staff=staff, rng=rng)
            Feedback.objects.bulk_create(
                Feedback(image=image, suggested_digit=d, suggested_number=str(d), created_at=image.uploaded_at)
                for image, d in ((image, rng.randrange(10)) for image in images)
                if rng.random() < 0.005
            )


def _image(number: int, moment, *, owners: list, staff, rng: random.Random):
    from classifier.models import DigitImage

    return DigitImage(
        owner=rng.choice(owners),
        file=f"uploads/bench/{number}.png",
        original_name=f"digit-{number}.png",
        image_format="PNG",
        content_type="image/png",
        sha256=f"{number:064x}",
        size_bytes=300,
        width=28,
        height=28,
        uploaded_at=moment,
        status=DigitImage.Status.DONE,
        attempts=1,
        reviewed_at=moment + timedelta(hours=rng.random() * 48) if rng.random() < 0.1 else None,
        reviewed_by=staff,
    )


def _prediction(image, *, versions: list, verdicts: list, inputs: tuple[bytes, bytes], rng: random.Random):
    from classifier.models import Prediction

    digit = rng.randrange(10)
    confidence = min(1.0, rng.betavariate(12, 0.6))
    probabilities = [(1 - confidence) / 9] * 10
    probabilities[digit] = confidence
    # A tenth are numbers of 2 to 6 digits, each listed with its box as the worker stores it.
    number = [digit, *(rng.randrange(10) for _ in range(rng.randrange(1, 6)))] if rng.random() < 0.1 else []
    return Prediction(
        image=image,
        digit=digit,
        confidence=confidence,
        verdict=Prediction.Verdict.NUMBER if number else rng.choice(verdicts),
        number="".join(map(str, number)),
        digits=[
            {"digit": d, "confidence": confidence, "probabilities": probabilities, "box": [30 * k, 0, 28, 28]}
            for k, d in enumerate(number)
        ],
        probabilities=probabilities,
        model_version=rng.choice(versions),
        model_input=inputs[0],
        saliency=inputs[1],
        inference_ms=0.8,
        created_at=image.uploaded_at + timedelta(milliseconds=30),
    )


def _corrections_insert(predictions: list, *, staff, rng: random.Random) -> None:
    """Flag 1% of the predictions."""
    from classifier.models import Flag

    flagged = [prediction for prediction in predictions if rng.random() < 0.01]
    # bulk_create skips save(), which keeps a reading and its one digit in step. A number's
    # correction changes its last digit, or (a fifth) adds one: kept, not trained on.
    corrections = [
        p.number[:-1] + str(rng.randrange(10)) + ("7" if rng.random() < 0.2 else "")
        if p.number
        else str(rng.randrange(10))
        for p in flagged
    ]
    Flag.objects.bulk_create(
        Flag(
            image=p.image,
            correct_digit=int(number) if len(number) == 1 else None,
            correct_number=number,
            flagged_by=staff,
            flagged_at=p.image.uploaded_at,
        )
        for p, number in zip(flagged, corrections, strict=True)
    )


def timed(client, path: str, runs: int) -> tuple[float, int]:
    """Median milliseconds of ``runs`` GETs after one to warm up, and the queries of one."""
    from django.db import connection

    response = client.get(path)
    if response.status_code != 200:
        raise SystemExit(f"{path}: HTTP {response.status_code}")
    # A wrapper, not CaptureQueriesContext: request_started empties the connection's query log.
    executed = []
    with connection.execute_wrapper(lambda execute, sql, *rest: executed.append(sql) or execute(sql, *rest)):
        client.get(path)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), len(executed)


def before_code(runs: int) -> float:
    """Median milliseconds of the old statistics view's work: its selectors and matplotlib charts."""
    modules = {}
    for name in ("charts", "selectors"):
        source = subprocess.check_output(["git", "show", f"{BEFORE}:classifier/{name}.py"], cwd=REPO, text=True)
        module = types.ModuleType(f"before_{name}")
        sys.modules[module.__name__] = module  # dataclasses look their module up
        exec(compile(source, f"{BEFORE}:classifier/{name}.py", "exec"), module.__dict__)  # our own history
        modules[name] = module
    charts, selectors = modules["charts"], modules["selectors"]

    def view_work() -> None:
        data = selectors.site_stats()
        versions = data.versions
        labels = [v.label for v in versions]
        charts.uploads_per_day(data.days, data.uploads_per_day)
        charts.predictions_per_digit(data.predictions_per_digit)
        charts.confidence_histogram(data.confidences)
        charts.flagged_share_per_version(labels, [v.flagged_share for v in versions], [v.predictions for v in versions])
        charts.unsure_share_per_version(
            labels, [v.unsure for v in versions], [v.not_a_digit for v in versions], [v.predictions for v in versions]
        )
        charts.review_queue(data.days, data.review_queue_per_day)
        charts.correction_confusion(data.corrections)
        charts.version_metrics(labels, [v.test_accuracy for v in versions])

    view_work()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        view_work()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--predictions", type=int, nargs="+", default=[11, 200_000], help="sizes, growing")
    parser.add_argument("--runs", type=int, default=7, help="timed requests per page and size")
    parser.add_argument("--before", action="store_true", help=f"also time the code of {BEFORE}")
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args()
    if args.predictions != sorted(args.predictions):
        parser.error("--predictions must grow: each size adds to the one before")
    return args


def _people_and_versions() -> tuple:
    """The staff member, the owners (staff first) and three model versions."""
    from django.contrib.auth.models import Permission, User

    from classifier.models import ModelVersion

    staff = User.objects.create_user("bench-staff", is_staff=True)
    # The statistics page is for staff who may view images (``may_see_all_images``).
    staff.user_permissions.add(Permission.objects.get(codename="view_digitimage"))
    owners = [staff, *(User.objects.create_user(f"bench-{index}") for index in range(USERS - 1))]
    first = ModelVersion.objects.get(number=1)
    versions = [first] + [
        ModelVersion.objects.create(
            number=number, architecture="deep", path=first.path, metrics={"test_accuracy": accuracy}
        )
        for number, accuracy in ((2, 0.9931), (3, 0.9940))
    ]
    return staff, owners, versions


def _size_line(size: int, client, args: argparse.Namespace, **people) -> str:
    """Grow the database to ``size`` predictions and time the pages on it: the table's row."""
    from django.db import connection

    from classifier.models import Prediction
    from classifier.selectors import site_stats

    started = time.perf_counter()
    insert(size - Prediction.objects.count(), **people)
    if connection.vendor == "postgresql":
        # What autovacuum does to a table after inserts: statistics, and a visibility map
        # for index-only scans.
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    inserted = time.perf_counter() - started
    stats_ms, queries = timed(client, "/stats/", args.runs)
    history_ms, _ = timed(client, "/history/", args.runs)
    selector_samples = []
    for _ in range(args.runs):
        begun = time.perf_counter()
        site_stats()
        selector_samples.append((time.perf_counter() - begun) * 1000)
    line = f"{size:>12,} {inserted:>9.1f} {stats_ms:>9.1f} {queries:>8} "
    line += f"{statistics.median(selector_samples):>14.1f} {history_ms:>11.1f} {stats_ms / history_ms:>14.2f}"
    if args.before:
        before_ms = before_code(max(1, min(args.runs, 3)))
        line += f" {before_ms:>10.1f} {before_ms / stats_ms:>11.1f}"
    return line


def main() -> None:
    args = _arguments()
    logging.getLogger("axes").setLevel(logging.WARNING)  # a line per force_login otherwise
    warnings.filterwarnings("ignore", message="No directory at")  # whitenoise: no collectstatic here
    # With DATABASE_URL naming a PostgreSQL server, a database of its own there, dropped after.
    url = os.environ.get("DATABASE_URL", "")
    postgres = ScratchPostgres(url) if url.startswith(("postgres://", "postgresql://")) else None
    stack = Stack(start=False, database_url=postgres.create() if postgres else None)
    try:
        with stack:
            from django.db import connection
            from django.test import Client

            rng = random.Random(args.seed)
            staff, owners, versions = _people_and_versions()
            client = Client()
            client.force_login(staff)
            print(f"stack: {stack.describe()} ({connection.vendor}); {args.runs} timed requests per figure")
            header = f"{'predictions':>12} {'insert s':>9} {'stats ms':>9} {'queries':>8} {'site_stats ms':>14}"
            header += f" {'history ms':>11} {'stats/history':>14}" + (
                f" {'before ms':>10} {'before/now':>11}" * args.before
            )
            print(header)
            for size in args.predictions:
                line = _size_line(size, client, args, owners=owners, versions=versions, staff=staff, rng=rng)
                print(line, flush=True)
            print("\ntargets: the statistics page under 300 ms with ~11 images, under 1 s with 200,000 predictions")
    finally:
        if postgres:
            postgres.drop()
        shutil.rmtree(stack.scratch, ignore_errors=True)  # the SQLite file alone takes 500 MB at 200,000


if __name__ == "__main__":
    main()
