import numpy as np
import pytest

from ml.serving.artifacts import to_model_array
from ml.serving.inference import Predictor
from ml.serving.preprocessing import PreprocessingError, to_model_input
from ml.tests.conftest import encode


@pytest.fixture(scope="module")
def predictor(tiny_model_dir):
    return Predictor(tiny_model_dir)


def test_batch_prediction_matches_model_predict(predictor, mnist):
    x = to_model_array(mnist.test.images[:50])
    expected = predictor.model.predict(x, verbose=0)
    np.testing.assert_allclose(predictor.probabilities(x), expected, atol=1e-5)


def test_predictions_have_digit_confidence_and_ten_probabilities(predictor, mnist):
    predictions = predictor.predict_arrays(mnist.test.images[:20] / 255.0)
    assert len(predictions) == 20
    for p in predictions:
        assert len(p.probabilities) == 10
        assert sum(p.probabilities) == pytest.approx(1.0, abs=1e-4)
        assert p.digit == int(np.argmax(p.probabilities))
        assert p.confidence == max(p.probabilities)


def test_a_batch_gives_the_same_answer_as_one_at_a_time(predictor, mnist):
    x = mnist.test.images[:8] / 255.0
    together = predictor.probabilities(x)
    alone = np.concatenate([predictor.probabilities(x[i : i + 1]) for i in range(8)])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_images_keep_their_order_and_a_bad_one_does_not_stop_the_rest(predictor, mnist):
    good = [encode(mnist.test.images[i]) for i in range(3)]
    results = predictor.predict_images([good[0], b"not an image", good[1], b"", good[2]])
    assert [r.error is None for r in results] == [True, False, True, False, True]
    assert "not an image" in results[1].error
    assert "empty" in results[3].error
    for result, blob in zip([results[0], results[2], results[4]], good, strict=True):
        np.testing.assert_array_equal(result.model_input.array, to_model_input(blob).array)


def test_an_unforeseen_failure_in_one_image_fails_that_image_only(predictor, mnist, monkeypatch, caplog):
    """Whatever breaks while preprocessing one image (not only our own error class) is that
    image's error, with a reason for people; its neighbours are classified in the same call."""
    from ml.serving import inference

    good = [encode(mnist.test.images[i]) for i in range(2)]
    poison = b"poison"

    def to_model_input_or_crash(blob):
        if blob == poison:
            raise ValueError("image has wrong mode")  # what Pillow raised on 16-bit thumbnails
        return to_model_input(blob)

    monkeypatch.setattr(inference, "to_model_input", to_model_input_or_crash)
    results = predictor.predict_images([good[0], poison, good[1]])
    assert [r.prediction is not None for r in results] == [True, False, True]
    assert results[1].error == inference.UNEXPECTED_ERROR
    assert "wrong mode" in caplog.text  # the real cause goes to the log


def test_empty_batch(predictor):
    assert predictor.probabilities(np.zeros((0, 28, 28))).shape == (0, 10)
    assert predictor.predict_images([]) == []


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model"):
        Predictor(tmp_path)


def test_preprocessing_error_is_a_value_error():
    # Callers that catch ValueError (forms, serializers) catch ours too.
    assert issubclass(PreprocessingError, ValueError)
