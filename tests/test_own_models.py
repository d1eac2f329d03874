"""Users' own models: nested bases, BN-followed stage outputs, padding, unknown
input sizes, non-classifier outputs and loading saved networks."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tfee
from tfee import keras


def _base(name="base", input_shape=(16, 16, 3)):
    """A tiny pre-trained-style base: stages ending in named `_out` layers,
    the second followed by BatchNormalization (as in ResNet V2)."""
    inputs = keras.Input(input_shape)
    x = keras.layers.ZeroPadding2D(1, name="stem_pad")(inputs)
    x = keras.layers.Conv2D(8, 3, name="stem_conv")(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stage1_out")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="stage2_conv")(x)
    x = keras.layers.Activation("linear", name="stage2_out")(x)
    x = keras.layers.BatchNormalization(name="stage3_preact_bn")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="stage3_conv")(x)
    x = keras.layers.ReLU(name="stage3_out")(x)
    return keras.Model(inputs, x, name=name)


def _transfer_model(base, training=False, classes=4):
    inputs = keras.Input(base.input_shape[1:])
    x = base(inputs, training=training)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(classes, name="logits")(x))


def _moving_statistics(model):
    """Gives every BatchNormalization non-trivial moving statistics, so that
    inference and training mode differ."""
    rng = np.random.default_rng(0)
    for layer in model.submodules:
        if isinstance(layer, keras.layers.BatchNormalization):
            mean, variance = layer.moving_mean, layer.moving_variance
            mean.assign(rng.normal(size=mean.shape).astype("float32"))
            variance.assign(rng.uniform(0.5, 2, size=variance.shape).astype("float32"))


def _images(n=4, size=16):
    return np.random.default_rng(1).random((n, size, size, 3), dtype="float32")


def test_exits_attach_inside_a_nested_base_model():
    base = _base()
    model = _transfer_model(base)
    _moving_statistics(model)
    net = tfee.attach_exits(model, ["stage1_out", "stage2_out"], head="linear")
    assert [info.attach_layer for info in tfee.exits(net)] == [
        "stage1_out",
        "stage2_out",
        "logits",
    ]
    x = _images()
    np.testing.assert_allclose(net(x)[-1], model(x), rtol=1e-5, atol=1e-5)
    # base(inputs, training=False) keeps its BN in inference even when the
    # flattened network is called in training mode.
    np.testing.assert_allclose(
        net(x, training=True)[-1], model(x, training=True), rtol=1e-5, atol=1e-5
    )
    assert "base" in [layer.name for layer in model.layers]  # input untouched


def test_a_frozen_base_stays_frozen_and_its_heads_train():
    base = _base()
    base.trainable = False
    net = tfee.attach_exits(_transfer_model(base), tfee.FlopsFractions([0.5]))
    trainable = {layer.name for layer in net.layers if layer.trainable_weights}
    assert trainable == {"exit_1_head", "logits"}


def test_flops_fractions_place_exits_inside_a_nested_base():
    base = _base()
    net = tfee.attach_exits(_transfer_model(base), tfee.FlopsFractions([0.3, 0.6]))
    attach = [info.attach_layer for info in tfee.exits(net)]
    inner = {layer.name for layer in base.layers}
    assert attach[0] in inner and attach[1] in inner


def test_the_docs_own_model_block_runs_as_written(tmp_path, monkeypatch):
    from tests import test_readme

    block = test_readme.block_holding("keras.applications.MobileNetV2(")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(block, "own-model block", "exec"), namespace)  # noqa: S102
    attach = [info.attach_layer for info in tfee.exits(namespace["my_net"])]
    assert attach[:2] == ["block_2_add", "block_6_project_BN"] and len(attach) == 3


def test_flatten_model_rebuilds_an_unknown_input_size():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    flat = tfee.flatten_model(model, input_shape=(16, 16, 3))
    assert flat.input_shape == (None, 16, 16, 3)
    np.testing.assert_allclose(flat(_images()), model(_images()), rtol=1e-6)


def test_unknown_input_size_asks_for_input_shape():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, name="conv1")(inputs)
    x = keras.layers.Conv2D(4, 3, name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    with pytest.raises(
        ValueError, match=r"unknown dimensions \(None, None, 3\).*input_shape="
    ):
        tfee.attach_exits(model, ["conv1"])
    with pytest.raises(ValueError, match=r"model_macs: MACs need a fixed input size"):
        tfee.cost.model_macs(model)
    net = tfee.attach_exits(model, ["conv1"], input_shape=(12, 12, 3))
    assert net.input_shape == (None, 12, 12, 3)


@pytest.mark.parametrize(
    "input_shape", [(16, 16), (16, 0, 3), "16,16,3", (16.0, 16, 3)]
)
def test_a_bad_input_shape_names_the_argument(input_shape):
    with pytest.raises(ValueError, match=r"`input_shape` must be 3 positive integers"):
        tfee.flatten_model(_transfer_model(_base()), input_shape=input_shape)


def test_repeated_layer_names_across_nested_models_are_refused():
    model = _transfer_model(_base())
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(3, 1, name="stem_conv")(inputs)  # also in the base
    outer = keras.Model(inputs, model(x))
    with pytest.raises(
        ValueError, match=r"several layers the name\(s\) \['stem_conv'\]"
    ):
        tfee.flatten_model(outer)


def test_a_stage_output_followed_by_batch_norm_is_accepted():
    model = _transfer_model(_base())
    net = tfee.attach_exits(model, ["stage2_out"])
    assert tfee.exits(net)[0].attach_layer == "stage2_out"


def test_padding_and_preprocessing_layers_are_never_attach_points():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255, name="rescale")(inputs)
    x = keras.layers.ZeroPadding2D(1, name="pad")(x)
    x = keras.layers.Conv2D(4, 3, name="conv1")(x)
    x = keras.layers.ZeroPadding2D(1, name="pad2")(x)
    x = keras.layers.Conv2D(4, 3, name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    with pytest.raises(
        ValueError,
        match=r"'pad2' in `placement` only pads or crops.*'conv1' before it, "
        r"'conv2' after it",
    ):
        tfee.attach_exits(model, ["pad2"])
    with pytest.raises(ValueError, match=r"'rescale' in `placement` comes before any"):
        tfee.attach_exits(model, ["rescale"])
    net = tfee.attach_exits(model, tfee.FlopsFractions([0.1]))
    assert tfee.exits(net)[0].attach_layer == "conv1"


@pytest.mark.parametrize(
    "units, activation, match",
    [
        (1, "sigmoid", r"at least 2 classes.*Received: output shape \(None, 1\)"),
        (1, None, r"at least 2 classes"),
        (3, "relu", r"softmax or in logits.*applies 'relu'"),
        (3, "sigmoid", r"applies 'sigmoid'"),
    ],
)
def test_outputs_that_are_not_a_softmax_classifier_are_refused(
    units, activation, match
):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv1")(inputs)
    x = keras.layers.Conv2D(4, 3, name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(units, activation=activation)(x))
    with pytest.raises(ValueError, match=match):
        tfee.attach_exits(model, ["conv1"])


def test_a_logits_classifier_is_accepted():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv1")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(3)(x)
    model = keras.Model(inputs, keras.layers.Activation("linear")(x))
    net = tfee.attach_exits(model, ["conv1"], head="linear")
    assert len(net.outputs) == 2


def test_load_model_reads_clustered_networks_and_names_bad_paths(tmp_path, tiny_cnn):
    net = tfee.attach_exits(tiny_cnn, tfee.FlopsFractions([0.5]))
    clustered = tfee.compress.cluster_weights(net, 4)
    clustered.save(tmp_path / "clustered.keras")
    loaded = tfee.load_model(tmp_path / "clustered.keras")
    assert loaded.output_names == clustered.output_names
    with pytest.raises(FileNotFoundError, match=r"Received: path='.*missing.keras'"):
        tfee.load_model(tmp_path / "missing.keras")
    (tmp_path / "net.txt").write_text("x")
    with pytest.raises(ValueError, match=r"`path` must be one of"):
        tfee.load_model(tmp_path / "net.txt")


def test_an_exported_network_serves_without_tfee(tmp_path, tiny_cnn, images):
    net = tfee.attach_exits(tiny_cnn, tfee.FlopsFractions([0.5]))
    net.export(str(tmp_path / "served"))
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import tensorflow as tf
        served = tf.saved_model.load({str(tmp_path / "served")!r})
        outputs = served.serve(tf.constant(np.load({str(tmp_path / "x.npy")!r})))
        assert "tfee" not in sys.modules
        np.save({str(tmp_path / "y.npy")!r}, outputs[-1].numpy())
        """)
    np.save(tmp_path / "x.npy", images[:2])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=300)
    np.testing.assert_allclose(
        np.load(tmp_path / "y.npy"), net(images[:2])[-1], rtol=1e-5, atol=1e-5
    )


def test_load_model_names_a_truncated_or_renamed_file(tmp_path, tiny_cnn):
    # Issue 31: h5py's "file signature not found" and zip errors instead.
    tiny_cnn.save(tmp_path / "net.keras")
    data = (tmp_path / "net.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut.keras is not a Keras .keras file"):
        tfee.load_model(tmp_path / "cut.keras")
    (tmp_path / "fake.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match=r"fake.h5 is not an HDF5"):
        tfee.load_model(tmp_path / "fake.h5")
