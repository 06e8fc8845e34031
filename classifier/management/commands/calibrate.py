from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from classifier.management.progress import line_logger
from classifier.services.modelling import model_calibrate
from ml.fitting.data import MnistDataError


class Command(BaseCommand):
    help = (
        "Fit a model's calibrated confidence again on the training digits it never trained on (its holdout) "
        "and record it in its bundle. Training and retraining do this themselves."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model", type=Path, help="model directory or .keras file (default: the active model)")
        parser.add_argument(
            "--keep-detector",
            action="store_true",
            help="keep the bundle's detector (reject.keras) and choose only its thresholds again, for this model",
        )

    def handle(self, *args, model, keep_detector, **options):
        try:
            calibration = model_calibrate(model_path=model, keep_detector=keep_detector, log=line_logger(self))
        except (FileNotFoundError, ValueError, MnistDataError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"temperature {calibration['temperature']:.3f}; MNIST test ECE "
                f"{100 * calibration['test_ece_before']:.2f}% -> {100 * calibration['test_ece_after']:.2f}%"
            )
        )
