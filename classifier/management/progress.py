import time
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError

from classifier.models import RetrainRun
from classifier.services.retrain_progress import StageProgress, stage_expected_seconds
from classifier.templatetags.digits import duration


def positive_epochs(epochs: int | None) -> int | None:
    if epochs is not None and epochs < 1:
        raise CommandError("--epochs must be at least 1")
    return epochs


def line_logger(command: BaseCommand):
    """Progress lines written and flushed at once, so long runs show where they are."""

    def log(line: str) -> None:
        command.stdout.write(line)
        command.stdout.flush()

    return log


# The terminal hears a running stage's progress at most this often (besides its own lines).
STAGE_LINE_SECONDS = 10.0


def stage_line(stage: dict) -> str:
    """A stage as the terminal shows it while it runs: "-- fine-tuning: 34%, 1 min 20 s so far,
    about 2 min 30 s left (epoch 1 of 2)"; its first line says what earlier runs took."""
    parts = []
    if stage.get("progress") is not None:
        parts.append(f"{'about ' if stage.get('estimated') else ''}{round(100 * stage['progress'])}%")
    started, updated = (datetime.fromisoformat(stage[key]) for key in ("started_at", "updated_at"))
    parts.append(f"{duration((updated - started).total_seconds())} so far")
    if stage.get("left_seconds") is not None:
        parts.append(f"about {duration(max(stage['left_seconds'], 1))} left")
    elif stage.get("expected_seconds"):
        parts.append(f"taking longer than the last runs' {duration(stage['expected_seconds'])}")
    else:
        parts.append("no estimate yet (no earlier retrain went through this stage)")
    detail = f" ({stage['detail']})" if stage.get("detail") else ""
    return f"-- {RetrainRun.STAGES.get(stage['name'], stage['name']).lower()}: {', '.join(parts)}{detail}"


def stage_printer(command: BaseCommand, *, every: float) -> StageProgress:
    """A retrain's stages for the terminal: each as it begins and, while it runs, its progress
    and time left every ``STAGE_LINE_SECONDS`` (``StageProgress.ticking`` updates it)."""
    log = line_logger(command)
    said = {"stages": 0, "at": 0.0}

    def show(stages: list[dict], fields: dict) -> None:
        now = time.monotonic()
        current = stages[-1]
        if current["finished_at"] is None and (len(stages) > said["stages"] or now - said["at"] >= STAGE_LINE_SECONDS):
            said["stages"], said["at"] = len(stages), now
            log(stage_line(current))

    return StageProgress(expected=stage_expected_seconds(), on_change=show, every=every)
