import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import ml.serving.explain
import ml.serving.inference
from ml.serving.architectures import INPUT_SHAPE, NUM_CLASSES, build
from ml.serving.explain import GradCam, grad_cam
from ml.serving.heatmap import heatmap_overlay
from ml.serving.inference import Predictor
from ml.tests.conftest import SHIPPED_MODEL_DIR

INK = 128  # a pixel at least this bright is part of the stroke
ZOOM = 8


@pytest.fixture(scope="module")
def digits(mnist):
    return mnist.test.images[:20]


@pytest.fixture(scope="module")
def shipped_heat(shipped_predictor, digits):
    return shipped_predictor.explain(digits / 255.0)


def _tiny_model(activation: str) -> keras.Model:
    inputs = keras.Input(shape=INPUT_SHAPE)
    x = layers.Conv2D(4, 3, activation="relu")(inputs)
    x = layers.Flatten()(x)
    return keras.Model(inputs, layers.Dense(NUM_CLASSES, activation=activation)(x))


def test_maps_have_the_input_size_and_peak_at_one(shipped_heat, digits):
    assert shipped_heat.shape == digits.shape
    assert shipped_heat.dtype == np.float32
    assert shipped_heat.min() >= 0.0
    peaks = shipped_heat.max(axis=(1, 2))
    # A map is either empty (no positive evidence) or scaled so that its peak is exactly 1.
    assert np.all((peaks == 0.0) | (peaks == 1.0))
    assert np.mean(peaks == 1.0) >= 0.95


def test_heat_lies_on_the_ink_more_than_on_the_background(shipped_heat, digits):
    ink = digits >= INK
    on_ink = np.array([heat[mask].mean() for heat, mask in zip(shipped_heat, ink, strict=True)])
    off_ink = np.array([heat[~mask].mean() for heat, mask in zip(shipped_heat, ink, strict=True)])
    assert np.mean(on_ink > off_ink) >= 0.95


def test_the_default_class_is_the_predicted_one(shipped_predictor, shipped_heat, digits):
    predicted = shipped_predictor.probabilities(digits / 255.0).argmax(axis=1)
    np.testing.assert_array_equal(shipped_predictor.explain(digits / 255.0, predicted), shipped_heat)


def test_the_map_depends_on_the_class_asked_for(shipped_predictor, shipped_heat, digits):
    predicted = shipped_predictor.probabilities(digits / 255.0).argmax(axis=1)
    other = shipped_predictor.explain(digits / 255.0, (predicted + 1) % NUM_CLASSES)
    differences = np.abs(other - shipped_heat).max(axis=(1, 2))
    assert np.mean(differences > 0.5) >= 0.8


def test_a_batch_gives_the_same_maps_as_one_at_a_time(shipped_predictor, shipped_heat, digits):
    x = digits[:4] / 255.0
    alone = np.concatenate([shipped_predictor.explain(x[i : i + 1]) for i in range(len(x))])
    np.testing.assert_allclose(alone, shipped_heat[:4], atol=1e-5)


def test_inputs_with_and_without_a_channel_axis_agree(shipped_predictor, shipped_heat, digits):
    x = digits[:4, :, :, None] / 255.0
    np.testing.assert_allclose(shipped_predictor.explain(x), shipped_heat[:4], atol=1e-6)


def test_an_all_zero_input_gives_a_finite_map(shipped_predictor):
    heat = shipped_predictor.explain(np.zeros((1, 28, 28), dtype=np.float32))
    assert heat.shape == (1, 28, 28)
    assert np.all(np.isfinite(heat))
    assert 0.0 <= heat.min() <= heat.max() <= 1.0


def test_an_empty_batch_gives_no_maps(shipped_predictor):
    assert shipped_predictor.explain(np.zeros((0, 28, 28))).shape == (0, 28, 28)


@pytest.mark.parametrize(
    ("class_indices", "message"),
    [(np.array([1, 2]), "2 class indices for 3 inputs"), (np.array([0, 1, NUM_CLASSES]), "must lie in")],
)
def test_bad_class_indices_are_refused(shipped_predictor, digits, class_indices, message):
    with pytest.raises(ValueError, match=message):
        shipped_predictor.explain(digits[:3] / 255.0, class_indices)


@pytest.mark.parametrize(
    ("arch", "feature_layer_type", "feature_side"),
    [
        # The ReLU after the last convolution's batch normalisation, not the raw convolution.
        ("deep", layers.Activation, 7),
        # The convolution (which applies its own ReLU), ahead of the pooling that halves it.
        ("basic", layers.Conv2D, 26),
    ],
)
def test_untrained_architectures_are_explained_from_the_last_convolution(
    digits, arch, feature_layer_type, feature_side
):
    keras.utils.set_random_seed(0)
    cam = GradCam(build(arch))
    assert isinstance(cam.feature_layer, feature_layer_type)
    assert cam.feature_layer.output.shape[1] == feature_side
    heat = cam(digits[:3] / 255.0)
    assert heat.shape == (3, 28, 28)
    assert np.all(np.isfinite(heat))
    assert 0.0 <= heat.min() <= heat.max() <= 1.0


def test_a_model_without_convolutions_is_refused():
    with pytest.raises(ValueError, match="no Conv2D"):
        GradCam(build("dense"))


def test_a_softmax_model_is_explained_through_its_logits(digits):
    keras.utils.set_random_seed(0)
    with_softmax = _tiny_model("softmax")
    logits_only = _tiny_model("linear")
    logits_only.set_weights(with_softmax.get_weights())
    x = digits[:4] / 255.0
    classes = np.array([0, 3, 5, 9])
    np.testing.assert_allclose(grad_cam(with_softmax, x, classes), grad_cam(logits_only, x, classes), atol=1e-5)


def test_maps_match_the_element_wise_grad_cam_written_out_by_hand(digits):
    keras.utils.set_random_seed(0)
    model = _tiny_model("linear")
    conv, dense = model.layers[1], model.layers[-1]
    x = digits[:3] / 255.0
    classes = np.array([2, 4, 7])
    features = keras.Model(model.input, conv.output)(x[..., None]).numpy()
    # A linear head: the gradient of logit c with respect to the features is its kernel column.
    gradients = dense.kernel.numpy().reshape((*features.shape[1:], NUM_CLASSES))
    expected = []
    for feature_map, c in zip(features, classes, strict=True):
        # Element-wise: each position's own gradient times its activation (HiResCAM).
        cam = np.maximum((feature_map * gradients[..., c]).sum(axis=-1), 0.0)
        cam = tf.image.resize(cam[..., None], (28, 28), method="bilinear").numpy()[..., 0]
        expected.append(cam / cam.max() if cam.max() > 0 else cam)
    np.testing.assert_allclose(grad_cam(model, x, classes), np.stack(expected), atol=1e-5)


def test_the_predictor_builds_its_grad_cam_once(monkeypatch, digits):
    built = []

    class CountingGradCam(GradCam):
        def __init__(self, model):
            built.append(model)
            super().__init__(model)

    monkeypatch.setattr(ml.serving.inference, "GradCam", CountingGradCam)
    predictor = Predictor(SHIPPED_MODEL_DIR)
    x = digits[:2] / 255.0
    first = predictor.explain(x)
    second = predictor.explain(x)
    assert built == [predictor.model]
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, grad_cam(predictor.model, x), atol=1e-6)


def test_the_overlay_is_an_enlarged_rgb_picture_with_crisp_pixels(shipped_heat, digits):
    overlay = heatmap_overlay(digits[0], shipped_heat[0], zoom=ZOOM)
    assert overlay.shape == (28 * ZOOM, 28 * ZOOM, 3)
    assert overlay.dtype == np.uint8
    assert len(np.unique(overlay.reshape(-1, 3), axis=0)) > 2
    # Every model pixel is one solid ZOOM x ZOOM block: nearest neighbour, no smoothing.
    np.testing.assert_array_equal(overlay, np.kron(overlay[::ZOOM, ::ZOOM], np.ones((ZOOM, ZOOM, 1), np.uint8)))


def test_the_overlay_shows_the_heat_over_the_digit():
    display = np.zeros((28, 28), dtype=np.uint8)
    display[10:18, 12:16] = 255
    heat = np.zeros((28, 28), dtype=np.float32)
    heat[:, 14:] = 1.0
    overlay = heatmap_overlay(display, heat, zoom=1).astype(int)
    # Same ink, different heat: the colour differs; same heat, different ink: the brightness differs.
    assert np.any(overlay[12, 12] != overlay[12, 15])
    assert overlay[12, 12].sum() > overlay[5, 12].sum()
    assert overlay[5, 5].max() < 8  # no ink, no heat: (nearly) black, like the background of the input


def test_the_overlay_refuses_mismatched_arrays():
    with pytest.raises(ValueError, match="expected two"):
        heatmap_overlay(np.zeros((28, 28), np.uint8), np.zeros((7, 7), np.float32))


def test_an_ensemble_is_explained_by_its_members_for_the_class_it_chose(digits):
    from ml.serving.architectures import ensemble, members_of

    keras.utils.set_random_seed(3)
    first, second = _tiny_model("softmax"), _tiny_model("softmax")
    single = GradCam(first)(digits / 255.0)
    second.set_weights(first.get_weights())
    twins = ensemble([first, second], name="tiny")
    # Two identical members: the ensemble's map is the member's.
    np.testing.assert_allclose(GradCam(twins)(digits / 255.0), single, atol=1e-5)

    keras.utils.set_random_seed(4)
    different = ensemble([_tiny_model("softmax"), _tiny_model("softmax")], name="tiny")
    chosen = different.predict(digits[..., None] / 255.0, verbose=0).argmax(axis=1)
    maps = [GradCam(member)(digits / 255.0, chosen) for member in members_of(different)]
    mean = np.mean(maps, axis=0)
    expected = mean / np.maximum(mean.max(axis=(1, 2), keepdims=True), 1e-12)
    np.testing.assert_allclose(GradCam(different)(digits / 255.0), expected, atol=1e-5)
