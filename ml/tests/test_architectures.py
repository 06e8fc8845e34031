import numpy as np
import pytest

from ml.serving.architectures import ARCHITECTURES, INPUT_SHAPE, NUM_CLASSES, build


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_each_architecture_maps_images_to_ten_probabilities(name):
    model = build(name)
    assert model.input_shape == (None, *INPUT_SHAPE)
    assert model.output_shape == (None, NUM_CLASSES)
    out = np.asarray(model(np.random.default_rng(0).random((3, *INPUT_SHAPE), dtype=np.float32)))
    assert out.shape == (3, NUM_CLASSES)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)


def test_the_deep_cnn_has_batch_normalisation_and_dropout():
    kinds = [layer.__class__.__name__ for layer in build("deep").layers]
    assert kinds.count("Conv2D") >= 5
    assert kinds.count("BatchNormalization") == kinds.count("Conv2D")
    assert "Dropout" in kinds


def test_architectures_grow_in_depth_as_in_the_original_study():
    convs = {name: sum(layer.__class__.__name__ == "Conv2D" for layer in build(name).layers) for name in ARCHITECTURES}
    assert convs["dense"] == 0 < convs["basic"] < convs["deeper"] < convs["deep"]


def test_unknown_architecture_is_refused():
    with pytest.raises(ValueError, match="unknown architecture"):
        build("transformer")


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_each_architecture_is_named_as_declared(name):
    """An architecture is one entry: its model carries the name it is declared, trained and
    recorded by."""
    assert build(name).name == name
