import json
import shutil
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from ml.tests.conftest import encode


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.slow  # trains: `make test-fast` leaves it out
@pytest.mark.usefixtures("mnist")
def test_train_command_writes_a_model_and_reports_progress(tmp_path):
    output = run("train", "--arch", "dense", "--epochs", "1", "--limit", "2000", "--out", str(tmp_path / "m"))
    assert "epoch 1/1" in output
    assert "test accuracy" in output
    metadata = json.loads((tmp_path / "m" / "metadata.json").read_text())
    assert metadata["architecture"] == "dense" and metadata["train_samples"] == 2000
    assert (tmp_path / "m" / "model.keras").is_file()


@pytest.mark.slow  # trains: `make test-fast` leaves it out
@pytest.mark.usefixtures("mnist")
def test_train_lines_renders_lines_once_and_fits_the_line_reader(tmp_path, settings):
    out = tmp_path / "lines"
    args = ("train_lines", "--lines", "12", "--validation", "4", "--epochs", "1", "--workers", "1", "--out", str(out))
    output = run(*args)
    assert "rendering 16 lines" in output and "epoch 1/1" in output and "validation lines read exactly" in output
    metadata = json.loads((out / "line_reader.json").read_text())
    assert metadata["train_lines"] == 12 and metadata["epochs"] == 1 and (out / "line_reader.keras").is_file()
    # The rendered lines are kept: a second run fits the same lines without rendering them again.
    assert sorted(path.name for path in (settings.TRAINED_MODELS_DIR / "lines").iterdir()) == [
        "train-1-12.npz",
        "validation-2-4.npz",
    ]
    again = run(*args)
    assert "rendering" not in again
    assert json.loads((out / "line_reader.json").read_text())["data_sha256"] == metadata["data_sha256"]


def test_train_lines_refuses_nothing_to_fit():
    with pytest.raises(CommandError, match="at least 1"):
        run("train_lines", "--lines", "0")


@pytest.mark.slow  # trains: `make test-fast` leaves it out
def test_train_command_with_writer_augmentation_records_it(tmp_path, mnist):
    out = tmp_path / "w"
    run("train", "--arch", "dense", "--epochs", "1", "--limit", "2000", "--writers", "--out", str(out))
    metadata = json.loads((out / "metadata.json").read_text())
    # The flagged 1s and crossed 7s join the 2,000 MNIST images.
    ones_and_sevens = int(((mnist.train.labels[:2000] == 1) | (mnist.train.labels[:2000] == 7)).sum())
    assert metadata["writers"] is True
    assert 2000 + ones_and_sevens * 0.25 < metadata["train_samples"] < 2000 + ones_and_sevens * 0.35


@pytest.mark.slow  # trains: `make test-fast` leaves it out
@pytest.mark.usefixtures("mnist")  # skips without MNIST (and fails under CI), never a network error
def test_train_command_trains_an_ensemble_served_as_one_model(tmp_path):
    out = tmp_path / "e"
    output = run(
        "train",
        "--arch",
        "dense",
        "--epochs",
        "1",
        "--limit",
        "1000",
        "--members",
        "2",
        "--holdout",
        "100",
        "--detector-digits",
        "0",
        "--out",
        str(out),
    )
    assert "ensemble member 2/2 (seed 43)" in output and "ensemble of 2: test accuracy" in output
    metadata = json.loads((out / "metadata.json").read_text())
    runs = [(run["seed"], run["path"]) for run in metadata["member_models"]]
    assert runs == [(42, "members/seed-42"), (43, "members/seed-43")] and metadata["members"] == 2
    assert metadata["holdout"] == 100
    with pytest.raises(CommandError, match="an ensemble needs at least 1 member, not 0"):
        run("train", "--arch", "dense", "--members", "0")
    too_many = r"the clean epochs must be between 0 and the number of epochs \(10\), not 11"
    with pytest.raises(CommandError, match=too_many):
        run("train", "--arch", "dense", "--clean-epochs", "11")


def test_train_command_refuses_a_bad_mnist_directory(settings, tmp_path):
    settings.MNIST_DATA_DIR = str(tmp_path / "missing")
    with pytest.raises(CommandError, match="cannot load MNIST"):
        run("train", "--arch", "dense", "--epochs", "1")


@pytest.mark.django_db
def test_evaluate_json_contract(tiny_model_dir):
    report = json.loads(run("evaluate", "--model", str(tiny_model_dir), "--json"))
    assert {"accuracy", "loss", "samples", "model", "ece", "ece_uncalibrated"} <= report.keys()
    assert report["samples"] == 10_000
    # The tiny model has no calibration: the confidence served is its own.
    assert 0 < report["ece"] == report["ece_uncalibrated"] < 1
    assert 0.5 < report["accuracy"] <= 1.0
    assert report["model"].endswith("model.keras")


@pytest.mark.django_db
@pytest.mark.slow  # measures the model on hundreds of images: `make test-fast` leaves it out
def test_evaluate_with_realistic_uploads_non_digits_and_a_coverage_plot(tiny_model_dir, tmp_path):
    plot = tmp_path / "coverage.png"
    output = run(
        "evaluate",
        "--model",
        str(tiny_model_dir),
        "--realistic",
        "12",
        "--non-digits",
        "12",
        "--coverage-plot",
        str(plot),
    )
    assert "MNIST     accuracy" in output
    assert "realistic accuracy" in output and "photo" in output
    assert output.count("calibration error (ECE, 15 bins)") == 2
    # The tiny model has no reject option: every reading is a "digit", and few non-digits are caught.
    assert output.count("verdicts: digit 100.0%") == 2
    assert "non-digits caught" in output and "scribble" in output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # trains: `make test-fast` leaves it out
@pytest.mark.django_db
def test_calibrate_fits_a_model_with_a_holdout_and_refuses_one_without(tmp_path, tiny_model_dir):
    out = tmp_path / "held"
    train = (
        "train",
        "--arch",
        "dense",
        "--epochs",
        "1",
        "--limit",
        "2000",
        "--holdout",
        "300",
        "--detector-digits",
        "0",
    )
    run(*train, "--out", str(out))
    first = json.loads((out / "metadata.json").read_text())["calibration"]
    output = run("calibrate", "--model", str(out))
    assert "calibrating on 300 held-out training digits" in output and "MNIST test ECE" in output
    again = json.loads((out / "metadata.json").read_text())["calibration"]
    assert again["temperature"] == first["temperature"] and again["fitted_on"]["clean"] == 300
    report = json.loads(run("evaluate", "--model", str(out), "--realistic", "30", "--json"))
    assert report["ece"] == pytest.approx(again["test_ece_after"], abs=1e-6)
    assert report["ece_uncalibrated"] == pytest.approx(again["test_ece_before"], abs=1e-6)
    assert {"ece", "ece_uncalibrated"} <= set(report["realistic"])
    with pytest.raises(CommandError, match="none is left to calibrate it on"):
        run("calibrate", "--model", str(tiny_model_dir))
    # Keeping a detector: there is none in a bundle trained without one.
    with pytest.raises(CommandError, match=r"no detector in .* to keep"):
        run("calibrate", "--model", str(out), "--keep-detector")
    # Given one (the shipped model's), it is kept byte for byte and its thresholds chosen again.
    from ml.tests.conftest import SHIPPED_MODEL_DIR

    shutil.copy(SHIPPED_MODEL_DIR / "reject.keras", out / "reject.keras")
    shipped_verdict = json.loads((SHIPPED_MODEL_DIR / "metadata.json").read_text())["verdict"]
    metadata = json.loads((out / "metadata.json").read_text())
    (out / "metadata.json").write_text(json.dumps(metadata | {"verdict": shipped_verdict}))
    output = run("calibrate", "--model", str(out), "--keep-detector")
    assert "keeping the detector" in output and "detector data" not in output
    assert (out / "reject.keras").read_bytes() == (SHIPPED_MODEL_DIR / "reject.keras").read_bytes()
    verdict = json.loads((out / "metadata.json").read_text())["verdict"]
    assert verdict["detector"]["kept"] is True and 0 < verdict["unsure_below"] < 1
    assert verdict["unsure_below"] != shipped_verdict["unsure_below"]  # chosen for this (weaker) model


def test_predict_json_contract_with_a_failing_file(tmp_path, tiny_model_dir, mnist):
    good = tmp_path / "three.png"
    good.write_bytes(encode(mnist.test.images[0]))
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is not an image")
    missing = tmp_path / "missing.png"
    out = StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("predict", str(good), str(bad), str(missing), "--json", "--model", str(tiny_model_dir), stdout=out)
    assert exit_info.value.code == 1
    report = json.loads(out.getvalue())
    assert [item["file"] for item in report] == [str(good), str(bad), str(missing)]
    assert set(report[0]) == {"file", "reading", "digit", "confidence", "probabilities", "verdict", "number", "digits"}
    assert report[0]["reading"] == "auto"
    assert report[0]["verdict"] in ("digit", "unsure", "not_a_digit")
    assert len(report[0]["probabilities"]) == 10
    assert report[0]["digit"] == max(range(10), key=lambda d: report[0]["probabilities"][d])
    assert set(report[1]) == {"file", "reading", "error"} and "not an image" in report[1]["error"]
    assert "cannot read" in report[2]["error"]


def test_predict_answers_a_blank_page_as_nothing_to_read(tmp_path, tiny_model_dir):
    blank = tmp_path / "blank.png"
    blank.write_bytes(encode(np.full((120, 90), 250, dtype=np.uint8)))
    item = json.loads(run("predict", str(blank), "--json", "--model", str(tiny_model_dir)))[0]
    assert (item["verdict"], item["number"], item["reason"]) == (
        "not_a_digit",
        "",
        "it looks blank: there is no writing on it to read.",
    )
    assert item["digits"][0]["box"] == [0, 0, 90, 120] and "error" not in item
    said = run("predict", str(blank), "--model", str(tiny_model_dir))
    assert said.strip() == f"{blank}: nothing to read: it looks blank: there is no writing on it to read."


@pytest.mark.django_db
def test_predict_succeeds_with_the_active_model(tmp_path, mnist):
    paths = []
    for i in range(5):
        path = tmp_path / f"{i}.png"
        path.write_bytes(encode(255 - mnist.test.images[i]))  # dark ink on white paper
        paths.append(str(path))
    # A number: the first three test digits (7, 2, 1) written side by side with gaps.
    gap = np.full((28, 10), 255, dtype=np.uint8)
    row = np.hstack([gap, *[np.hstack([255 - mnist.test.images[i], gap]) for i in range(3)]])
    number = tmp_path / "number.png"
    number.write_bytes(encode(np.pad(row, 10, constant_values=255)))
    report = json.loads(run("predict", *paths, str(number), "--json"))
    singles, read = report[:5], report[5]
    assert [item["digit"] for item in singles] == [int(d) for d in mnist.test.labels[:5]]
    # Single digits keep their fields, and gain their one-digit reading.
    assert all(item["number"] == str(item["digit"]) and len(item["digits"]) == 1 for item in singles)
    assert read["number"] == "721" and read["verdict"] in ("number", "unsure") and "digit" not in read
    xs = [digit["box"][0] for digit in read["digits"]]
    assert xs == sorted(xs) and all(len(digit["probabilities"]) == 10 for digit in read["digits"])
    # Each box lies on its digit: 10 px of margin, then digit i's 28 px after i gaps of 10.
    for i, digit in enumerate(read["digits"]):
        x, _, w, _ = digit["box"]
        assert 20 + 38 * i - 2 <= x and x + w <= 20 + 38 * i + 28 + 2
    assert read["confidence"] == min(digit["confidence"] for digit in read["digits"])
    assert 0 <= read["number_confidence"] <= 1  # the shipped model calibrates numbers
    text = run("predict", str(number))
    sure = f"{read['number_confidence']:.1%} sure of the whole number"
    assert f"721 ({sure})" in text or ("probably 721, not sure: " in text and sure in text)
    # Said to be one digit, the number is read whole: one digit, as the single-digit path reads it.
    (whole,) = json.loads(run("predict", str(number), "--reading", "digit", "--json"))
    assert whole["reading"] == "digit" and len(whole["digits"]) == 1 and whole["number"] in ("", str(whole["digit"]))


@pytest.mark.slow  # measures the model on hundreds of images: `make test-fast` leaves it out
def test_evaluate_reads_rendered_numbers(tiny_model_dir):
    report = json.loads(run("evaluate", "--model", str(tiny_model_dir), "--numbers", "6", "--seed", "3", "--json"))
    numbers = report["numbers"]
    assert numbers["numbers"] == 6 and numbers["seed"] == 3
    assert 0 <= numbers["exact"] <= numbers["digit_accuracy"] <= 1
    output = run("evaluate", "--model", str(tiny_model_dir), "--numbers", "6", "--seed", "3")
    assert f"read exactly {numbers['exact']:.1%} of 6 (seed 3)" in output
    real = numbers["real_writers"]
    assert real["numbers"] == 6 and 0 <= real["exact"] <= real["digit_accuracy"] <= 1
    assert f"numbers by real writers (load_digits) read exactly {real['exact']:.1%} of 6" in output
    papers = numbers["papers"]
    assert set(papers) == {"plain", "ruled", "squared"} and all(p["numbers"] == 6 for p in papers.values())
    assert f"on squared paper {papers['squared']['exact']:.1%}" in output
    assert "by length: " in output and "by scenario: " in output and "real writers by length: " in output
    assert numbers["by_length"] and {int(n) for n in numbers["by_length"]} <= set(range(2, 9))
    askew = numbers["askew"]
    assert askew["numbers"] == 6 and f"photographed 25 degrees askew read exactly {askew['exact']:.1%}" in output


@pytest.mark.slow  # measures the model on hundreds of images: `make test-fast` leaves it out
def test_evaluate_reads_single_digits_of_every_kind_both_ways(tiny_model_dir):
    report = json.loads(run("evaluate", "--model", str(tiny_model_dir), "--singles", "6", "--json"))
    singles = report["singles"]
    assert set(singles) == {"mnist_png", "realistic", "european", "lowres", "slanted", "thin", "load_digits"}
    assert singles["mnist_png"]["samples"] == 6 and singles["load_digits"]["samples"] == 1797
    for row in singles.values():
        assert 0 <= row["several"] <= row["samples"]
        assert 0 <= row["same_digit"] <= 1 and 0 <= row["accuracy_worker_path"] <= 1
    output = run("evaluate", "--model", str(tiny_model_dir), "--singles", "6")
    mnist_png = singles["mnist_png"]
    assert f"mnist_png         6 {mnist_png['several']:>8} {mnist_png['same_digit']:>11.2%}" in output


@pytest.mark.slow  # measures the model on hundreds of images: `make test-fast` leaves it out
def test_evaluate_on_the_stand_ins_for_other_writers(tiny_model_dir):
    report = json.loads(run("evaluate", "--model", str(tiny_model_dir), "--styles", "8", "--json"))
    assert set(report["styles"]) == {"european", "lowres", "slanted", "thin", "load_digits", "seed"}
    assert report["styles"]["european"]["samples"] == 8
    assert report["styles"]["load_digits"]["samples"] == 1797
    assert {"accuracy", "loss", "samples", "errors", "confusion_matrix"} <= set(report)


def test_the_landing_pages_examples_are_what_the_shipped_model_answers(tmp_path):
    """static/landing/ holds the model's real answers: regenerated, they come out the same."""
    import json

    import numpy as np
    from PIL import Image

    from classifier.landing import EXAMPLES_FILE, LANDING_DIR
    from ml.tests.conftest import SHIPPED_MODEL_DIR

    call_command("landing_examples", "--model", str(SHIPPED_MODEL_DIR), "--out", str(tmp_path), stdout=StringIO())
    committed = json.loads((LANDING_DIR / EXAMPLES_FILE).read_text())
    fresh = json.loads((tmp_path / EXAMPLES_FILE).read_text())
    assert [(e["file"], e["digit"], e["verdict"], e["runner_up"]) for e in fresh] == [
        (e["file"], e["digit"], e["verdict"], e["runner_up"]) for e in committed
    ]
    assert np.allclose([e["confidence"] for e in fresh], [e["confidence"] for e in committed], atol=1e-3)
    for example in committed:
        pixels = [np.asarray(Image.open(folder / example["file"])) for folder in (LANDING_DIR, tmp_path)]
        assert np.array_equal(*pixels)


@pytest.mark.slow  # reads some 15,000 images twice
@pytest.mark.django_db
def test_evaluate_real_reads_every_real_set_and_compares_two_models(mnist, settings, tmp_path):
    from classifier.management.commands.evaluate import real_table
    from ml.tests.conftest import SHIPPED_MODEL_DIR

    real = settings.REAL_DIGITS_DIR
    copy = shutil.copytree(SHIPPED_MODEL_DIR, tmp_path / "candidate")
    args = ["--real", "--realistic", "40", "--styles", "10", "--non-digits", "12", "--against", str(SHIPPED_MODEL_DIR)]
    report = json.loads(run("evaluate", *args, "--model", str(copy), "--record", "--json"))
    names = list(report["model"]["sets"])
    folders = [name for name in ("optdigits-30", "hwd-1000") if (real / name / "labels.csv").is_file()]
    expected = ["MNIST test", "realistic uploads", "scikit-learn 43 writers", *folders]
    assert names == expected + [f"{name} box 16x16" for name in folders]
    # Recorded in the candidate's metadata, as a shipped model keeps what it was chosen on.
    recorded = json.loads((copy / "metadata.json").read_text())["real_evaluation"]
    assert recorded["ships"] is True and list(recorded["model"]["sets"]) == names
    assert report["model"]["sets"]["MNIST test"]["samples"] == 10_000
    assert report["model"]["sets"]["scikit-learn 43 writers"]["samples"] == 1797
    assert report["model"]["sets"]["MNIST test"]["accuracy"] > 0.99
    assert list(report["model"]["stand_ins"]) == ["european", "lowres", "slanted", "thin"]
    assert all(row["samples"] == 10 for row in report["model"]["stand_ins"].values())
    # The same model on both sides: every set read alike, nothing split between them, it ships.
    assert all(
        row["difference"] == 0 and row["only_candidate"] == row["only_baseline"] == 0
        for row in report["compared"].values()
    )
    assert report["ships"] is True and report["worse_on"] == []
    assert report["model"]["non_digits"]["samples"] == 12
    table = real_table(report)  # what the command prints without --json (reading it all again costs 30 s)
    assert "-- real sets" in table and "-- stand-ins (never decide)" in table and "the model ships" in table
    with pytest.raises(CommandError, match="give --real as well"):
        run("evaluate", "--against", str(SHIPPED_MODEL_DIR))
    with pytest.raises(CommandError, match="give --real and --model"):
        run("evaluate", "--real", "--record")
