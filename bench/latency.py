"""Upload to stored prediction through the real HTTP path (gunicorn, the API), the broker and
a worker: one upload at a time, then a sustained rate (50 uploads a second by default).

Latency is measured from just before the request is sent to the moment the worker stored the
prediction (its ``created_at``, same machine clock). Run: ``make bench`` or
``.venv/bin/python bench/latency.py [--single 200] [--rate 50] [--seconds 20] [--plot PATH]``.
"""

from __future__ import annotations

import argparse
import threading
import time
from datetime import UTC, datetime

from stack import REPO, Stack, mnist_uploads, percentiles


def latencies(sent: dict[int, datetime]) -> list[float]:
    from classifier.models import Prediction

    stored = dict(Prediction.objects.filter(image_id__in=sent).values_list("image_id", "created_at"))
    missing = set(sent) - set(stored)
    if missing:
        raise SystemExit(f"{len(missing)} uploads have no prediction")
    return [(stored[pk] - sent[pk]).total_seconds() * 1000 for pk in sent]


def _one_at_a_time(stack: Stack, uploads: list) -> list[float]:
    """The next upload starts when the previous prediction is stored."""
    single: dict[int, datetime] = {}
    for name, data, _ in uploads:
        sent = datetime.now(UTC)
        image_id = stack.upload([(name, data)]).json()["images"][0]["id"]
        single[image_id] = sent
        stack.wait_until_finished()
    return latencies(single)


def _sustained(stack: Stack, uploads: list, *, rate: float, count: int) -> tuple[list[float], float]:
    """Open loop, one upload every 1/rate seconds from several threads: the latencies and the
    rate achieved."""
    sustained: dict[int, datetime] = {}
    lock = threading.Lock()
    interval = 1 / rate
    start = time.monotonic()

    def send(index: int) -> None:
        time.sleep(max(0.0, start + index * interval - time.monotonic()))
        name, data, _ = uploads[index]
        sent = datetime.now(UTC)
        image_id = stack.upload([(name, data)]).json()["images"][0]["id"]
        with lock:
            sustained[image_id] = sent

    threads = [threading.Thread(target=send, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    achieved = count / (time.monotonic() - start)
    stack.wait_until_finished()
    return latencies(sustained), achieved


def _plot(path: str, one_at_a_time: list[float], under_load: list[float], rate: float) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 3.2))
    axes = figure.subplots()
    for samples, label in [(one_at_a_time, "one at a time"), (under_load, f"sustained {rate:.0f}/s")]:
        ordered = sorted(samples)
        axes.plot(ordered, [100 * (i + 1) / len(ordered) for i in range(len(ordered))], label=label)
    for target, style in [(100, ":"), (300, "--"), (2000, "-.")]:
        axes.axvline(target, color="grey", linestyle=style, linewidth=0.8)
    axes.set_xscale("log")
    axes.set_xlabel("upload to stored prediction (ms, log scale); grey lines: 100, 300, 2000 ms targets")
    axes.set_ylabel("% of uploads")
    axes.set_title(f"digitsite latency, {datetime.now(UTC):%Y-%m-%d}, 2 cores")
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--single", type=int, default=200, help="uploads sent one at a time")
    parser.add_argument("--rate", type=float, default=50, help="uploads per second in the sustained run")
    parser.add_argument("--seconds", type=float, default=20, help="length of the sustained run")
    parser.add_argument("--plot", default=str(REPO / "docs" / "performance-latency.png"))
    args = parser.parse_args()

    uploads = mnist_uploads(max(args.single, int(args.rate * args.seconds)))
    count = int(args.rate * args.seconds)
    with Stack() as stack:
        print(f"stack: {stack.describe()}")
        one_at_a_time = _one_at_a_time(stack, uploads[: args.single])
        under_load, achieved = _sustained(stack, uploads, rate=args.rate, count=count)
        memory = stack.memory()

    q1, q2 = percentiles(one_at_a_time), percentiles(under_load)
    print(f"\none at a time ({args.single} uploads)")
    print(
        f"  upload to stored prediction  p50 {q1[0]:6.0f} ms  p95 {q1[1]:6.0f} ms  p99 {q1[2]:6.0f} ms"
        f"   (targets: p50 <= 100, p95 <= 300)"
    )
    print(f"sustained {args.rate:.0f}/s for {args.seconds:.0f} s ({count} uploads, achieved {achieved:.1f}/s)")
    print(
        f"  upload to stored prediction  p50 {q2[0]:6.0f} ms  p95 {q2[1]:6.0f} ms  p99 {q2[2]:6.0f} ms"
        f"   (target: p95 <= 2000)"
    )
    print(
        f"memory: worker process with the model {memory['worker_child_mb']:.0f} MB (target <= 700), "
        f"worker parent {memory['worker_parent_mb']:.0f} MB, web process {memory['web_mb']:.0f} MB; "
        f"TensorFlow in the web process: {'yes' if memory['web_loads_tensorflow'] else 'no'}"
    )
    if args.plot:
        _plot(args.plot, one_at_a_time, under_load, args.rate)


if __name__ == "__main__":
    main()
