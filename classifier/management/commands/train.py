import argparse
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from classifier.management.progress import line_logger, positive_epochs
from classifier.services.modelling import model_train
from ml.fitting.data import MnistDataError
from ml.fitting.reject import DETECTOR_DIGITS
from ml.fitting.train import TrainConfig
from ml.serving.architectures import ARCHITECTURES


class Command(BaseCommand):
    help = "Train a digit model on MNIST and write it with its metadata and plots."

    def add_arguments(self, parser):
        parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="deep")
        parser.add_argument("--epochs", type=int, help="default: the architecture's recipe")
        parser.add_argument("--seed", type=int, help="default: 42")
        parser.add_argument("--out", type=Path, help="output directory (default: var/models/ARCH)")
        parser.add_argument("--limit", type=int, help="train on the first N images only (quick runs)")
        parser.add_argument(
            "--writers",
            action=argparse.BooleanOptionalAction,
            help="also augment for other writers and scanners: elastic distortion, low resolution, digits stretched "
            "to fill a box, binary scans, flagged 1s and crossed 7s (default: the architecture's recipe)",
        )
        parser.add_argument(
            "--clean-epochs",
            type=int,
            help="with --writers, train the last N epochs without the writer augmentation (default: the "
            "architecture's recipe)",
        )
        parser.add_argument(
            "--holdout",
            type=int,
            help="never train on the last N training images: they calibrate the confidence (default: the "
            "architecture's recipe)",
        )
        parser.add_argument(
            "--detector-digits",
            type=int,
            help="with --holdout: the reject option's detector learns from this many training digits, three ways, "
            f"against three times as many generated non-digits; 0 for none (default: {DETECTOR_DIGITS})",
        )
        parser.add_argument(
            "--members",
            type=int,
            help="train that many models (seeds SEED, SEED+1, ...) and serve their mean as one model "
            "(default: the architecture's recipe)",
        )
        parser.add_argument(
            "--teacher",
            type=Path,
            metavar="MODEL",
            help="also learn from this model's softened answers (distillation): an ensemble too costly to serve, "
            "taught to a model that costs what one member does",
        )
        parser.add_argument(
            "--plain-members",
            type=int,
            metavar="N",
            help="with --members and --writers: the first N members train on MNIST alone, without the writer "
            "augmentation (default: the architecture's recipe)",
        )

    def handle(
        self,
        *args,
        arch,
        epochs,
        seed,
        out,
        limit,
        writers,
        members,
        plain_members,
        teacher,
        clean_epochs,
        holdout,
        detector_digits,
        **options,
    ):
        positive_epochs(epochs)
        recipe = {
            "epochs": epochs,
            "seed": seed,
            "train_limit": limit,
            "writers": writers,
            "members": members,
            "plain_members": plain_members,
            "teacher": str(teacher) if teacher else None,
            "clean_epochs": clean_epochs,
            "holdout": holdout,
            "detector_digits": detector_digits,
        }
        try:
            TrainConfig.for_arch(arch, **recipe)  # the recipe's own rules, checked before any work
        except ValueError as exc:
            raise CommandError(f"{exc}.") from exc
        try:
            result = model_train(arch=arch, out_dir=out, log=line_logger(self), **recipe)
        except MnistDataError as exc:
            raise CommandError(f"cannot load MNIST: {exc}") from exc
        self.stdout.write(self.style.SUCCESS(f"test accuracy {result.test_accuracy:.2%}; model in {result.out_dir}"))
