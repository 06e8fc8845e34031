from django.core.management.base import BaseCommand, CommandError


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
