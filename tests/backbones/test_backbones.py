"""Reference backbones build as functional models and train with model.fit."""

import numpy as np
import pytest

import tfee


def _fit_once(model, shape):
    x = np.random.default_rng(0).random((8,) + shape, dtype="float32")
    y = np.arange(8) % model.output_shape[-1]
    model.compile("sgd", "sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize(
    "build, shape",
    [
        (lambda: tfee.backbones.resnet_cifar(8, 3, (16, 16, 3), width=4), (16, 16, 3)),
        (
            lambda: tfee.backbones.vgg(3, (16, 16, 3), config=(4, "M", 8, "M")),
            (16, 16, 3),
        ),
        (lambda: tfee.backbones.small_cnn(3, (8, 8, 1), widths=(4, 8)), (8, 8, 1)),
    ],
)
def test_backbone_trains_with_fit(build, shape):
    model = build()
    assert model.output_shape == (None, 3)
    _fit_once(model, shape)


@pytest.mark.parametrize("depth", [20, 32, 56, 110])
def test_resnet_depth_sets_the_number_of_blocks(depth):
    model = tfee.backbones.resnet_cifar(depth, input_shape=(8, 8, 3), width=2)
    blocks = [layer.name for layer in model.layers if layer.name.endswith("_out")]
    assert len(blocks) == 3 * (depth - 2) // 6


@pytest.mark.parametrize("depth", [19, 4, "20"])
def test_resnet_rejects_depths_that_are_not_6n_plus_2(depth):
    with pytest.raises(ValueError, match=r"expected 6n \+ 2"):
        tfee.backbones.resnet_cifar(depth)


def test_vgg_and_small_cnn_reject_bad_configs():
    with pytest.raises(ValueError, match="Received: config="):
        tfee.backbones.vgg(config=(0, "M"))
    with pytest.raises(ValueError, match="Received: widths=()"):
        tfee.backbones.small_cnn(widths=())
