"""Exit heads: shapes, serialization, tfmot pruning and clustering, TFLite."""

import numpy as np
import pytest

import tfee
from tfee import keras
from tfee import tf
from tfee import tfmot

HEAD_CLASSES = [tfee.layers.LinearHead, tfee.layers.SDNHead, tfee.layers.ConvHead]
FEATURES = (2, 8, 8, 4)


def _features(shape=FEATURES):
    return np.random.default_rng(1).standard_normal(shape).astype("float32")


def _model_with(head):
    inputs = keras.Input(FEATURES[1:])
    outputs = head(inputs)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("head_class", HEAD_CLASSES)
@pytest.mark.parametrize("with_confidence", [False, True])
def test_head_output_shapes_match_compute_output_shape(head_class, with_confidence):
    head = head_class(5, with_confidence=with_confidence)
    outputs = head(_features())
    expected = head.compute_output_shape(FEATURES)
    if with_confidence:
        logits, confidence = outputs
        assert logits.shape == expected[0] == (2, 5)
        assert confidence.shape == expected[1] == (2, 1)
        assert np.all((confidence.numpy() > 0) & (confidence.numpy() < 1))
    else:
        assert outputs.shape == expected == (2, 5)


@pytest.mark.parametrize("head_class", HEAD_CLASSES)
def test_head_rebuilt_from_config_with_copied_weights_predicts_the_same(head_class):
    head = head_class(5, with_confidence=True, name="head")
    x = _features()
    expected = head(x, training=False)
    config = head.get_config()
    clone = head_class.from_config(config)
    clone(x)
    clone.set_weights(head.get_weights())
    assert clone.get_config() == config
    for a, b in zip(expected, clone(x, training=False)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_conv_head_config_keeps_every_constructor_argument():
    head = tfee.layers.ConvHead(4, filters=6, momentum=0.9, with_confidence=True)
    config = head.get_config()
    assert (config["num_classes"], config["filters"], config["momentum"]) == (4, 6, 0.9)
    assert config["with_confidence"] is True


@pytest.mark.parametrize("head_class", HEAD_CLASSES)
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_head_survives_save_and_load_model(head_class, suffix, tmp_path):
    model = _model_with(head_class(3, with_confidence=True))
    x = _features()
    expected = model.predict(x, verbose=0)
    path = str(tmp_path / f"model{suffix}")
    model.save(path)
    loaded = keras.models.load_model(
        path, **({"safe_mode": True} if suffix == ".keras" else {})
    )
    assert type(loaded.layers[1]) is head_class
    for a, b in zip(expected, loaded.predict(x, verbose=0)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_conv_head_updates_batch_norm_statistics_only_in_training():
    head = tfee.layers.ConvHead(3)
    x = _features() + 3.0
    head(x, training=False)
    before = head.bn1_moving_mean.numpy().copy()
    head(x, training=False)
    np.testing.assert_array_equal(before, head.bn1_moving_mean.numpy())
    head(x, training=True)
    assert not np.allclose(before, head.bn1_moving_mean.numpy())


def test_frozen_conv_head_never_updates_batch_norm_statistics():
    head = tfee.layers.ConvHead(3)
    head(_features())
    head.trainable = False
    before = head.bn2_moving_variance.numpy().copy()
    head(_features() * 5, training=True)
    np.testing.assert_array_equal(before, head.bn2_moving_variance.numpy())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 0}, "expected a positive integer. Received: num_classes=0"),
        ({"num_classes": 2.5}, "Received: num_classes=2.5"),
        ({"num_classes": 3, "with_confidence": "yes"}, "with_confidence"),
    ],
)
def test_invalid_head_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        tfee.layers.LinearHead(**kwargs)


def test_conv_head_rejects_invalid_filters_and_momentum():
    with pytest.raises(ValueError, match="Received: filters=0"):
        tfee.layers.ConvHead(3, filters=0)
    with pytest.raises(ValueError, match="Received: momentum=1.5"):
        tfee.layers.ConvHead(3, momentum=1.5)


def test_head_on_a_flat_input_raises_a_clear_error():
    with pytest.raises(
        ValueError, match=r"needs a 4-D feature map.*input_shape=\(2, 16\)"
    ):
        tfee.layers.SDNHead(3)(np.zeros((2, 16), "float32"))


def test_sdn_head_pools_large_maps_to_four_by_four():
    head = tfee.layers.SDNHead(3)
    head(np.zeros((1, 16, 16, 2), "float32"))
    assert head.kernel.shape == (4 * 4 * 2, 3)


def _train_briefly(model, epochs=2, callbacks=()):
    x = _features((16,) + FEATURES[1:])
    y = np.random.default_rng(0).integers(0, 3, 16)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=epochs, batch_size=8, verbose=0, callbacks=list(callbacks))


@pytest.mark.parametrize("head_class", HEAD_CLASSES)
def test_pruning_a_head_reaches_the_requested_sparsity(head_class):
    model = _model_with(head_class(3))
    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        model,
        pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, 0, frequency=1),
    )
    _train_briefly(pruned, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    head = stripped.layers[1]
    assert isinstance(head, head_class)
    for weight in head.get_prunable_weights():
        values = weight.numpy()
        assert abs(1 - np.count_nonzero(values) / values.size - 0.5) < 0.05, weight.name


@pytest.mark.parametrize("head_class", HEAD_CLASSES)
def test_clustering_a_head_leaves_the_requested_number_of_values(head_class):
    model = _model_with(head_class(3))
    clustered = tfmot.clustering.keras.cluster_weights(
        model,
        number_of_clusters=4,
        cluster_centroids_init=tfmot.clustering.keras.CentroidInitialization.LINEAR,
    )
    _train_briefly(clustered, epochs=1)
    stripped = tfmot.clustering.keras.strip_clustering(clustered)
    head = stripped.layers[1]
    assert isinstance(head, head_class)
    for _, weight in head.get_clusterable_weights():
        assert len(np.unique(weight.numpy())) <= 4, weight.name


@pytest.mark.parametrize("head_class", HEAD_CLASSES)
def test_heads_convert_to_tflite_and_agree_with_keras(head_class):
    from ai_edge_litert.interpreter import Interpreter

    model = _model_with(head_class(3, with_confidence=True))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    interpreter = Interpreter(model_content=converter.convert())
    runner = interpreter.get_signature_runner()
    x = _features()
    outputs = runner(**{runner.get_input_details().popitem()[0]: x})
    expected = model.predict(x, verbose=0)
    converted = sorted(outputs.values(), key=lambda v: v.shape[-1], reverse=True)
    np.testing.assert_allclose(converted[0], expected[0], atol=1e-4)
    np.testing.assert_allclose(converted[1], expected[1], atol=1e-5)
