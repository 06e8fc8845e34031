from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from classifier.management.progress import line_logger
from classifier.services.modelling import model_calibrate_numbers
from ml.fitting.data import MnistDataError


class Command(BaseCommand):
    help = (
        "Fit how sure a model's whole numbers are: numbers written with the training digits it never trained on, "
        "read as the worker reads them, and a calibrated probability that a reading is exactly right; kept in the "
        "bundle as numbers.json. A number is answered sure where that probability reaches the level chosen."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model", type=Path, help="model directory (default: the active model)")
        parser.add_argument("--numbers", type=int, default=3000, help="numbers to fit on (default 3,000)")
        parser.add_argument("--seed", type=int, default=0, help="seed the numbers are drawn with (default 0)")

    def handle(self, *args, model, numbers, seed, **options):
        if numbers < 100:
            raise CommandError("--numbers must be at least 100: fewer cannot choose a level")
        try:
            fitted = model_calibrate_numbers(model_path=model, numbers=numbers, seed=seed, log=line_logger(self))
        except (FileNotFoundError, ValueError, MnistDataError) as exc:
            raise CommandError(str(exc)) from exc
        out_of_fold = fitted["out_of_fold"]
        sure_exact = "-" if out_of_fold["sure_exact"] is None else f"{out_of_fold['sure_exact']:.2%}"
        self.stdout.write(
            self.style.SUCCESS(
                f"sure from {fitted['sure_above']:.3f}: {out_of_fold['sure']:.1%} of the numbers answered sure, "
                f"{sure_exact} of those exact (out of fold); written to {fitted['path']}"
            )
        )
