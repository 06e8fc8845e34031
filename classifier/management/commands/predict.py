import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from classifier.services.modelling import image_files_predict
from ml.serving.readings import AUTO, READINGS, readings_named
from ml.serving.verdicts import BLANK, REASONS


class Command(BaseCommand):
    help = "Read image files (a digit or a whole number) with the shipped model. Exit status 1 if any file failed."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", type=Path)
        parser.add_argument("--model", type=Path, help="model directory or .keras file")
        parser.add_argument("--json", action="store_true", help="print one JSON array")
        parser.add_argument(
            "--reading",
            choices=READINGS,
            default=AUTO,
            help="what the files show: "
            + readings_named(asides={AUTO: "one digit unless one clearly holds several; the default"}),
        )

    def handle(self, *args, files, model, reading, **options):
        try:
            report = image_files_predict(paths=files, model_path=model, reading=reading)
        except FileNotFoundError as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(json.dumps(report))
        else:
            for item in report:
                if "error" in item:
                    self.stdout.write(self.style.ERROR(f"{item['file']}: {item['error']}"))
                else:
                    self.stdout.write(f"{item['file']}: {_answer(item)}")
        if any("error" in item for item in report):
            raise SystemExit(1)


def _answer(item: dict) -> str:
    """What a person reads: the digit or number, a guess it is not sure of, or that it is no digit."""
    sure = f"{item['confidence']:.1%}"
    if len(item["digits"]) > 1:
        whole = item.get("number_confidence")
        how = f"{whole:.1%} sure of the whole number" if whole is not None else f"least sure digit {sure}"
        if item["verdict"] == "unsure":
            return f"probably {item['number']}, not sure: {item.get('reason') or 'of every digit.'} ({how})"
        return f"{item['number']} ({how})"
    if item.get("reason") == REASONS[BLANK]:
        return f"nothing to read: {item['reason']}"
    if item["verdict"] == "not_a_digit":
        return f"not a digit (best guess {item['digit']}, {sure})"
    if item["verdict"] == "unsure":
        return f"probably {item['digit']}, not sure ({sure})"
    return f"{item['digit']} ({sure})"
