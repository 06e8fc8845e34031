"""A retrain's stages as they go, with their progress and the time left, for the admin's page
(each stage written to the RetrainRun) and the `retrain` command's terminal.

A stage's progress comes from its own steps where it reports them (a fitting's epoch lines,
``ml.fitting.loop``), else from how long the same stage took in the last retrains that finished.
A ticker thread writes the current stage again every ``RETRAIN_PROGRESS_SECONDS`` while the
stage itself says nothing (calibration and judging have no steps to report), so that no stage
is silent for long; each stage keeps the longest gap between two of its updates."""

from __future__ import annotations

import re
import statistics
import threading
from collections.abc import Callable
from datetime import datetime

from django.db import DatabaseError, connection
from django.utils import timezone

from classifier.models import RetrainRun

# A fitting's progress line ("  epoch 2/5  25%  ..." within an epoch, "epoch 2/5  loss ..." at
# its end; ``ml.fitting.loop``).
EPOCH_LINE = re.compile(r"^\s*epoch (\d+)/(\d+)(?:\s+(\d+)%)?")
# The stages whose fitting is all their work: their epoch lines tell the time left. Another
# stage's fitting (calibration fits the reject option's detector) is only part of it.
STEPPED = {"fine-tuning"}
# An estimate from earlier runs never says a stage is done before it is.
MAX_ESTIMATED_PROGRESS = 0.95
# How many finished retrains a stage's expected duration is the median of.
HISTORY_RUNS = 3


def stage_expected_seconds(*, exclude: int | None = None) -> dict[str, float]:
    """Each stage's median duration in the last ``HISTORY_RUNS`` retrains that finished
    (promoted or kept), by name; a stage none of them went through has none."""
    runs = (
        RetrainRun.objects.filter(status__in=[RetrainRun.Status.PROMOTED, RetrainRun.Status.KEPT])
        .exclude(pk=exclude)
        .order_by("-finished_at")
        .values_list("stages", flat=True)[:HISTORY_RUNS]
    )
    durations: dict[str, list[float]] = {}
    for stages in runs:
        for stage in stages:
            if stage.get("finished_at"):
                seconds = _seconds(stage["started_at"], stage["finished_at"])
                durations.setdefault(stage["name"], []).append(seconds)
    return {name: statistics.median(values) for name, values in durations.items()}


def _seconds(start: str, end: str) -> float:
    return max((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 0.0)


class StageProgress:
    """The stages of one retrain as they go. ``on_change(stages, fields)`` hears every update
    (``fields``: the fine-tuning's epoch, for the RetrainRun); ``ticking()`` starts the thread
    that updates the current stage every ``every`` seconds while it says nothing itself.

    Each stage is a dict: ``name``, ``started_at``, ``finished_at`` (ISO times), ``progress``
    (0-1, or None while nothing tells), ``estimated`` (the progress is from earlier runs, not
    its own steps), ``detail`` (its latest line), ``updated_at``, ``left_seconds`` (the time
    left, None where nothing tells), ``expected_seconds`` (from earlier runs) and
    ``longest_gap`` (the most seconds between two of its updates, its start and end included)."""

    def __init__(self, *, expected: dict[str, float], on_change: Callable[[list[dict], dict], None], every: float):
        self.expected, self.on_change, self.every = expected, on_change, every
        self.stages: list[dict] = []
        self._steps: float | None = None  # the current stage's own progress, from its epoch lines
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def begin(self, name: str) -> None:
        with self._lock:
            now = timezone.now()
            self._finish(now)
            self._steps = None
            stamp = now.isoformat()
            expected = self.expected.get(name)
            self.stages.append(
                {
                    "name": name,
                    "started_at": stamp,
                    "finished_at": None,
                    "progress": 0.0 if expected else None,
                    "estimated": bool(expected),
                    "detail": "",
                    "updated_at": stamp,
                    "left_seconds": expected,
                    "expected_seconds": expected,
                    "longest_gap": 0.0,
                }
            )
            self._changed({})

    def line(self, line: str) -> None:
        with self._lock:
            if not self.stages:
                return
            current, fields = self.stages[-1], {}
            if match := EPOCH_LINE.match(line):
                epoch, total = int(match[1]), int(match[2])
                done = (epoch - 1 + int(match[3]) / 100) if match[3] else epoch
                self._steps = min(done / total, 1.0)
                current["detail"] = f"epoch {epoch} of {total}"
                if current["name"] == "fine-tuning":
                    fields = {"epoch": epoch, "epochs_total": total}
            else:
                current["detail"] = line.strip()[:160]
            self._update(timezone.now())
            self._changed(fields)

    def tick(self) -> None:
        """The current stage again, with its time so far and left, where it has been silent
        for ``every`` seconds."""
        with self._lock:
            if not self.stages or self.stages[-1]["finished_at"] is not None:
                return
            now = timezone.now()
            if (now - datetime.fromisoformat(self.stages[-1]["updated_at"])).total_seconds() < 0.9 * self.every:
                return
            self._update(now)
            self._changed({})

    def end(self) -> None:
        with self._lock:
            self._finish(timezone.now())
            self._changed({})

    def ticking(self) -> StageProgress:
        """Start the ticker; ``stop()`` ends it."""

        def run() -> None:
            try:
                while not self._stop.wait(self.every):
                    self.tick()
            finally:
                connection.close()  # this thread's own connection, if it opened one

        self._thread = threading.Thread(target=run, name="digitsite-retrain-progress", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.every + 5)

    def _update(self, now: datetime) -> None:
        """The current stage's progress and time left as of ``now``, and its longest gap."""
        current = self.stages[-1]
        current["longest_gap"] = max(current["longest_gap"], _seconds(current["updated_at"], now.isoformat()))
        current["updated_at"] = now.isoformat()
        elapsed = _seconds(current["started_at"], now.isoformat())
        expected = current["expected_seconds"]
        steps = self._steps
        if steps is not None and (current["name"] in STEPPED or not expected):
            current["progress"], current["estimated"] = steps, False
            current["left_seconds"] = elapsed * (1 - steps) / steps if steps > 0 else expected
        elif expected:
            current["progress"] = min(elapsed / expected, MAX_ESTIMATED_PROGRESS)
            current["estimated"] = True
            # Past the earlier runs' time, nothing says how much is left.
            current["left_seconds"] = expected - elapsed if elapsed < expected else None

    def _finish(self, now: datetime) -> None:
        if self.stages and self.stages[-1]["finished_at"] is None:
            current = self.stages[-1]
            self._update(now)
            current["finished_at"] = now.isoformat()
            current["progress"], current["left_seconds"] = 1.0, 0.0

    def _changed(self, fields: dict) -> None:
        try:
            self.on_change(self.stages, fields)
        except DatabaseError:  # a tick that cannot be written now: the next one may be
            if threading.current_thread() is not self._thread:
                raise


def run_recorder(run_id: int, *, every: float) -> StageProgress:
    """A RetrainRun's stages, written to its row as they change."""

    def save(stages: list[dict], fields: dict) -> None:
        RetrainRun.objects.filter(pk=run_id).update(stages=stages, **fields)

    return StageProgress(expected=stage_expected_seconds(exclude=run_id), on_change=save, every=every)
