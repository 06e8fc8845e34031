import numpy as np
import pytest
from django.db import IntegrityError

from classifier.models import DigitImage, Feedback, Flag, ModelVersion, Prediction
from classifier.services import (
    correction_training_refusal,
    feedback_confirm,
    feedback_give,
    image_flag,
    model_version_activate,
    model_version_ensure_initial,
    prediction_run,
    predictions_run,
)
from classifier.tests.factories import DigitImageFactory, ModelVersionFactory, ReviewerFactory, UserFactory
from ml.tests.conftest import encode

pytestmark = pytest.mark.django_db


def test_the_shipped_model_becomes_version_1(settings):
    version = model_version_ensure_initial()
    assert version.number == 1 and version.is_active
    assert version.architecture == "deep"
    assert version.test_accuracy >= 0.996
    assert model_version_ensure_initial() == version
    assert ModelVersion.objects.count() == 1


def test_prediction_run_stores_one_prediction_and_is_idempotent(mnist):
    image = DigitImageFactory(data=encode(255 - mnist.test.images[0]))  # a dark-on-light 7
    first = prediction_run(image_id=image.pk)
    again = prediction_run(image_id=image.pk)
    assert first.pk == again.pk
    assert Prediction.objects.filter(image=image).count() == 1
    image.refresh_from_db()
    assert image.status == DigitImage.Status.DONE and image.attempts == 1
    assert first.digit == mnist.test.labels[0]
    assert len(first.probabilities) == 10 and sum(first.probabilities) == pytest.approx(1, abs=1e-4)
    assert first.confidence == max(first.probabilities)
    assert first.model_version.is_active
    assert len(bytes(first.model_input)) == 28 * 28
    assert first.inference_ms > 0


def test_one_prediction_per_image_is_enforced_by_the_database(mnist):
    image = DigitImageFactory(data=encode(mnist.test.images[1]))
    prediction = prediction_run(image_id=image.pk)
    with pytest.raises(IntegrityError):
        Prediction.objects.create(
            image=image,
            digit=1,
            confidence=1,
            probabilities=[0.1] * 10,
            model_version=prediction.model_version,
            model_input=bytes(784),
            inference_ms=1,
        )


def test_an_image_that_cannot_be_classified_ends_failed_with_the_reason():
    broken = DigitImageFactory(data=b"\x89PNG\r\n\x1a\n broken after its signature")
    assert prediction_run(image_id=broken.pk) is None
    broken.refresh_from_db()
    assert broken.status == DigitImage.Status.FAILED
    assert "not an image we can read" in broken.error_message


@pytest.mark.parametrize("reading", ["auto", "digit", "number"])
def test_a_blank_image_is_answered_not_a_digit_instead_of_failing(reading):
    blank = DigitImageFactory(data=encode(np.full((300, 200), 255)), reading=reading)
    prediction = prediction_run(image_id=blank.pk)
    blank.refresh_from_db()
    assert blank.status == DigitImage.Status.DONE and not blank.error_message
    assert (prediction.verdict, prediction.number) == ("not_a_digit", "")
    assert prediction.verdict_reason == "it looks blank: there is no writing on it to read."
    assert prediction.digits[0]["box"] == [0, 0, 200, 300]  # the whole page, where nothing was found
    assert len(prediction.probabilities) == 10 and abs(sum(prediction.probabilities) - 1) < 1e-4
    assert not prediction.model_input_pixels().any()  # what the model saw: nothing


def test_a_missing_file_fails_the_image_instead_of_crashing(mnist):
    image = DigitImageFactory(data=encode(mnist.test.images[2]))
    image.file.storage.delete(image.file.name)
    assert prediction_run(image_id=image.pk) is None
    image.refresh_from_db()
    assert image.status == DigitImage.Status.FAILED and "could not be read" in image.error_message


def test_a_deleted_image_is_nothing_to_do():
    assert prediction_run(image_id=987654) is None


def test_workers_switch_to_a_newly_activated_version(mnist, tiny_model_dir):
    model_version_ensure_initial()
    tiny = ModelVersionFactory(architecture="basic", path=str(tiny_model_dir))
    model_version_activate(number=tiny.number)
    image = DigitImageFactory(data=encode(mnist.test.images[3]))
    assert prediction_run(image_id=image.pk).model_version == tiny
    model_version_activate(number=1)
    assert ModelVersion.objects.get(is_active=True).number == 1
    other = DigitImageFactory(data=encode(mnist.test.images[4]))
    assert prediction_run(image_id=other.pk).model_version.number == 1


def test_only_one_version_can_be_active():
    assert model_version_ensure_initial().is_active
    with pytest.raises(IntegrityError):
        ModelVersionFactory(is_active=True)


def test_image_flag_records_and_updates_the_correction(mnist):
    image = DigitImageFactory(data=encode(mnist.test.images[0]))
    staff = ReviewerFactory()
    flag = image_flag(image=image, correct_number="1", flagged_by=staff, note="looks like a 1")
    assert (flag.correct_number, flag.correct_digit, flag.flagged_by, flag.note) == ("1", 1, staff, "looks like a 1")
    image_flag(image=image, correct_number="583124", flagged_by=staff)
    flag.refresh_from_db()
    assert (flag.correct_number, flag.correct_digit, flag.not_a_digit) == ("583124", None, False)
    assert flag.says == "is 583124"
    image_flag(image=image, correct_number=None, flagged_by=staff)
    flag.refresh_from_db()
    assert (flag.correct_number, flag.correct_digit, flag.not_a_digit) == ("", None, True)
    for refused in ("", "7a", "-1", "1 2", "²", "1" * 13):
        with pytest.raises(ValueError, match="digits only, left to right"):
            image_flag(image=image, correct_number=refused, flagged_by=staff)
    assert Flag.objects.get().not_a_digit  # a refusal changes nothing


def test_a_correction_trains_only_with_as_many_digits_as_boxes(mnist):
    page = DigitImageFactory(data=encode(_number_page(mnist, [0, 1, 2, 3])))  # 7 2 1 0
    four = prediction_run(image_id=page.pk)
    one = prediction_run(image_id=DigitImageFactory(data=encode(255 - mnist.test.images[0])).pk)
    assert len(four.readings()) == 4 and len(one.readings()) == 1
    assert correction_training_refusal(correct_number="7219", prediction=four) is None
    assert correction_training_refusal(correct_number="3", prediction=one) is None
    assert correction_training_refusal(correct_number=None, prediction=one) is None  # teaches "not a digit"
    assert correction_training_refusal(correct_number="3", prediction=None) is None  # read again from its file
    assert correction_training_refusal(correct_number="72190", prediction=four) == (
        "5 digits given, 4 found: kept, not trained on."
    )
    assert correction_training_refusal(correct_number="7", prediction=four) == (
        "1 digit given, 4 found: kept, not trained on."
    )
    assert correction_training_refusal(correct_number="72", prediction=one) == (
        "2 digits given, 1 found: kept, not trained on."
    )
    # "Not a digit" teaches the reject option whatever the reader found.
    assert correction_training_refusal(correct_number=None, prediction=four) is None


def test_an_image_whose_deliveries_keep_dying_ends_failed(mnist):
    image = DigitImageFactory(data=encode(mnist.test.images[0]), attempts=3, status=DigitImage.Status.PROCESSING)
    assert prediction_run(image_id=image.pk) is None
    image.refresh_from_db()
    assert image.status == DigitImage.Status.FAILED
    assert "after 3 attempts" in image.error_message
    assert not Prediction.objects.filter(image=image).exists()


def test_prediction_run_stores_a_grad_cam_heat_map_on_the_ink(mnist):
    image = DigitImageFactory(data=encode(255 - mnist.test.images[0]))
    prediction = prediction_run(image_id=image.pk)
    heat = np.frombuffer(bytes(prediction.saliency), dtype=np.uint8).reshape(28, 28)
    ink = np.frombuffer(bytes(prediction.model_input), dtype=np.uint8).reshape(28, 28) > 64
    assert heat.max() == 255  # normalised
    assert heat[ink].mean() > heat[~ink].mean()


def test_feedback_is_a_suggestion_until_staff_confirm_it(mnist):
    image = DigitImageFactory(data=encode(255 - mnist.test.images[0]))
    prediction = prediction_run(image_id=image.pk)
    feedback = feedback_give(image=image, user=image.owner, suggested_number="1")
    feedback = feedback_give(image=image, user=image.owner, suggested_number="4")  # changed their mind
    assert Feedback.objects.get(image=image).suggested_digit == 4 and not feedback.is_confirmed
    image.refresh_from_db()
    assert image.prediction.digit == prediction.digit  # the prediction stays
    assert not Flag.objects.exists()

    with pytest.raises(PermissionError):
        feedback_give(image=image, user=UserFactory(), suggested_number="3")
    with pytest.raises(ValueError, match="digits only"):
        feedback_give(image=image, user=image.owner, suggested_number="ten")
    with pytest.raises(ValueError, match=f"already reads {prediction.digit}; write what it really reads"):
        feedback_give(image=image, user=image.owner, suggested_number=str(prediction.digit))
    pending = DigitImageFactory(owner=image.owner, data=encode(255 - mnist.test.images[1]))
    with pytest.raises(ValueError, match="no prediction yet"):
        feedback_give(image=pending, user=pending.owner, suggested_number="3")

    staff = ReviewerFactory()
    assert feedback_confirm(feedback=Feedback.objects.all(), confirmed_by=staff) == 1
    flag = Flag.objects.get(image=image)
    assert flag.correct_digit == 4 and flag.flagged_by == staff and "feedback" in flag.note
    feedback.refresh_from_db()
    assert feedback.is_confirmed and feedback.confirmed_by == staff


def test_feedback_on_a_number_is_a_number_and_confirms_into_a_flag_of_it(mnist):
    image = DigitImageFactory(data=encode(_number_page(mnist, [0, 1, 2])))  # 7 2 1
    prediction = prediction_run(image_id=image.pk)
    assert prediction.number == "721"
    with pytest.raises(ValueError, match="The model already reads 721; write what it really reads"):
        feedback_give(image=image, user=image.owner, suggested_number="721")
    feedback = feedback_give(image=image, user=image.owner, suggested_number=" 7210 ")
    assert (feedback.suggested_number, feedback.suggested_digit) == ("7210", None)
    feedback_confirm(feedback=[feedback], confirmed_by=ReviewerFactory())
    flag = Flag.objects.get(image=image)
    assert (flag.correct_number, flag.correct_digit, flag.says) == ("7210", None, "is 7210")


def test_a_batch_is_classified_with_one_model_call(mnist, monkeypatch):
    from ml.serving.inference import Predictor

    images = [DigitImageFactory(data=encode(255 - mnist.test.images[i])) for i in range(3)]
    blank = DigitImageFactory(data=encode(np.full((40, 40), 255)))
    calls = []
    real = Predictor.assess
    monkeypatch.setattr(Predictor, "assess", lambda self, arrays: calls.append(len(arrays)) or real(self, arrays))
    predictions = predictions_run(image_ids=[i.pk for i in [*images, blank]])
    assert calls == [4]  # the blank one's empty input rides along in the same call
    assert {pk: p.digit for pk, p in predictions.items() if pk != blank.pk} == {
        image.pk: int(mnist.test.labels[i]) for i, image in enumerate(images)
    }
    blank.refresh_from_db()
    assert blank.status == DigitImage.Status.DONE and blank.prediction.verdict == "not_a_digit"
    del predictions[blank.pk]
    assert all(p.saliency and p.inference_ms > 0 for p in predictions.values())
    assert predictions_run(image_ids=[i.pk for i in images]) == predictions  # idempotent: nothing new
    assert calls == [4]
    for i, image in enumerate(images):  # one digit: its reading is the single-digit answer
        prediction = predictions[image.pk]
        assert prediction.number == str(mnist.test.labels[i]) and len(prediction.digits) == 1
        assert prediction.digits[0]["digit"] == prediction.digit and prediction.digit_inputs is None
        assert prediction.digits[0]["probabilities"] == prediction.probabilities


def _number_page(mnist, indices: list[int], gap: int = 12) -> np.ndarray:
    """MNIST test digits side by side with ``gap`` pixels between them, dark ink on white."""
    spacer = np.zeros((28, gap), dtype=np.uint8)
    parts = [part for i in indices for part in (mnist.test.images[i], spacer)]
    return 255 - np.pad(np.hstack([spacer, *parts]), 10)


def test_a_number_is_stored_with_each_digit_its_box_and_input(mnist):
    indices = [0, 1, 2, 3]  # 7 2 1 0
    image = DigitImageFactory(data=encode(_number_page(mnist, indices)), width=28 * 4 + 12 * 5 + 20, height=48)
    consenting = DigitImageFactory(data=encode(_number_page(mnist, indices)), training_consent=True)
    predictions = predictions_run(image_ids=[image.pk, consenting.pk])
    prediction = predictions[image.pk]
    expected = "".join(str(mnist.test.labels[i]) for i in indices)
    assert prediction.number == expected
    assert prediction.verdict in (Prediction.Verdict.NUMBER, Prediction.Verdict.UNSURE)
    assert [reading["digit"] for reading in prediction.digits] == [int(d) for d in expected]
    lefts = [reading["box"][0] for reading in prediction.digits]
    assert lefts == sorted(lefts) and all(0 <= left < image.width for left in lefts)
    weakest = min(prediction.digits, key=lambda reading: reading["confidence"])
    assert (prediction.digit, prediction.confidence) == (weakest["digit"], weakest["confidence"])
    inputs = prediction.digit_input_pixels()
    assert inputs.shape == (4, 28, 28) and all(inputs[k].max() > 200 for k in range(4))
    assert prediction.exact_inputs() is None  # kept only with consent
    kept = predictions[consenting.pk].exact_inputs()
    assert kept.shape == (4, 28, 28) and np.allclose(kept, inputs / 255, atol=1 / 255)


def test_a_batch_delivered_again_splits_into_one_task_per_image(mnist, monkeypatch):
    from classifier import queueing

    queued = []
    monkeypatch.setattr(queueing, "image_enqueue_alone", queued.append)  # the broker, as far as this test goes
    tried = DigitImageFactory(data=encode(255 - mnist.test.images[0]), attempts=1, status=DigitImage.Status.PROCESSING)
    fresh = DigitImageFactory(data=encode(255 - mnist.test.images[1]))
    predictions = predictions_run(image_ids=[tried.pk, fresh.pk])
    assert queued == [tried.pk]  # the image a worker died on goes alone
    assert list(predictions) == [fresh.pk]
    assert prediction_run(image_id=tried.pk).digit == mnist.test.labels[0]
    tried.refresh_from_db()
    assert tried.attempts == 2 and tried.status == DigitImage.Status.DONE


def test_the_worker_reads_each_image_as_its_owner_said(mnist):
    indices = [0, 1, 2, 3]  # 7 2 1 0
    number = encode(_number_page(mnist, indices))
    digit = encode(255 - mnist.test.images[4])  # a 4
    auto = DigitImageFactory(data=number)
    as_digit = DigitImageFactory(data=number, reading=DigitImage.Reading.DIGIT)
    as_number = DigitImageFactory(data=digit, reading=DigitImage.Reading.NUMBER)
    digit_auto = DigitImageFactory(data=digit)
    predictions = predictions_run(image_ids=[auto.pk, as_digit.pk, as_number.pk, digit_auto.pk])
    assert predictions[auto.pk].number == "7210"
    assert len(predictions[as_digit.pk].digits) == 1  # read whole, as one digit
    assert predictions[as_number.pk].number == predictions[digit_auto.pk].number == "4"  # one digit found
    # A correction is said the same way whatever the image was read as.
    staff = ReviewerFactory()
    flag = image_flag(image=as_digit, correct_number="7210", flagged_by=staff)
    assert (flag.correct_number, flag.correct_digit) == ("7210", None)
    feedback = feedback_give(image=as_number, user=as_number.owner, suggested_number="7")
    assert feedback.suggested_number == "7"
