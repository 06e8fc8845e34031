import hashlib
import json
import re
from datetime import datetime
from io import StringIO
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError

from classifier.models import Flag, ModelVersion, Prediction
from classifier.services import model_version_activate, model_version_directory, prediction_run
from classifier.tests.factories import DigitImageFactory, FlagFactory, ModelVersionFactory, ReviewerFactory, UserFactory
from ml.tests.conftest import mnist_dir

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture
def tiny_active(settings, tiny_model_dir, tmp_path):
    """A seconds-trained model as the active version, and retraining sized for tests."""
    settings.RETRAIN_TRAIN_LIMIT = 2000
    settings.RETRAIN_TEST_LIMIT = 1000
    settings.RETRAIN_EPOCHS = 1
    settings.RETRAIN_JUDGING_PER_SET = 20
    settings.MODEL_VERSIONS_DIR = tmp_path / "versions"
    tiny = ModelVersionFactory(architecture="basic", path=str(tiny_model_dir), metrics={"test_accuracy": 0.9})
    return model_version_activate(number=tiny.number)


@pytest.fixture
def flagged(mnist, tiny_active):
    """Real uploads (rendered as photos) that staff corrected."""
    import numpy as np

    from ml.fitting.synth import render_upload

    rng = np.random.default_rng(0)
    flags = []
    for i in range(12):
        upload = render_upload(mnist.train.images[i], scenario="photo", rng=rng, label=int(mnist.train.labels[i]))
        image = DigitImageFactory(data=upload.data)
        prediction_run(image_id=image.pk)
        flags.append(FlagFactory(image=image, correct_digit=upload.label))
    return flags


def run(*args):
    out = StringIO()
    call_command("retrain", *args, stdout=out)
    return out.getvalue()


def test_retrain_stores_a_new_version_with_metrics_and_plots(flagged, tiny_active):
    output = run("--force")
    assert "epoch 1/1" in output  # progress
    # Each stage as it begins, with its time so far and what is known of the time left.
    assert "-- fine-tuning: 0 s so far, no estimate yet (no earlier retrain went through this stage)" in output
    assert "MNIST test accuracy" in output and "corrections" in output  # the report table
    candidate = ModelVersion.objects.get(parent=tiny_active)
    assert candidate.number == tiny_active.number + 1 and candidate.is_active
    assert candidate.flags_used == 10  # 12 corrections, a fifth held out
    assert candidate.metrics["flag_eval"] == "held-out" and candidate.metrics["flag_eval_samples"] == 2
    assert 0 < candidate.metrics["test_accuracy"] <= 1
    directory = Path(candidate.directory)
    for name in ("model.keras", "metadata.json", "training_curves.png", "confusion_matrix.png"):
        assert (directory / name).is_file()
    metadata = json.loads((directory / "metadata.json").read_text())
    assert metadata["parent_version"] == tiny_active.number and metadata["corrections"] == 10
    assert Flag.objects.filter(trained_in=candidate).count() == 10
    # Its files are in storage too, for machines that share no disk with this one: the same files.
    with default_storage.open(candidate.archive, "rb") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == candidate.checksum
    fetched = model_version_directory(candidate)
    assert fetched != directory
    for name in ("model.keras", "metadata.json", "training_curves.png", "confusion_matrix.png"):
        assert (fetched / name).read_bytes() == (directory / name).read_bytes()


def test_retrain_keeps_the_old_model_when_the_candidate_is_not_better(flagged, tiny_active, settings):
    # A tolerance below zero can never be met: the gate must say no and explain why.
    settings.RETRAIN_MAX_MNIST_DROP = -1.0
    output = run()
    candidate = ModelVersion.objects.get(parent=tiny_active)
    assert not candidate.is_active
    assert ModelVersion.objects.get(is_active=True) == tiny_active
    assert f"kept v{tiny_active.number}" in output and "below the active model's" in output
    assert not Flag.objects.filter(trained_in__isnull=False).exists()


def test_retrain_dry_run_trains_nothing(flagged, tiny_active):
    output = run("--dry-run")
    assert "12 corrections" in output and "dry run" in output
    assert not ModelVersion.objects.filter(parent=tiny_active).exists()


def test_retrain_without_flags_explains_itself(tiny_active):
    with pytest.raises(
        CommandError, match=r"no corrections to learn from yet.*\(use --force to fine-tune on MNIST alone\)"
    ):
        run()


def test_activate_model_rolls_back_and_models_lists_versions(flagged, tiny_active):
    run("--force")
    candidate = ModelVersion.objects.get(parent=tiny_active)
    out = StringIO()
    call_command("activate_model", f"v{tiny_active.number}", stdout=out)
    assert f"v{tiny_active.number} is now active" in out.getvalue()
    assert ModelVersion.objects.get(is_active=True) == tiny_active
    listing = StringIO()
    call_command("models", stdout=listing)
    lines = listing.getvalue().splitlines()
    assert lines[1].startswith("  v1 ")  # the shipped model
    assert any(line.startswith(f"* v{tiny_active.number} ") for line in lines)
    assert any(line.startswith(f"  v{candidate.number} ") for line in lines)
    with pytest.raises(CommandError, match="no v9"):
        call_command("activate_model", "9", stdout=StringIO())


def test_not_a_digit_flags_are_counted_apart_and_never_train_a_digit_class(flagged, tiny_active, mnist):
    from ml.fitting.negatives import negative_set

    # "Not a digit" teaches the reject option every input the reader judges of an image, also
    # of one read as several boxes.
    uploads = negative_set(mnist.test.images, count=6, seed=2, families=("printed", "shapes", "scribble"))
    predictions = [prediction_run(image_id=DigitImageFactory(data=upload.data).pk) for upload in uploads]
    one_box = next(p for p in predictions if p is not None and not p.is_number)
    several = [p for p in predictions if p is not None and p.is_number][:1]
    for prediction in [one_box, *several]:
        FlagFactory(image=prediction.image, correct_digit=None, not_a_digit=True)
    output = run("--force")
    assert "12 corrections" in output and f"{1 + len(several)} images that are not digits" in output
    assert "not trained on" not in output
    candidate = ModelVersion.objects.get(parent=tiny_active)
    assert candidate.flags_used == 10
    # The tiny model has no reject option to teach: the flag waits for a model that has one.
    assert Flag.objects.get(image=one_box.image).trained_in is None


def test_retrain_learns_from_corrections_kept_after_their_images_were_deleted(
    tiny_active, mnist, django_capture_on_commit_callbacks
):
    import numpy as np
    from django.core.files.uploadedfile import SimpleUploadedFile

    from classifier.models import DigitImage, TrainingExample
    from classifier.services import image_delete, image_flag, image_upload_create
    from classifier.services.retraining import _correction_arrays
    from ml.fitting.synth import render_upload
    from ml.serving.preprocessing import to_model_input

    owner, staff, rng = UserFactory(), ReviewerFactory(), np.random.default_rng(1)
    uploads = {}
    for i, consent in enumerate([True, True, True, False]):
        upload = render_upload(mnist.train.images[i], scenario="photo", rng=rng, label=int(mnist.train.labels[i]))
        file = SimpleUploadedFile(f"{i}.jpg", upload.data)
        image = image_upload_create(owner=owner, files=[file], training_consent=consent).created[0]
        prediction_run(image_id=image.pk)
        image_flag(image=image, correct_number=str(upload.label), flagged_by=staff)
        uploads[image.pk] = upload
    with django_capture_on_commit_callbacks(execute=True):
        for image in DigitImage.objects.order_by("pk"):
            image_delete(image=image)
    assert not DigitImage.objects.exists() and not Flag.objects.exists()
    examples = list(TrainingExample.objects.order_by("pk"))
    assert len(examples) == 3  # the fourth owner did not agree: nothing of it is left
    # What retraining feeds the model is, bit for bit, what it would have read from the files.
    arrays = _correction_arrays([], examples)
    expected = list(uploads.values())[:3]
    assert arrays.corrections == examples and list(arrays.y) == [upload.label for upload in expected]
    for row, upload in zip(arrays.x, expected, strict=True):
        assert np.array_equal(row[..., 0], to_model_input(upload.data).array)

    output = run("--force")
    assert "3 corrections" in output and "3 of these corrections are kept examples" in output
    candidate = ModelVersion.objects.get(parent=tiny_active)
    assert candidate.is_active and candidate.flags_used == 3  # too few to hold out: all trained on
    assert TrainingExample.objects.filter(trained_in=candidate).count() == 3


@pytest.fixture
def numbers(mnist):
    """Two images of four digits each, read by the shipped model (before a tiny one is active),
    one whose owner let its exact inputs be kept."""
    from classifier.services import predictions_run
    from classifier.tests.test_services import _number_page
    from ml.tests.conftest import encode

    images = [
        DigitImageFactory(data=encode(_number_page(mnist, [0, 1, 2, 3])), training_consent=False),
        DigitImageFactory(data=encode(_number_page(mnist, [4, 5, 6, 7])), training_consent=True),
    ]
    predictions = predictions_run(image_ids=[image.pk for image in images])
    return [predictions[image.pk] for image in images]


def test_a_retrain_learns_each_digit_of_a_corrected_number_from_its_box(numbers, tiny_active):
    import numpy as np

    from classifier.selectors import flags_for_training
    from classifier.services import image_flag
    from classifier.services.retraining import _correction_arrays

    staff = ReviewerFactory()
    plain, consented = numbers
    assert plain.is_number and consented.is_number and consented.exact_inputs() is not None
    # Staff write a digit for each box (each the next digit, so that the labels are theirs).
    corrected = {p.pk: "".join(str((r["digit"] + 1) % 10) for r in p.readings()) for p in numbers}
    for prediction in numbers:
        image_flag(image=prediction.image, correct_number=corrected[prediction.pk], flagged_by=staff)
    # A correction with a digit too many: kept, not trained on.
    copy = Prediction.objects.get(pk=plain.pk)  # the same reading of another image
    copy.pk, copy.image = None, DigitImageFactory(data=b"never read")
    copy.save()
    image_flag(image=copy.image, correct_number="1" * (len(plain.readings()) + 1), flagged_by=staff)

    arrays = _correction_arrays(list(flags_for_training()), [])
    assert [flag.image_id for flag in arrays.corrections] == [plain.image_id, consented.image_id]
    assert arrays.sizes == [len(plain.readings()), len(consented.readings())] and arrays.not_trained == 1
    expected_x = np.concatenate([plain.digit_input_pixels() / 255, consented.exact_inputs()])
    assert arrays.x.dtype == np.float32 and np.array_equal(arrays.x[..., 0], expected_x.astype("float32"))
    assert list(arrays.y) == [int(d) for d in corrected[plain.pk] + corrected[consented.pk]]

    output = run("--force")
    examples = sum(arrays.sizes)
    assert f"2 corrections, {examples} examples ({examples} to train on, {examples} to judge" in output
    assert "1 corrections not trained on: digit count differs" in output
    candidate = ModelVersion.objects.get(parent=tiny_active)
    assert candidate.flags_used == 2
    metadata = json.loads((Path(candidate.directory) / "metadata.json").read_text())
    assert (metadata["corrections"], metadata["correction_examples"]) == (2, examples)
    learnt = set(Flag.objects.filter(trained_in=candidate).values_list("image_id", flat=True))
    assert learnt == {plain.image_id, consented.image_id}


def test_not_a_digit_on_an_image_read_as_a_number_teaches_every_input_the_reader_judged(numbers, tiny_active):
    import numpy as np

    from classifier.selectors import flags_for_training
    from classifier.services import image_flag
    from classifier.services.retraining import _correction_arrays
    from ml.serving.preprocessing import to_model_input
    from ml.serving.segment import read_page

    plain, _ = numbers
    data = plain.image.file.open("rb").read()
    image_flag(image=plain.image, correct_number=None, flagged_by=ReviewerFactory())
    arrays = _correction_arrays(list(flags_for_training()), [])
    # The image read whole, and each group of strokes (its four digits, to the reader).
    groups = read_page(data).inputs
    assert arrays.not_trained == 0 and arrays.sizes == [1 + len(groups)] and len(arrays.corrections) == 1
    assert len(arrays.y) == 1 + len(groups) and set(arrays.y) == {-1}
    assert np.array_equal(arrays.x[0, ..., 0], to_model_input(data).array)
    assert np.array_equal(arrays.x[1:, ..., 0], np.stack([g.array for g in groups]))


def test_a_retrain_asked_for_runs_with_its_progress_and_outcome_recorded(flagged, tiny_active, broker_env):
    from classifier.models import RetrainRun
    from classifier.services import RetrainError, retrain_request
    from classifier.services.retraining import retrain_run

    run = retrain_request(epochs=1, force=True)
    with pytest.raises(RetrainError, match="already queued"):
        retrain_request(epochs=None, force=False)
    lines = []
    finished = retrain_run(run_id=run.pk, log=lines.append)
    assert any(line.startswith("epoch 1/1") for line in lines)
    assert finished.status == RetrainRun.Status.PROMOTED and not finished.in_progress
    assert (finished.epoch, finished.epochs_total) == (1, 1)
    # Every stage recorded in order, each finished, the fitting's with its progress.
    assert [stage["name"] for stage in finished.stages] == ["gathering", "fine-tuning", "judging", "storing"]
    assert all(stage["finished_at"] >= stage["started_at"] for stage in finished.stages)
    assert finished.stages[1]["progress"] == 1.0 and finished.stages[1]["detail"] == "epoch 1 of 1"
    rows = {row["name"]: row for row in finished.stage_rows()}
    assert rows["calibrating"]["state"] == "skipped"  # the tiny model holds no digits out to calibrate on
    for name in ("gathering", "fine-tuning", "judging", "storing"):
        assert rows[name]["state"] == "done" and rows[name]["seconds"] >= 0, name
    assert "With 12 digit corrections" not in finished.explanation  # 12 hold out a fifth: nothing to explain
    assert finished.candidate == ModelVersion.objects.get(is_active=True) != tiny_active
    assert finished.summary.startswith(f"Promoted: v{finished.candidate.number} is active")
    assert finished.started_at <= finished.finished_at
    # Done: the next one may be asked for.
    assert retrain_request(epochs=None, force=False).status == RetrainRun.Status.QUEUED


def test_a_retrain_that_cannot_start_fails_with_the_reason(tiny_active, broker_env):
    from classifier.models import RetrainRun
    from classifier.services import retrain_request
    from classifier.services.retraining import retrain_run

    finished = retrain_run(run_id=retrain_request(epochs=None, force=False).pk)  # no corrections
    assert finished.status == RetrainRun.Status.FAILED and not finished.in_progress
    assert "no corrections to learn from yet" in finished.summary
    # Said as the admin offers it, never as a command-line option.
    assert f'retrain with "{RetrainRun.FORCE_LABEL}" ticked' in finished.reason and "--" not in finished.reason


def test_a_retrain_whose_trainer_died_no_longer_blocks_the_next(tiny_active, broker_env, settings):
    from datetime import timedelta

    from django.utils import timezone

    from classifier.models import RetrainRun
    from classifier.services import retrain_request

    stuck = retrain_request(epochs=None, force=False)
    RetrainRun.objects.filter(pk=stuck.pk).update(
        requested_at=timezone.now() - timedelta(seconds=settings.RETRAIN_STALE_AFTER_SECONDS + 1)
    )
    assert retrain_request(epochs=None, force=False).in_progress
    stuck.refresh_from_db()
    assert stuck.status == RetrainRun.Status.FAILED and "no word from the trainer" in stuck.reason


@pytest.mark.django_db(transaction=True)
def test_every_stage_of_a_retrain_is_heard_from_within_seconds_with_its_time_left(
    flagged, tiny_active, broker_env, settings
):
    from datetime import timedelta

    from django.utils import timezone

    from classifier.models import RetrainRun
    from classifier.services import retrain_request
    from classifier.services.retraining import retrain_run

    settings.RETRAIN_PROGRESS_SECONDS = 0.5
    # An earlier retrain that finished: what each stage took then is the estimate now.
    then = timezone.now() - timedelta(hours=1)
    earlier = [
        {"name": name, "started_at": then.isoformat(), "finished_at": (then + timedelta(seconds=20)).isoformat()}
        for name in RetrainRun.STAGES
    ]
    RetrainRun.objects.create(status=RetrainRun.Status.KEPT, in_progress=False, stages=earlier, finished_at=then)
    finished = retrain_run(run_id=retrain_request(epochs=1, force=True).pk)
    assert finished.status == RetrainRun.Status.PROMOTED
    assert [stage["name"] for stage in finished.stages] == ["gathering", "fine-tuning", "judging", "storing"]
    for stage in finished.stages:
        took = (
            datetime.fromisoformat(stage["finished_at"]) - datetime.fromisoformat(stage["started_at"])
        ).total_seconds()
        # No stage silent for more than 10 s: the ticker writes it every 0.5 s here, also
        # between its start and its end where it says nothing itself.
        assert stage["longest_gap"] <= 10, stage
        assert took < 1.5 or stage["longest_gap"] < took - 0.5, stage
        assert stage["expected_seconds"] == 20.0 and stage["progress"] == 1.0, stage
    fitting, judging = finished.stages[1], finished.stages[2]
    assert not fitting["estimated"]  # its own steps: the epoch lines
    assert judging["estimated"]  # no steps of its own: what the earlier run took


def test_retraining_without_mnist_says_so_before_anything_starts(settings, tmp_path, monkeypatch, broker_env):
    from classifier.models import RetrainRun
    from classifier.services import MnistUnavailable, retrain_request
    from classifier.services.retraining import retrain_run
    from classifier.tasks import trainer_ping

    (tmp_path / "mnist").mkdir()
    settings.MNIST_DATA_DIR = str(tmp_path / "mnist")
    monkeypatch.setenv("HOME", str(tmp_path))  # no earlier Keras download either
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    said = r"Retraining needs MNIST, .*MNIST_DATA_DIR .* lacks train-images-idx3-ubyte.* set MNIST_DATA_DIR to"
    versions = list(ModelVersion.objects.values_list("number", flat=True))
    with pytest.raises(CommandError, match=said):
        run("--force")
    assert list(ModelVersion.objects.values_list("number", flat=True)) == versions  # nothing trained

    # A trainer that has not said yet what it lacks takes the retrain, and fails it at once with
    # the sentence, before any stage, never with an exception's text.
    failed = retrain_run(run_id=retrain_request(epochs=None, force=True).pk)
    assert failed.status == RetrainRun.Status.FAILED and failed.stages == []
    assert re.search(said, failed.reason) and "Error" not in failed.reason
    # Once it has (its answer to beat's ping), neither the admin's button nor the command queues one.
    trainer_ping()
    with pytest.raises(MnistUnavailable, match=r"cannot be had on the trainer .*MNIST_DATA_DIR"):
        retrain_request(epochs=None, force=False)
    with pytest.raises(CommandError, match=said):
        run("--background")
    assert RetrainRun.objects.count() == 1
    # MNIST where it says: the next answer lets retrains be asked for again.
    settings.MNIST_DATA_DIR = str(mnist_dir())
    trainer_ping()
    assert retrain_request(epochs=None, force=False).status == RetrainRun.Status.QUEUED


def test_a_retrain_that_breaks_unexpectedly_fails_with_a_sentence_not_the_exception(
    tiny_model_dir, settings, tmp_path, broker_env
):
    import shutil

    from classifier.models import RetrainRun
    from classifier.services import retrain_request
    from classifier.services.retraining import retrain_run

    settings.MODEL_VERSIONS_DIR = tmp_path / "versions"
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.keras").write_bytes(b"not a Keras file")
    version = ModelVersionFactory(architecture="basic", path=str(broken))
    ModelVersion.objects.update(is_active=False)
    ModelVersion.objects.filter(pk=version.pk).update(is_active=True)
    failed = retrain_run(run_id=retrain_request(epochs=1, force=True).pk)
    assert failed.status == RetrainRun.Status.FAILED
    assert failed.reason == (
        "The trainer met an unexpected error while fine-tuning; nothing was promoted. "
        "The trainer's log has the details."
    )
    assert failed.stages[-1]["name"] == "fine-tuning" and failed.stages[-1]["finished_at"] is None  # stopped there


def test_a_candidate_harmed_before_judging_is_kept_and_the_pages_name_the_set(flagged, tiny_active, client, settings):
    """A retrain whose candidate is deliberately harmed as judging begins (it reads every 1 as a
    7 and back): better on the corrections or not, it reads judging sets worse than their noise
    allows, so it is stored, not promoted; the retrain page and the activation staff may still
    ask for show the table and name the set."""
    import shutil

    from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
    from django.urls import reverse

    from classifier.models import RetrainRun
    from classifier.services.retraining import model_retrain
    from ml.serving.artifacts import ModelBundle
    from ml.tests.conftest import swapped

    candidate_dir = Path(settings.MODEL_VERSIONS_DIR) / f"v{tiny_active.number + 1}"

    def harm(name: str) -> None:
        if name == "judging":
            harmed = swapped(candidate_dir, Path(settings.MODEL_VERSIONS_DIR) / "harmed")
            shutil.copyfile(ModelBundle(harmed).model_path, ModelBundle(candidate_dir).model_path)

    report = model_retrain(log=lambda line: None, stage=harm)
    assert not report.promoted and ModelVersion.objects.get(is_active=True) == tiny_active
    assert report.reason.startswith("it reads MNIST test worse: read right")
    candidate = report.candidate
    assert "MNIST test" in candidate.judged_worse_on
    assert {row["set"] for row in candidate.judging} >= {"realistic uploads", "scikit-learn 43 writers"}
    assert not Flag.objects.filter(trained_in__isnull=False).exists()
    RetrainRun.objects.create(
        status=RetrainRun.Status.KEPT, in_progress=False, candidate=candidate, reason=report.reason
    )

    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    page = reverse("admin:classifier_modelversion_changelist")
    body = " ".join(client.get(page).content.decode().split())
    assert (
        f"Kept the active version; v{candidate.number} is stored, not active (it reads MNIST test worse: read right"
        in body
    )
    assert f'<table id="judging-{candidate.number}" class="judging">' in body
    assert f"v{candidate.number} against v{tiny_active.number} on the judging sets: reads MNIST test" in body
    assert '<tr data-set="MNIST test" data-verdict="worse">' in body

    # Activating it anyway shows the same table first, then activates it on confirmation.
    chosen = {"action": "activate", ACTION_CHECKBOX_NAME: [candidate.pk]}
    confirm = " ".join(client.post(page, chosen).content.decode().split())
    assert (
        f"Activate v{candidate.number} anyway" in confirm
        and '<tr data-set="MNIST test" data-verdict="worse">' in confirm
    )
    assert ModelVersion.objects.get(is_active=True) == tiny_active
    done = client.post(page, chosen | {"confirmed": "yes"}, follow=True).content.decode()
    assert ModelVersion.objects.get(is_active=True) == candidate
    assert f"{candidate.number} is now active, although it reads MNIST test" in done  # "V101": the admin capitalises
    version_page = client.get(reverse("admin:classifier_modelversion_change", args=[candidate.pk])).content.decode()
    assert '<tr data-set="MNIST test" data-verdict="worse">' in version_page
    # The command says it too.
    out = StringIO()
    call_command("activate_model", f"v{candidate.number}", stdout=out)
    assert "It read MNIST test" in out.getvalue() and "worse than its parent when it was judged:" in out.getvalue()
    assert any(line.strip().startswith("MNIST test") and line.endswith("worse") for line in out.getvalue().splitlines())


def test_with_too_few_corrections_a_candidate_is_stored_and_the_run_says_how_many_more(tiny_active, mnist, settings):
    import numpy as np

    from classifier.models import RetrainRun
    from classifier.services import retrain_request
    from classifier.services.retraining import retrain_run
    from ml.fitting.synth import render_upload

    rng = np.random.default_rng(0)
    for i in range(3):
        upload = render_upload(mnist.train.images[i], scenario="photo", rng=rng, label=int(mnist.train.labels[i]))
        image = DigitImageFactory(data=upload.data)
        prediction_run(image_id=image.pk)
        FlagFactory(image=image, correct_digit=upload.label)
    finished = retrain_run(run_id=retrain_request(epochs=1, force=False).pk)
    assert finished.status == RetrainRun.Status.KEPT and ModelVersion.objects.get(is_active=True) == tiny_active
    assert finished.candidate is not None and not finished.candidate.is_active
    assert "Below 10 digit corrections a candidate is stored, never promoted on its own: with 7 more" in (
        finished.explanation
    )


def test_the_refusal_names_the_files_mnist_is_read_from():
    """The web process names MNIST's files without loading the fitting code that reads them."""
    from classifier.services.retrain_requests import MNIST_FILES, mnist_refusal
    from ml.fitting.data import FILES

    assert tuple(stem for images, labels, _ in FILES.values() for stem in (images, labels)) == MNIST_FILES
    refusal = mnist_refusal("the folder is empty")
    assert all(name in refusal for name in MNIST_FILES) and "the folder is empty" in refusal


def test_a_retrain_that_outlasts_its_time_limit_fails_naming_the_limit_it_reached(
    tiny_active, broker_env, settings, monkeypatch
):
    from billiard.exceptions import SoftTimeLimitExceeded

    from classifier.models import RetrainRun
    from classifier.services import retrain_request
    from classifier.services.retrain_requests import retrain_fail, retrain_too_long
    from classifier.services.retraining import retrain_run

    settings.RETRAIN_TIME_LIMIT_SECONDS = 3600
    settings.TASK_HARD_LIMIT_GRACE_SECONDS = 360

    def too_long(**kwargs):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr("classifier.services.retraining.model_retrain", too_long)
    soft = retrain_run(run_id=retrain_request(epochs=1, force=True).pk)
    assert soft.status == RetrainRun.Status.FAILED and soft.reason == retrain_too_long(hard=False)
    assert soft.reason == (
        "The retrain took too long (over 1 h), so the trainer stopped it; nothing was promoted. "
        "You can start a new retrain."
    )
    # Killed at the hard limit: the worker's hook fails it, naming the limit that killed it.
    killed = retrain_request(epochs=1, force=True)
    RetrainRun.objects.filter(pk=killed.pk).update(status=RetrainRun.Status.RUNNING)
    retrain_fail(run_id=killed.pk, timed_out=True)
    killed.refresh_from_db()
    assert killed.status == RetrainRun.Status.FAILED and not killed.in_progress
    assert killed.reason.startswith("The retrain took too long (over 1.1 h), so the trainer stopped it")
