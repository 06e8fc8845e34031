from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from classifier.management.progress import line_logger, positive_epochs
from classifier.services.modelling import line_reader_train
from ml.fitting.data import MnistDataError


class Command(BaseCommand):
    help = (
        "Train the line reader (CNN + BiGRU with CTC loss) that reads a whole number at once, on numbers rendered "
        "from MNIST's training digits as people photograph, scan and draw them."
    )

    def add_arguments(self, parser):
        parser.add_argument("--lines", type=int, default=60_000, help="training lines (default: 60000)")
        parser.add_argument("--validation", type=int, default=2_000, help="lines that choose the epoch kept")
        parser.add_argument("--epochs", type=int, default=10)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--workers", type=int, default=2, help="processes that render the lines")
        parser.add_argument("--out", type=Path, help="output directory (default: var/models/line_reader)")

    def handle(self, *args, lines, validation, epochs, seed, workers, out, **options):
        positive_epochs(epochs)
        if lines < 1 or validation < 1 or workers < 1:
            raise CommandError("--lines, --validation and --workers must be at least 1")
        try:
            result = line_reader_train(
                out_dir=out,
                lines=lines,
                validation=validation,
                epochs=epochs,
                seed=seed,
                workers=workers,
                log=line_logger(self),
            )
        except MnistDataError as exc:
            raise CommandError(f"cannot load MNIST: {exc}") from exc
        self.stdout.write(self.style.SUCCESS(f"validation lines read exactly: {result['validation_exact']:.2%}"))
