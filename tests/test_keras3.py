"""tfee.from_keras3: Keras 3 models and .keras files become tf_keras networks."""

import warnings

import keras as keras3
import numpy as np
import pytest

import tfee
import tfee.export
from tfee import keras

SHAPE = (32, 32, 3)  # The applications' smallest input.


def _randomise_batch_norm(model, seed=0):
    """Moving statistics away from their initial 0 and 1, so that copying
    them (or not) shows in the outputs."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        if isinstance(layer, keras3.layers.BatchNormalization):
            mean, variance = layer.moving_mean, layer.moving_variance
            mean.assign(rng.normal(0, 0.1, mean.shape).astype("float32"))
            variance.assign(rng.uniform(0.5, 1.5, variance.shape).astype("float32"))


def _same_outputs(model, converted, shape, tolerance=1e-5):
    images = np.random.default_rng(1).random((2,) + shape, dtype=np.float32)
    want = np.asarray(model(images, training=False))
    got = converted(images, training=False).numpy()
    np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize(
    "application",
    [
        lambda: keras3.applications.MobileNetV2(
            input_shape=SHAPE, alpha=0.35, weights=None, classes=5
        ),
        # The two big ones (20 s and 15 s) run with the long tests.
        pytest.param(
            lambda: keras3.applications.ResNet50V2(
                input_shape=SHAPE, weights=None, classes=5
            ),
            marks=pytest.mark.long,
        ),
        pytest.param(
            lambda: keras3.applications.EfficientNetB0(
                input_shape=SHAPE, weights=None, classes=5
            ),
            marks=pytest.mark.long,
        ),
    ],
    ids=["MobileNetV2_0.35", "ResNet50V2", "EfficientNetB0"],
)
def test_keras_applications_convert_with_equal_outputs(application, tmp_path):
    model = application()
    _randomise_batch_norm(model)
    path = str(tmp_path / "k3.keras")
    model.save(path)
    for source in (model, path):
        converted = tfee.from_keras3(source)
        assert isinstance(converted, keras.Model)
        assert [layer.name for layer in converted.layers] == [
            layer.name for layer in model.layers
        ]
        _same_outputs(model, converted, SHAPE)


def _nested_model():
    """Rescaling, an adapted Normalization, and a frozen nested base called
    with training=False, as in transfer learning."""
    inner = keras3.Input((8, 8, 3))
    x = keras3.layers.Conv2D(6, 3, padding="same", name="base_conv")(inner)
    x = keras3.layers.BatchNormalization(name="base_bn")(x)
    x = keras3.layers.ReLU(name="base_out")(x)
    base = keras3.Model(inner, x, name="base")
    base.trainable = False
    _randomise_batch_norm(base)
    normalise = keras3.layers.Normalization(name="normalise")
    normalise.adapt(np.random.default_rng(2).random((16, 8, 8, 3)) * 5)
    inputs = keras3.Input((8, 8, 3))
    x = keras3.layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    x = normalise(x)
    x = base(x, training=False)
    x = keras3.layers.Conv2D(8, 3, name="head_conv", activation="relu")(x)
    x = keras3.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras3.Model(inputs, keras3.layers.Dense(4, name="logits")(x))


def test_a_nested_frozen_base_with_preprocessing_converts(tmp_path):
    model = _nested_model()
    model.save(tmp_path / "nested.keras")
    for source in (model, str(tmp_path / "nested.keras")):
        converted = tfee.from_keras3(source)
        assert not converted.get_layer("base").trainable
        _same_outputs(model, converted, (8, 8, 3))


def test_a_sequential_model_converts(tmp_path):
    model = keras3.Sequential(
        [
            keras3.Input((8, 8, 1)),
            keras3.layers.Conv2D(4, 3, activation="relu"),
            keras3.layers.Flatten(),
            keras3.layers.Dense(3),
        ]
    )
    model.save(tmp_path / "sequential.keras")
    for source in (model, str(tmp_path / "sequential.keras")):
        _same_outputs(model, tfee.from_keras3(source), (8, 8, 1))


def test_a_file_is_read_from_the_file_alone(tmp_path, monkeypatch):
    # tfmot imports the Keras 3 package into every tfee process, but the
    # conversion reads config.json and model.weights.h5 itself.
    model = _nested_model()
    model.save(tmp_path / "nested.keras")

    def refuse(*args, **kwargs):
        raise AssertionError("from_keras3 called Keras 3 to read the file")

    monkeypatch.setattr(keras3.saving, "load_model", refuse)
    monkeypatch.setattr(keras3.models, "load_model", refuse)
    _same_outputs(model, tfee.from_keras3(tmp_path / "nested.keras"), (8, 8, 3))


def test_unknown_and_custom_layers_are_refused_by_name(tmp_path):
    inputs = keras3.Input((4,))
    lambda_model = keras3.Model(
        inputs, keras3.layers.Lambda(lambda t: t * 2, name="doubling")(inputs)
    )
    with pytest.raises(ValueError, match=r"layer 'doubling' \(Lambda\)"):
        tfee.from_keras3(lambda_model)

    @keras3.saving.register_keras_serializable(package="mine")
    class Twice(keras3.layers.Layer):
        def call(self, x):
            return 2 * x

    custom = keras3.Model(inputs, Twice(name="twice")(inputs))
    with pytest.raises(ValueError, match=r"layer 'twice' is a custom Keras 3 layer"):
        tfee.from_keras3(custom)
    lora = keras3.Model(inputs, keras3.layers.Dense(3, name="tuned")(inputs))
    lora.get_layer("tuned").enable_lora(2)
    with pytest.raises(ValueError, match=r"layer 'tuned' \(Dense\) sets `lora_rank`"):
        tfee.from_keras3(lora)


def test_other_inputs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file at"):
        tfee.from_keras3("missing.keras")
    keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)]).save(
        tmp_path / "tf_keras.keras"
    )
    with pytest.raises(ValueError, match="not a .keras file saved by Keras 3"):
        tfee.from_keras3(tmp_path / "tf_keras.keras")
    unbuilt = keras3.Sequential([keras3.layers.Dense(2)])
    with pytest.raises(ValueError, match="is not built yet"):
        tfee.from_keras3(unbuilt)
    inputs = {"a": keras3.Input((3,), name="a"), "b": keras3.Input((3,), name="b")}
    added = keras3.layers.Add()([inputs["a"], inputs["b"]])
    with pytest.raises(ValueError, match="dict inputs or outputs"):
        tfee.from_keras3(keras3.Model(inputs, added))
    with pytest.raises(TypeError, match="expects a Keras 3 model"):
        tfee.from_keras3(keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)]))


def test_a_keras3_file_goes_through_attach_fit_export_and_cascade(tmp_path):
    """load_model converts with a note; then the whole tfee path runs."""
    path = str(tmp_path / "k3.keras")
    _nested_model().save(path)
    with pytest.warns(UserWarning, match="saved by Keras 3; converted"):
        backbone = tfee.load_model(path)
    network = tfee.attach_exits(backbone, ["base_out"], head="linear")
    rng = np.random.default_rng(3)
    images = rng.random((16, 8, 8, 3), dtype=np.float32) * 255
    labels = rng.integers(0, 4, 16)
    network.compile("adam", loss=tfee.losses.joint(network))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*raw pixels.*")
        network.fit(images, [labels] * 2, epochs=1, verbose=0)
        exported = tfee.export.tflite(network, str(tmp_path / "net.tflite"))
    cascade = tfee.Cascade(exported.path, tfee.ThresholdPolicy([0.5]))
    result = cascade.predict(images)
    assert len(result.exit_indices) == 16


def test_the_docs_keras3_block_runs_as_written(tmp_path, monkeypatch):
    """A Keras 3 user's saved model: attach, fit, calibrate, export, Cascade."""
    from tests import test_readme

    block = test_readme.block_holding("keras3.applications.MobileNetV2(")
    block = block.replace("epochs=30", "epochs=1")
    monkeypatch.chdir(tmp_path)
    namespace = test_readme._namespace()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*saved by Keras 3.*")
        exec(compile(block, "Keras 3 block", "exec"), namespace)  # noqa: S102
    assert [info.attach_layer for info in tfee.exits(namespace["k3_net"])][:2] == [
        "block_2_add",
        "block_6_project_BN",
    ]
    assert namespace["k3_result"].predictions.shape == (24,)


def test_a_keras3_operation_in_the_graph_is_refused_by_name():
    # ops.reshape counts the batch axis, tf_keras' Reshape layer does not:
    # mapping one onto the other by class name would answer wrongly.
    inputs = keras3.Input((4, 4, 2))
    x = keras3.ops.reshape(inputs, (-1, 32))
    model = keras3.Model(inputs, keras3.layers.Dense(3)(x))
    with pytest.raises(ValueError, match=r"is a Keras 3 operation .*Reshape"):
        tfee.from_keras3(model)


def test_a_model_object_is_checked_to_compute_the_same(monkeypatch):
    # Were a layer to compute otherwise in tf_keras (here: weights left at
    # their fresh initial values), the conversion fails instead of answering.
    import tfee.keras3

    monkeypatch.setattr(tfee.keras3, "_assign", lambda *args: None)
    with pytest.raises(ValueError, match="does not compute what the Keras 3"):
        tfee.from_keras3(_nested_model())


def test_a_nested_model_as_output_or_called_twice_is_wired_as_saved(tmp_path):
    # Keras 3 counts a nested model's own node in the endpoints but not in
    # call arguments: shifting both wired outputs to the wrong call.
    a = keras3.Input((4,))
    inner = keras3.Model(a, keras3.layers.Dense(2)(a), name="inner")
    b = keras3.Input((4,))
    first = inner(b)
    second = inner(keras3.layers.Dense(4, name="pre")(b))
    model = keras3.Model(b, [first, keras3.layers.ReLU(name="relu")(second)])
    images = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    want = [np.asarray(o) for o in model(images, training=False)]
    tail = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(3)], name="tail")
    for source in (model, keras3.Model(b, inner(b)), keras3.Model(b, tail(b))):
        converted = tfee.from_keras3(source)
        got = converted(images, training=False)
        got = got if isinstance(got, list) else [got]
        expected = want if source is model else [np.asarray(source(images))]
        for ours, theirs in zip(got, expected):
            np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_an_activation_defined_otherwise_and_training_true_are_refused(tmp_path):
    inputs = keras3.Input((4,))
    hard = keras3.Model(
        inputs, keras3.layers.Dense(4, activation="hard_sigmoid", name="gate")(inputs)
    )
    hard.save(tmp_path / "hard.keras")
    for source in (hard, tmp_path / "hard.keras"):
        with pytest.raises(ValueError, match=r"layer 'gate' uses activation='hard_sig"):
            tfee.from_keras3(source)
    x = keras3.layers.Dropout(0.5, name="mc")(inputs, training=True)
    mc_dropout = keras3.Model(inputs, keras3.layers.Dense(2)(x))
    with pytest.raises(ValueError, match=r"layer 'mc' is called with training=True"):
        tfee.from_keras3(mc_dropout)


def test_leaky_relu_converts_and_a_subclassed_model_is_named(tmp_path):
    inputs = keras3.Input((6,))
    x = keras3.layers.Dense(5)(inputs)
    leaky = keras3.Model(inputs, keras3.layers.LeakyReLU(negative_slope=0.2)(x))
    leaky.save(tmp_path / "leaky.keras")
    for source in (leaky, tmp_path / "leaky.keras"):
        _same_outputs(leaky, tfee.from_keras3(source), (6,))

    class Mine(keras3.Model):  # defined outside keras: still Keras 3
        def __init__(self):
            super().__init__()
            self.dense = keras3.layers.Dense(2)

        def call(self, inputs):
            return self.dense(inputs)

    with pytest.raises(TypeError, match=r"subclassed Keras 3 model \(Mine\)"):
        tfee.from_keras3(Mine())
