from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from classifier.management.progress import line_logger, positive_epochs, stage_printer
from classifier.services import NothingToLearn, RetrainError, retrain_request
from classifier.services.retraining import model_retrain


class Command(BaseCommand):
    help = (
        "Fine-tune the active model on MNIST plus the flagged images, evaluate it, keep it as a new "
        "model version, and activate it only if it is better on the corrections (a fifth held out) and reads none "
        "of the judging sets (MNIST, the real sets, realistic uploads, non-digits, numbers) worse."
    )

    def add_arguments(self, parser):
        parser.add_argument("--epochs", type=int, help="default: the RETRAIN_EPOCHS setting")
        parser.add_argument("--dry-run", action="store_true", help="show what would be trained, train nothing")
        parser.add_argument(
            "--force",
            action="store_true",
            help="activate the new version whatever its results (with no corrections: fine-tune on MNIST alone)",
        )
        parser.add_argument(
            "--background",
            action="store_true",
            help="queue it for a worker of the training queue instead of running it here",
        )

    def handle(self, *args, epochs, dry_run, force, background, **options):
        positive_epochs(epochs)
        if background:
            try:
                run = retrain_request(epochs=epochs, force=force)
            except RetrainError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(
                f"queued on the training queue as retrain run {run.pk} (the model versions page follows it)"
            )
            return
        log = line_logger(self)
        stages = stage_printer(self, every=settings.RETRAIN_PROGRESS_SECONDS).ticking()

        def progress(line: str) -> None:
            log(line)
            stages.line(line)

        try:
            report = model_retrain(epochs=epochs, dry_run=dry_run, force=force, log=progress, stage=stages.begin)
        except NothingToLearn as exc:
            raise CommandError(f"{exc} (use --force to fine-tune on MNIST alone)") from exc
        except RetrainError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            stages.stop()
        if report.candidate is None:
            self.stdout.write(report.reason)
            return
        width = max(len(row[0]) for row in report.rows)
        self.stdout.write("")
        for metric, active, candidate in report.rows:
            self.stdout.write(f"{metric:<{width}}  {active:>10}  {candidate:>10}")
        self.stdout.write("")
        verdict = (
            f"v{report.candidate.number} is now active"
            if report.promoted
            else (f"kept v{report.active.number}; v{report.candidate.number} is stored but not active")
        )
        style = self.style.SUCCESS if report.promoted else self.style.WARNING
        self.stdout.write(style(f"{verdict}: {report.reason}."))
        if report.caveat:
            self.stdout.write(report.caveat)
