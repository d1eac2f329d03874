"""Folding BatchNormalization before clustering, so clusters survive TFLite."""

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

import tfee
import tfee.compress
import tfee.export
from tests.compress import _tiny
from tfee import keras


def _trained_statistics(net, seed=1):
    """Gives every BN moving statistics and scales far from the identity."""
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 2.0, channels),
                    rng.normal(0, 0.5, channels),
                    rng.normal(0, 0.5, channels),
                    rng.uniform(0.2, 3.0, channels),
                ]
            )
    return net


def test_folding_keeps_outputs_names_and_exits_and_removes_every_bn():
    net = _trained_statistics(_tiny.network(with_confidence=True))
    # Stage models call the same layers again (as every export does); only
    # the calls inside `net` decide what folds.
    tfee.stage_models(net)
    folded = tfee.compress.fold_batch_norm(net)
    images = _tiny.dataset().map(lambda x, y: x)
    for a, b in zip(net.predict(images, verbose=0), folded.predict(images, verbose=0)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert [x.name for x in folded.layers] == [x.name for x in net.layers]
    assert not any(
        isinstance(x, keras.layers.BatchNormalization) for x in folded.layers
    )
    assert folded.get_layer("block1_conv").use_bias
    assert [e.name for e in tfee.exits(folded)] == [e.name for e in tfee.exits(net)]
    # The input network is untouched.
    assert isinstance(net.get_layer("block1_bn"), keras.layers.BatchNormalization)


def test_a_bn_that_does_not_follow_a_linear_conv_is_kept():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(
        inputs
    )
    x = keras.layers.BatchNormalization(name="after_relu")(x)
    y = keras.layers.Conv2D(4, 3, padding="same", name="conv2")(x)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.BatchNormalization(name="after_add")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    net = keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))
    assert tfee.compress.fold.foldable_pairs(net) == {}
    folded = tfee.compress.fold_batch_norm(net)
    assert isinstance(folded.get_layer("after_add"), keras.layers.BatchNormalization)


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="network"):
        tfee.compress.fold_batch_norm(keras.layers.Dense(2))
    with pytest.raises(TypeError, match="fold_batch_norm=1"):
        tfee.compress.cluster(_tiny.network(), _tiny.dataset(), 4, fold_batch_norm=1)


def test_wrapped_networks_must_be_stripped_first():
    wrapped = tfee.compress.cluster_weights(_tiny.network(), 2, init="linear")
    with pytest.raises(ValueError, match="strip tfmot wrappers first"):
        tfee.compress.fold_batch_norm(wrapped)


def test_clusters_survive_int8_export_once_bn_is_folded(tmp_path):
    net = _trained_statistics(_tiny.network())
    images = np.random.default_rng(0).random((16, 8, 8, 1), dtype="float32")

    def distinct_values(network, per_channel):
        clustered = tfee.compress.strip(
            tfee.compress.cluster_weights(network, 4, init="linear")
        )
        path = str(tmp_path / f"{network.name}_{per_channel}.tflite")
        tfee.export.tflite(
            clustered,
            path,
            quantize="int8",
            representative=images,
            signatures=["exit_2"],
            per_channel=per_channel,
        )
        interpreter = Interpreter(model_path=path)
        kernels = [
            d
            for d in interpreter.get_tensor_details()
            if "block2_conv" in d["name"] and d["dtype"] == np.int8
        ]
        kernel = next(d for d in kernels if len(d["shape"]) == 4)
        return len(np.unique(interpreter.get_tensor(kernel["index"])))

    assert distinct_values(tfee.compress.fold_batch_norm(net), False) <= 4
    # Unfolded, the converter's BN folding scales each channel differently.
    assert distinct_values(net, False) > 4
