import time
from datetime import datetime, timedelta
from itertools import pairwise

import pytest
from django.utils import timezone

from classifier.models import RetrainRun
from classifier.services.retrain_progress import StageProgress, stage_expected_seconds


def _gaps(updates: list[datetime]) -> list[float]:
    return [(later - earlier).total_seconds() for earlier, later in pairwise(updates)]


def test_a_stage_that_says_nothing_is_updated_by_the_ticker_with_its_estimate():
    """Calibration reports no steps: the ticker writes it again and again, its progress and
    time left from what the same stage took before."""
    heard: list[dict] = []
    stages = StageProgress(
        expected={"calibrating": 2.0}, on_change=lambda s, fields: heard.append(dict(s[-1])), every=0.1
    )
    stages.ticking()
    try:
        stages.begin("calibrating")
        time.sleep(1.0)  # the stage at work, silent
    finally:
        stages.stop()
    stages.end()
    ticks = [h for h in heard if h["finished_at"] is None]
    assert len(ticks) >= 5, "the ticker did not write the silent stage"
    assert ticks[0]["progress"] == 0.0 and ticks[0]["left_seconds"] == 2.0  # from its first second
    assert all(t["estimated"] for t in ticks)
    progress = [t["progress"] for t in ticks]
    left = [t["left_seconds"] for t in ticks]
    assert progress == sorted(progress) and 0.3 < progress[-1] <= 0.95
    assert left == sorted(left, reverse=True) and left[-1] < 1.6
    updates = [datetime.fromisoformat(t["updated_at"]) for t in ticks]
    assert max(_gaps(updates)) < 1.0
    done = heard[-1]
    assert done["finished_at"] and done["progress"] == 1.0 and done["left_seconds"] == 0.0
    assert done["longest_gap"] < 1.0


def test_a_stage_with_steps_says_its_own_progress_and_time_left():
    stages = StageProgress(expected={}, on_change=lambda s, fields: None, every=60)
    stages.begin("fine-tuning")
    assert stages.stages[-1]["progress"] is None and stages.stages[-1]["left_seconds"] is None  # nothing to go by
    time.sleep(0.2)
    stages.line("  epoch 1/2  25%  loss 0.3000  acc 0.9000  1s")
    current = stages.stages[-1]
    assert current["progress"] == 0.125 and not current["estimated"] and current["detail"] == "epoch 1 of 2"
    # An eighth done in the time so far: seven eighths left, seven times as long.
    started, updated = (datetime.fromisoformat(current[key]) for key in ("started_at", "updated_at"))
    assert current["left_seconds"] == pytest.approx(7 * (updated - started).total_seconds())
    stages.begin("judging")  # without history or steps, it says so
    assert stages.stages[0]["finished_at"] and stages.stages[-1]["progress"] is None


@pytest.mark.django_db
def test_a_stage_is_expected_to_take_what_it_took_in_the_last_finished_runs():
    start = timezone.now()

    def finished(status, **seconds):
        stages = [
            {"name": name, "started_at": start.isoformat(), "finished_at": (start + timedelta(seconds=s)).isoformat()}
            for name, s in seconds.items()
        ]
        run = RetrainRun.objects.create(status=status, in_progress=False, stages=stages)
        RetrainRun.objects.filter(pk=run.pk).update(finished_at=timezone.now())
        return run

    finished(RetrainRun.Status.PROMOTED, judging=10)
    finished(RetrainRun.Status.KEPT, judging=30, calibrating=100)
    finished(RetrainRun.Status.FAILED, judging=1000)  # a failed run says nothing of how long it takes
    last = finished(RetrainRun.Status.PROMOTED, judging=40)
    assert stage_expected_seconds() == {"judging": 30.0, "calibrating": 100.0}  # medians
    assert stage_expected_seconds(exclude=last.pk) == {"judging": 20.0, "calibrating": 100.0}
