import json
from dataclasses import fields
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from classifier.services.modelling import model_evaluate, model_evaluate_real
from ml.fitting.data import MnistDataError
from ml.fitting.evaluation import EvaluationPlan

# The command's options as data, in the order --help lists them: (flag, argparse's keywords).
# Those named as ``EvaluationPlan``'s fields fill the plan.
OPTIONS = (
    ("--model", {"type": Path, "help": "model directory or .keras file (default: the shipped model)"}),
    ("--json", {"action": "store_true", "help": "print one JSON object"}),
    (
        "--realistic",
        {
            "type": int,
            "default": 0,
            "metavar": "N",
            "help": "also render N realistic uploads (photos, canvas, screenshots...) from the test set",
        },
    ),
    (
        "--styles",
        {
            "type": int,
            "default": 0,
            "metavar": "N",
            "help": "also N test digits per stand-in for other writers and scanners (European forms, "
            "low-resolution scans, slant, fine pens), and scikit-learn's 1,797 digits by 43 writers",
        },
    ),
    (
        "--non-digits",
        {
            "type": int,
            "default": 0,
            "metavar": "N",
            "help": "also N generated images that are not one digit (letters, words, symbols, shapes, scribbles, "
            "numbers, photos of things): how many come back unsure, not a digit or refused",
        },
    ),
    (
        "--numbers",
        {
            "type": int,
            "default": 0,
            "metavar": "N",
            "help": "also N numbers of 2 to 8 test digits, written as people write them (gaps, drift, sizes, "
            "touching pairs) and rendered as realistic uploads: how many are read exactly, and per digit",
        },
    ),
    (
        "--singles",
        {
            "type": int,
            "default": 0,
            "metavar": "N",
            "help": "also single digits of every kind (N MNIST test PNGs, N realistic uploads, N per stand-in, and "
            "scikit-learn's 1,797) read as the worker reads them (auto) beside the model's own reading: how many "
            "come back as several digits, how many get the same digit",
        },
    ),
    (
        "--coverage-plot",
        {
            "type": Path,
            "metavar": "PNG",
            "help": "draw accuracy against coverage (MNIST test and, with --realistic, realistic uploads) to this file",
        },
    ),
    ("--seed", {"type": int, "default": 0, "help": "seed for --realistic, --styles and --non-digits"}),
    (
        "--real",
        {
            "action": "store_true",
            "help": "instead: every real set we have (MNIST test, realistic uploads, scikit-learn's 43 writers, and "
            "the folders of REAL_DIGITS_DIR) and the stand-ins, accuracy and honesty per set in one table "
            "(--realistic, --styles and --non-digits give their sizes: 2,000, 500 and 500 when not given)",
        },
    ),
    (
        "--record",
        {
            "action": "store_true",
            "help": "with --real and --model: also write the report into that model's metadata (real_evaluation), "
            "as a shipped model records what it was chosen on",
        },
    ),
    (
        "--against",
        {
            "type": Path,
            "metavar": "MODEL",
            "help": "with --real: read every set with this model too (the one the model would replace), compare "
            "them image by image, and say whether the model would ship",
        },
    ),
)


class Command(BaseCommand):
    help = "Evaluate a model on the 10,000 MNIST test images (and optionally on realistic uploads, other writers, "
    "non-digits and whole numbers)."

    def add_arguments(self, parser):
        for flag, keywords in OPTIONS:
            parser.add_argument(flag, **keywords)

    def handle(self, *args, **options):
        if options["against"] and not options["real"]:
            raise CommandError("--against compares models on the real sets: give --real as well.")
        if options["record"] and not (options["real"] and options["model"]):
            raise CommandError("--record writes the real sets' report into a model's metadata: give --real and --model")
        plan = EvaluationPlan(**{field.name: options[field.name] for field in fields(EvaluationPlan)})
        try:
            if options["real"]:
                report = model_evaluate_real(
                    model_path=options["model"],
                    against=options["against"],
                    plan=plan.on_real_sets(),
                    record=options["record"],
                )
            else:
                report = model_evaluate(model_path=options["model"], plan=plan)
        except (FileNotFoundError, ValueError, MnistDataError) as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(json.dumps(report))
        else:
            self.stdout.write(real_table(report) if options["real"] else report_text(report))


def report_text(report: dict) -> str:
    """The report as lines: MNIST test, then each kind of image measured."""
    lines = [
        f"model     {report['model']}",
        f"MNIST     accuracy {report['accuracy']:.2%}  loss {report['loss']:.4f}  "
        f"({report['errors']} wrong of {report['samples']:,})",
        f"          {_ece(report)}",
        f"          {_verdicts(report)}",
    ]
    if "realistic" in report:
        lines += _realistic(report["realistic"])
    if "non_digits" in report:
        lines += _non_digits(report["non_digits"])
    if "numbers" in report:
        lines.append(_numbers(report["numbers"]))
    if "singles" in report:
        lines.append(_singles(report["singles"]))
    if "coverage_plot" in report:
        lines.append(f"coverage plot in {report['coverage_plot']}")
    if "styles" in report:
        lines += _styles(report["styles"])
    return "\n".join(lines)


def _realistic(real: dict) -> list[str]:
    lines = [
        f"realistic accuracy {real['accuracy']:.2%} of {real['samples']:,} "
        f"({real['refused']} refused, seed {real['seed']})"
    ]
    if "ece" in real:
        lines += [f"          {_ece(real)}", f"          {_verdicts(real)}"]
    return lines + [f"  {name:<11} {accuracy:.2%}" for name, accuracy in real["by_scenario"].items()]


def _non_digits(caught: dict) -> list[str]:
    return [
        f"non-digits caught {caught['caught']:.1%} of {caught['samples']:,} (unsure, not a digit or refused; "
        f"seed {caught['seed']})",
        *(f"  {family:<11} {share:.1%}" for family, share in caught["by_family"].items()),
    ]


def _styles(styles: dict) -> list[str]:
    return [
        f"other writers and scanners (seed {styles['seed']})",
        *(
            f"  {name:<11} {result['accuracy']:.2%} of {result['samples']:,} ({result['refused']} refused)"
            for name, result in styles.items()
            if name != "seed"
        ),
    ]


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
        f"          real writers by length: {_by(real['by_length'])}\n"
        + "".join(_real_digit_numbers(view, found) for view, found in result.get("real_digits", {}).items())
        + "          wrong count of digits, by kind (share of the numbers): "
        + _by(result["count_errors"])
        + f"\n          answered sure {result['sure']:.1%}, exact among those {share(result['sure_exact'])}"
    )


def _real_digit_numbers(view: str, found: dict) -> str:
    """The lines on numbers written with the real folders' digits, in one ``view``."""
    sure_exact = "-" if found["sure_exact"] is None else f"{found['sure_exact']:.1%}"
    return (
        f"          numbers of real digits ({view}) read exactly {found['exact']:.1%} of {found['numbers']:,}; "
        f"per digit {found['digit_accuracy']:.1%}; digit count right {found['digit_count_right']:.1%}; "
        f"answered sure {found['sure']:.1%}, exact among those {sure_exact}\n"
        f"            by length: {_by(found['by_length'])}; by scenario: {_by(found['by_scenario'])}\n"
        f"            wrong count by kind: {_by(found['count_errors'])}\n"
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
