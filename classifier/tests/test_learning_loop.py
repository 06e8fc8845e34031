"""The learning loop learns and does no harm (issue 43), end to end with real processes: a
writer's digits uploaded and read by the classifying worker, staff flag the misread ones and
confirm an owner's "not a digit", the trainer retrains; afterwards the writer's other digits,
never flagged, read better, the non-digit is answered "not a digit", and no judging set reads
worse.

The writer is a stand-in: MNIST *training* digits (past those the tiny model and the retrain's
replay learn from, before the tail held out to calibrate) in ``ml.fitting.styles``' European forms,
1s with a long up-stroke and crossed 7s, which the tiny model misreads about half the time.
The real-digit folders choose models and are never trained on; scikit-learn's digits judge."""

import cv2
import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from classifier.models import DigitImage, ModelVersion, Prediction, RetrainRun
from classifier.services import (
    feedback_confirm_as_seen,
    feedback_give,
    image_flag,
    image_upload_create,
    retrain_request,
)
from classifier.tests.conftest import wait_until_finished
from classifier.tests.factories import ModelVersionFactory, UserFactory
from classifier.tests.test_pool_recovery import wait_for
from classifier.tests.trainers import trainer_start
from ml.fitting.choosing import Reading
from ml.fitting.judging import BETTER, compare_sets
from ml.fitting.styles import render_style
from ml.tests.conftest import encode

pytestmark = pytest.mark.django_db(transaction=True)

# The writer's digits: MNIST training images from here on. The tiny model learnt from the first
# 3,000, the retrain replays the first RETRAIN_TRAIN_LIMIT (20,000), and the last 300 calibrate.
WRITER_FIRST = 45_000
FLAGGED_POOL = 80  # uploaded first; staff flag those the active version misreads (43)
UNFLAGGED = 200  # the writer's other digits, read before and after the retrain
WRITER_SEED = 43
BATCH = 20  # UPLOAD_MAX_FILES: at most this many files in one upload


def writer_digits(mnist, *, start: int, count: int, seed: int) -> list:
    """``count`` European 1s and 7s, alternating, from the MNIST training images at ``start``
    on, each rendered once with ``seed``."""
    rng = np.random.default_rng(seed)
    labels = mnist.train.labels[start:]
    ones, sevens = (start + np.flatnonzero(labels == digit)[: count // 2] for digit in (1, 7))
    picks = [index for pair in zip(ones, sevens, strict=True) for index in pair]
    return [
        render_style(mnist.train.images[i], style="european", label=int(mnist.train.labels[i]), rng=rng) for i in picks
    ]


def printed_letter(text: str = "g", side: int = 160) -> bytes:
    """A letter printed dark on white paper: not a digit, which the tiny model reads as one."""
    paper = np.full((side, side), 255, np.uint8)
    cv2.putText(paper, text, (35, 125), cv2.FONT_HERSHEY_SIMPLEX, 4, 0, 8, cv2.LINE_AA)
    return encode(paper)


def uploaded(owner, worker, files: list[tuple[str, bytes]], **options) -> list[DigitImage]:
    """The files uploaded by ``owner`` as the site's form does, read by ``worker``."""
    images = []
    for start in range(0, len(files), BATCH):
        outcome = image_upload_create(
            owner=owner,
            files=[SimpleUploadedFile(name, data, "image/png") for name, data in files[start : start + BATCH]],
            **options,
        )
        assert not outcome.refused, outcome.refused
        images += outcome.created
    wait_until_finished([image.pk for image in images], worker, timeout=90)
    return list(DigitImage.objects.filter(pk__in=[image.pk for image in images]).select_related("prediction"))


def read_right(images: list[DigitImage], labels: list[int]) -> Reading:
    """Each image's prediction as ``ml.fitting.choosing`` counts it: the digit read is the label."""
    by_name = {image.original_name: image for image in images}
    predictions = [by_name[f"digit-{i}.png"].prediction for i in range(len(labels))]
    correct = [p.digit == label for p, label in zip(predictions, labels, strict=True)]
    return Reading(np.array(correct, dtype=bool), tuple(p.verdict for p in predictions))


def test_staff_flags_teach_a_writer_and_a_non_digit_and_no_judging_set_reads_worse(
    worker, worker_env, tmp_path, mnist, settings, tiny_rejecting_model_dir
):
    settings.MODEL_VERSIONS_DIR = tmp_path / "versions"
    settings.UPLOAD_RATE_LIMIT = 1000  # the writer uploads a few hundred digits in a minute
    parent = ModelVersionFactory(architecture="basic", path=str(tiny_rejecting_model_dir))
    call_command("activate_model", str(parent.number), verbosity=0)
    # Replay enough MNIST that the tiny model does not forget it: on 1,000 to 2,000 digits its
    # candidate read MNIST test 1.2 points worse and was rightly kept; on 5,000 to 10,000 its
    # calibration error rose past the gate's 0.5 points.
    trainer = trainer_start(worker_env, tmp_path, RETRAIN_TRAIN_LIMIT="20000")
    try:
        writer, staff = UserFactory(), UserFactory(is_staff=True, is_superuser=True)
        pool = writer_digits(mnist, start=WRITER_FIRST, count=FLAGGED_POOL, seed=WRITER_SEED)
        others = writer_digits(mnist, start=WRITER_FIRST + 3_000, count=UNFLAGGED, seed=WRITER_SEED + 1)
        other_files = [(f"digit-{i}.png", upload.data) for i, upload in enumerate(others)]
        other_labels = [upload.label for upload in others]

        # The writer's digits, read by the active version: the misread ones are flagged.
        flagged = 0
        pool_images = uploaded(
            writer,
            worker,
            [(f"flag-{i}.png", upload.data) for i, upload in enumerate(pool)],
            reading=DigitImage.Reading.DIGIT,
        )
        labels = {f"flag-{i}.png": upload.label for i, upload in enumerate(pool)}
        for image in pool_images:
            if image.prediction.digit != labels[image.original_name]:
                image_flag(image=image, correct_number=str(labels[image.original_name]), flagged_by=staff)
                flagged += 1
        before = read_right(uploaded(writer, worker, other_files, reading=DigitImage.Reading.DIGIT), other_labels)
        assert flagged >= 20 and before.correct.mean() < 0.8, "the style must be misread for the test to show learning"

        # The owner says the letter is not a digit; staff confirm it, as the admin's action does.
        [letter] = uploaded(writer, worker, [("letter-g.png", printed_letter())])
        assert letter.prediction.verdict != Prediction.Verdict.NOT_A_DIGIT
        feedback = feedback_give(image=letter, user=writer, suggested_number=None)
        assert feedback_confirm_as_seen(seen={feedback.pk: feedback.says}, confirmed_by=staff).confirmed == 1

        # Staff's "activate even if it is not better": the gate's calibration rule (MNIST test
        # ECE at most 0.5 points above the parent's) re-rolls on a tiny model, 1.0 to 1.6% against
        # a bound of 1.35% in identical runs; what this test holds is the judging table below.
        run = retrain_request(epochs=1, force=True, requested_by=staff)
        wait_for(
            lambda: not RetrainRun.objects.get(pk=run.pk).in_progress, trainer, timeout=150, what="the retrain done"
        )
    finally:
        trainer.stop()
    run.refresh_from_db()
    assert run.status == RetrainRun.Status.PROMOTED, run.summary
    candidate = ModelVersion.objects.get(is_active=True)
    assert candidate.parent == parent and candidate.metrics["rejects_taught"] == 1

    # No judging set reads worse, by the noise rule the gate applies.
    judging = candidate.metrics["judging"]
    assert len(judging) >= 5 and not [row for row in judging if row["verdict"] == "worse"], judging

    # The writer uploads the other digits again, and the letter: the new version answers.
    after_images = uploaded(writer, worker, other_files, reading=DigitImage.Reading.DIGIT)
    assert {image.prediction.model_version for image in after_images} == {candidate}
    after = read_right(after_images, other_labels)
    [row] = compare_sets({"the writer's other digits": before}, {"the writer's other digits": after})
    share = f"{before.correct.mean():.1%} -> {after.correct.mean():.1%}"
    print(f"{flagged} flagged; the writer's {len(others)} other digits read right {share}")
    assert row.verdict == BETTER, row.describe()
    [letter_again] = uploaded(writer, worker, [("letter-g-again.png", printed_letter())])
    assert letter_again.prediction.verdict == Prediction.Verdict.NOT_A_DIGIT, (
        f"the letter staff confirmed is not a digit, taught to the reject option, is still answered "
        f"{letter_again.prediction.verdict} {letter_again.prediction.reading}"
    )
