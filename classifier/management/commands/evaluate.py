import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from classifier.services.modelling import model_evaluate, model_evaluate_real
from ml.fitting.data import MnistDataError


class Command(BaseCommand):
    help = "Evaluate a model on the 10,000 MNIST test images (and optionally on realistic uploads, other writers, "
    "non-digits and whole numbers)."

    def add_arguments(self, parser):
        parser.add_argument("--model", type=Path, help="model directory or .keras file (default: the shipped model)")
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument(
            "--realistic",
            type=int,
            default=0,
            metavar="N",
            help="also render N realistic uploads (photos, canvas, screenshots...) from the test set",
        )
        parser.add_argument(
            "--styles",
            type=int,
            default=0,
            metavar="N",
            help="also N test digits per stand-in for other writers and scanners (European forms, low-resolution "
            "scans, slant, fine pens), and scikit-learn's 1,797 digits by 43 writers",
        )
        parser.add_argument(
            "--non-digits",
            type=int,
            default=0,
            metavar="N",
            help="also N generated images that are not one digit (letters, words, symbols, shapes, scribbles, "
            "numbers, photos of things): how many come back unsure, not a digit or refused",
        )
        parser.add_argument(
            "--numbers",
            type=int,
            default=0,
            metavar="N",
            help="also N numbers of 2 to 8 test digits, written as people write them (gaps, drift, sizes, touching "
            "pairs) and rendered as realistic uploads: how many are read exactly, and per digit",
        )
        parser.add_argument(
            "--singles",
            type=int,
            default=0,
            metavar="N",
            help="also single digits of every kind (N MNIST test PNGs, N realistic uploads, N per stand-in, and "
            "scikit-learn's 1,797) read as the worker reads them (auto) beside the model's own reading: how many "
            "come back as several digits, how many get the same digit",
        )
        parser.add_argument(
            "--coverage-plot",
            type=Path,
            metavar="PNG",
            help="draw accuracy against coverage (MNIST test and, with --realistic, realistic uploads) to this file",
        )
        parser.add_argument("--seed", type=int, default=0, help="seed for --realistic, --styles and --non-digits")
        parser.add_argument(
            "--real",
            action="store_true",
            help="instead: every real set we have (MNIST test, realistic uploads, scikit-learn's 43 writers, and the "
            "folders of REAL_DIGITS_DIR) and the stand-ins, accuracy and honesty per set in one table "
            "(--realistic, --styles and --non-digits give their sizes: 2,000, 500 and 500 when not given)",
        )
        parser.add_argument(
            "--record",
            action="store_true",
            help="with --real and --model: also write the report into that model's metadata (real_evaluation), "
            "as a shipped model records what it was chosen on",
        )
        parser.add_argument(
            "--against",
            type=Path,
            metavar="MODEL",
            help="with --real: read every set with this model too (the one the model would replace), compare them "
            "image by image, and say whether the model would ship",
        )

    def handle(self, *args, model, realistic, styles, non_digits, numbers, singles, coverage_plot, seed, **options):
        if options["against"] and not options["real"]:
            raise CommandError("--against compares models on the real sets: give --real as well.")
        if options["record"] and not (options["real"] and model):
            raise CommandError("--record writes the real sets' report into a model's metadata: give --real and --model")
        if options["real"]:
            try:
                report = model_evaluate_real(
                    model_path=model,
                    against=options["against"],
                    realistic=realistic or 2000,
                    styles=styles or 500,
                    non_digits=non_digits or 500,
                    seed=seed,
                    record=options["record"],
                )
            except (FileNotFoundError, ValueError, MnistDataError) as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(json.dumps(report) if options["json"] else real_table(report))
            return
        try:
            report = model_evaluate(
                model_path=model,
                realistic=realistic,
                styles=styles,
                non_digits=non_digits,
                numbers=numbers,
                singles=singles,
                seed=seed,
                coverage_plot=coverage_plot,
            )
        except (FileNotFoundError, ValueError, MnistDataError) as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(json.dumps(report))
            return
        self.stdout.write(f"model     {report['model']}")
        self.stdout.write(
            f"MNIST     accuracy {report['accuracy']:.2%}  loss {report['loss']:.4f}  "
            f"({report['errors']} wrong of {report['samples']:,})"
        )
        self.stdout.write(f"          {_ece(report)}")
        self.stdout.write(f"          {_verdicts(report)}")
        if "realistic" in report:
            real = report["realistic"]
            self.stdout.write(
                f"realistic accuracy {real['accuracy']:.2%} of {real['samples']:,} "
                f"({real['refused']} refused, seed {real['seed']})"
            )
            if "ece" in real:
                self.stdout.write(f"          {_ece(real)}")
                self.stdout.write(f"          {_verdicts(real)}")
            for name, accuracy in real["by_scenario"].items():
                self.stdout.write(f"  {name:<11} {accuracy:.2%}")
        if "non_digits" in report:
            caught = report["non_digits"]
            self.stdout.write(
                f"non-digits caught {caught['caught']:.1%} of {caught['samples']:,} (unsure, not a digit or refused; "
                f"seed {caught['seed']})"
            )
            for family, share in caught["by_family"].items():
                self.stdout.write(f"  {family:<11} {share:.1%}")
        if "numbers" in report:
            self.stdout.write(_numbers(report["numbers"]))
        if "singles" in report:
            self.stdout.write(_singles(report["singles"]))
        if "coverage_plot" in report:
            self.stdout.write(f"coverage plot in {report['coverage_plot']}")
        if "styles" in report:
            self.stdout.write(f"other writers and scanners (seed {report['styles']['seed']})")
            for name, result in report["styles"].items():
                if name != "seed":
                    self.stdout.write(
                        f"  {name:<11} {result['accuracy']:.2%} of {result['samples']:,} ({result['refused']} refused)"
                    )


def _ece(report: dict) -> str:
    return (
        f"calibration error (ECE, 15 bins) {100 * report['ece']:.2f}% "
        f"(the model's own, uncalibrated: {100 * report['ece_uncalibrated']:.2f}%)"
    )


def _verdicts(report: dict) -> str:
    verdicts = report["verdicts"]
    accuracy = verdicts["digit_accuracy"]
    return (
        f"verdicts: digit {verdicts['digit']:.1%} (right {'-' if accuracy is None else f'{accuracy:.2%}'}), "
        f"unsure {verdicts['unsure']:.1%}, not a digit {verdicts['not_a_digit']:.1%}"
    )


def _singles(kinds: dict) -> str:
    lines = [
        "single digits, the worker's reading (auto) beside the model's own (predict_images)",
        f"  {'kind':<12} {'images':>6} {'several':>8} {'same digit':>11} {'accuracy own':>13} {'accuracy auto':>14}",
    ]
    for name, row in kinds.items():
        lines.append(
            f"  {name:<12} {row['samples']:>6,} {row['several']:>8} {row['same_digit']:>11.2%} "
            f"{row['accuracy_single_path']:>13.2%} {row['accuracy_worker_path']:>14.2%}"
        )
    return "\n".join(lines)


def _numbers(result: dict) -> str:
    def share(value):
        return "-" if value is None else f"{value:.1%}"

    real = result["real_writers"]
    return (
        f"numbers   read exactly {result['exact']:.1%} of {result['numbers']:,} (seed {result['seed']}); "
        f"per digit {result['digit_accuracy']:.1%}; with touching digits {share(result['touching_exact'])} "
        f"of {result['touching_numbers']}, digits apart {share(result['apart_exact'])}; "
        f"digit count right {share(result['digit_count_right'])}\n"
        f"          numbers by real writers (load_digits) read exactly {real['exact']:.1%} of {real['numbers']:,}; "
        f"per digit {real['digit_accuracy']:.1%}; digit count right {share(real['digit_count_right'])}\n"
        "          the same numbers photographed, in pencil and scanned, read exactly: "
        + ", ".join(f"on {paper} paper {found['exact']:.1%}" for paper, found in result["papers"].items())
        + f"\n          the numbers photographed {result['askew']['turn']:.0f} degrees askew read exactly "
        f"{result['askew']['exact']:.1%}\n"
        f"          by length: {_by(result['by_length'])}\n"
        f"          by scenario: {_by(result['by_scenario'])}\n"
        f"          real writers by length: {_by(real['by_length'])}"
    )


def _by(shares: dict) -> str:
    return ", ".join(f"{name} {share:.1%}" for name, share in shares.items())


def _share(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def real_table(report: dict) -> str:
    """One table: each real set, then each stand-in, read by the model (and the one it would
    replace); figures in percent."""
    against = report.get("against")
    head = f"{'set':<24} {'images':>6} {'acc':>6} {'digit':>6} {'right':>6} {'unsure':>6} {'not':>5} {'refused':>7}"
    if against:
        head += f" | {'was':>6} {'diff':>6} {'p':>6}"
    lines = [f"model {report['model']['path']}" + (f" against {against['path']}" if against else ""), head]
    for group, title in (("sets", "real sets"), ("stand_ins", "stand-ins (never decide)")):
        lines.append(f"-- {title}")
        for name, row in report["model"][group].items():
            line = (
                f"{name:<24} {row['samples']:>6,} {_share(row['accuracy']):>6} {_share(row['digit']):>6} "
                f"{_share(row['digit_accuracy']):>6} {_share(row['unsure']):>6} {_share(row['not_a_digit']):>5} "
                f"{row['refused']:>7}"
            )
            if against:
                was = against[group][name]["accuracy"]
                compared = report["compared"].get(name) if group == "sets" else None
                line += f" | {_share(was):>6}"
                if compared:
                    flag = "  worse" if compared["worse"] else ""
                    line += f" {100 * compared['difference']:>+6.2f} {compared['p_value']:>6.3f}{flag}"
            lines.append(line)
    for role in ("model", "against"):
        if role in report and "non_digits" in report[role]:
            caught = report[role]["non_digits"]
            lines.append(
                f"non-digits caught ({role}, generated: a stand-in) {100 * caught['caught']:.1f}%"
                f" of {caught['samples']}"
            )
    lines.append(
        'acc: right of all; digit: answered "digit"; right: right of those; unsure, not: not a digit (percent)'
    )
    if against:
        verdict = "ships" if report["ships"] else "does not ship: worse on " + ", ".join(report["worse_on"])
        lines.append(
            f"the model {verdict} (a model ships where no real set reads worse by more than "
            f"{100 * report['noise']:.1f} points)"
        )
    return "\n".join(lines)
