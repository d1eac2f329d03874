"""tfee.export.tflite: signatures, variants, stripping, checks before conversion."""

import gc
import gzip
import os

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

import tfee
import tfee.export
from tests.tiny_files import tiny_data
from tests.tiny_files import tiny_network
from tfee import _flatbuffer
from tfee import keras
from tfee import tf
from tfee import tfmot

# The package re-exports the function `tflite`, which hides the module.
from tfee.export import _calibration
from tfee.export import _signatures
from tfee.export import tflite_export as tflite_lib


def _never_convert(*args, **kwargs):
    raise AssertionError("conversion started although the input was invalid")


def test_file_has_exit_and_stage_signatures_with_named_inputs_and_outputs(float_file):
    signatures = Interpreter(model_path=float_file.path).get_signature_list()
    assert sorted(signatures) == ["exit_1", "exit_2", "stage_1", "stage_2"]
    assert signatures["exit_2"]["inputs"] == ["image"]
    # Logits (and the learned confidence) only: clients decide from the
    # logits with tfee.rules, never from a saturating int8 softmax.
    assert sorted(signatures["exit_1"]["outputs"]) == ["confidence", "logits"]
    assert sorted(signatures["exit_2"]["outputs"]) == ["logits"]
    assert signatures["stage_2"]["inputs"] == ["features_1"]
    assert "features_1" in signatures["stage_1"]["outputs"]
    assert "features_2" not in signatures["stage_2"]["outputs"]


def test_float32_signatures_match_keras_within_tolerance(float_file, network, images):
    result = tfee.export.verify(float_file.path, network, images)
    assert result.passed, str(result)
    assert [c.signature for c in result.checks] == [
        "exit_1",
        "exit_2",
        "stage_1",
        "stage_2",
    ]


def test_stage_outputs_chain_to_the_exit_signatures_outputs(float_file, images):
    interpreter = Interpreter(model_path=float_file.path)
    stage_1 = interpreter.get_signature_runner("stage_1")(image=images)
    stage_2 = interpreter.get_signature_runner("stage_2")(
        features_1=stage_1["features_1"]
    )
    exit_2 = interpreter.get_signature_runner("exit_2")(image=images)
    np.testing.assert_allclose(stage_2["logits"], exit_2["logits"], atol=1e-5)


def test_learned_confidence_is_exported_where_the_head_learns_one(
    float_file, network, images
):
    interpreter = Interpreter(model_path=float_file.path)
    exported = interpreter.get_signature_runner("exit_1")(image=images)["confidence"]
    learned = network.predict(images, verbose=0)[-1][:, 0]
    np.testing.assert_allclose(exported, learned, atol=1e-5)
    metadata = tfee.runtime.read_metadata(float_file.path)
    assert [e["confidence"] for e in metadata["exits"]] == ["confidence", None]


def test_int8_features_chain_with_the_same_scale_and_zero_point(int8_file):
    interpreter = Interpreter(model_path=int8_file.path)
    produced = interpreter.get_signature_runner("stage_1").get_output_details()
    consumed = interpreter.get_signature_runner("stage_2").get_input_details()
    assert produced["features_1"]["dtype"] == np.int8
    assert produced["features_1"]["quantization"] == (
        consumed["features_1"]["quantization"]
    )


def test_int8_signatures_agree_with_keras_on_top1(int8_file, network, images):
    # 48 tiny samples hold a near tie (logits 2.18 vs 2.16) that int8 may
    # flip, so this asks 95%; the default criterion is 99%.
    result = tfee.export.verify(int8_file.path, network, images, min_agreement=0.95)
    assert result.passed, str(result)
    assert all(c.top1_agreement >= 0.95 for c in result.checks)
    default = tfee.export.verify(int8_file.path, network, images)
    assert default.criterion == "top-1 agreement >= 99%"


@pytest.mark.parametrize("quantize", ["float16", "dynamic"])
def test_weight_quantized_variants_convert_and_verify(
    quantize, network, images, tmp_path
):
    report = tfee.export.tflite(
        network, str(tmp_path / "net.tflite"), quantize=quantize
    )
    assert report.quantize == quantize
    with open(report.path, "rb") as f:
        ops = _flatbuffer.op_names(f.read())
    # float16 weights are widened at load time; tiny kernels stay float in
    # dynamic-range mode (the converter skips kernels under 1024 values).
    assert ("DEQUANTIZE" in ops) == (quantize == "float16")
    assert tfee.export.verify(report.path, network, images).passed


def test_sizes_are_reported_raw_and_gzipped(float_file):
    with open(float_file.path, "rb") as f:
        data = f.read()
    assert float_file.bytes == len(data)
    assert float_file.gzipped_bytes == len(gzip.compress(data, compresslevel=9))


def test_only_the_selected_signatures_are_exported(exits_only_file):
    signatures = Interpreter(model_path=exits_only_file.path).get_signature_list()
    assert sorted(signatures) == ["exit_1", "exit_2"]
    assert exits_only_file.signatures == ("exit_1", "exit_2")


def test_pruned_and_clustered_network_is_stripped_and_keeps_zeros_and_clusters(
    tmp_path, images
):
    network = tiny_network(seed=1, with_confidence=False)
    # tfmot's pruning mask is applied at the first training step, so set
    # the zeros and the cluster values through the wrappers' weights.
    clustered = tfmot.clustering.keras.cluster_weights(
        network,
        number_of_clusters=4,
        cluster_centroids_init=tfmot.clustering.keras.CentroidInitialization.LINEAR,
    )
    assert any(type(layer).__name__ == "ClusterWeights" for layer in clustered.layers)
    report = tfee.export.tflite(
        clustered, str(tmp_path / "clustered.tflite"), signatures=["exit_2"]
    )
    assert report.max_unique_values <= 4

    network = tiny_network(seed=2, with_confidence=False)
    # Pruning wraps (and later zeroes) the network's own layers: export first.
    dense = tfee.export.tflite(
        network, str(tmp_path / "dense.tflite"), signatures=["exit_2"]
    )
    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        network,
        pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(
            0.75, begin_step=0, frequency=1
        ),
    )
    pruned.compile(
        optimizer=keras.optimizers.SGD(0.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    labels = np.zeros(len(images), np.int32)
    pruned.fit(
        images,
        [labels] * 2,
        epochs=2,
        batch_size=len(images),
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
        verbose=0,
    )
    sparse = tfee.export.tflite(
        pruned, str(tmp_path / "pruned.tflite"), signatures=["exit_2"]
    )
    assert sparse.zero_fraction > 0.5
    assert dense.zero_fraction < 0.1
    assert sparse.gzipped_bytes < dense.gzipped_bytes
    wrapped = [type(layer).__name__ for layer in pruned.layers]
    assert "PruneLowMagnitude" in wrapped, "the caller's model keeps its wrappers"


def test_representative_of_the_wrong_shape_raises_before_conversion(
    network, tmp_path, monkeypatch
):
    monkeypatch.setattr(tflite_lib, "convert", _never_convert)
    wrong = np.zeros((4, 16, 16, 1), np.float32)
    with pytest.raises(ValueError, match=r"representative.*\(8, 8, 1\)"):
        tfee.export.tflite(
            network, str(tmp_path / "x.tflite"), quantize="int8", representative=wrong
        )


def test_representative_of_integer_dtype_raises_before_conversion(
    network, tmp_path, monkeypatch
):
    monkeypatch.setattr(tflite_lib, "convert", _never_convert)
    wrong = np.zeros((4, 8, 8, 1), np.uint8)
    with pytest.raises(TypeError, match="floating point"):
        tfee.export.tflite(
            network, str(tmp_path / "x.tflite"), quantize="int8", representative=wrong
        )


def test_int8_without_representative_raises(network, tmp_path):
    with pytest.raises(ValueError, match="needs `representative`"):
        tfee.export.tflite(network, str(tmp_path / "x.tflite"), quantize="int8")


def test_unknown_signature_name_raises_before_conversion(
    network, tmp_path, monkeypatch
):
    monkeypatch.setattr(tflite_lib, "convert", _never_convert)
    with pytest.raises(ValueError, match=r"unknown signature name\(s\) \['exit_9'\]"):
        tfee.export.tflite(network, str(tmp_path / "x.tflite"), signatures=["exit_9"])


def test_unknown_quantize_raises(network, tmp_path):
    with pytest.raises(ValueError, match="quantize='int4'"):
        tfee.export.tflite(network, str(tmp_path / "x.tflite"), quantize="int4")


def test_per_channel_must_be_a_bool(network, tmp_path):
    with pytest.raises(TypeError, match="per_channel='no'"):
        tfee.export.tflite(network, str(tmp_path / "x.tflite"), per_channel="no")
    assert not (tmp_path / "x.tflite").exists()


def test_a_model_without_exits_is_rejected(tmp_path):
    backbone = tfee.backbones.small_cnn(3, (8, 8, 1), widths=(4,))
    with pytest.raises(ValueError, match="early-exit network"):
        tfee.export.tflite(backbone, str(tmp_path / "x.tflite"))


def test_int8_features_that_do_not_chain_raise(network, images, tmp_path, monkeypatch):
    chained = _calibration.stage_inputs

    def mismatched(structure, calibration):
        inputs = chained(structure, calibration)
        return inputs[:1] + [
            {name: x * 3.0 for name, x in stage.items()} for stage in inputs[1:]
        ]

    monkeypatch.setattr(_calibration, "stage_inputs", mismatched)
    path = tmp_path / "x.tflite"
    with pytest.raises(ValueError, match="features_1 does not chain in int8"):
        tfee.export.tflite(
            network,
            str(path),
            quantize="int8",
            representative=images[:8],
            signatures=["stage_1", "stage_2"],
        )
    assert not path.exists()


def test_a_failed_export_leaves_the_existing_good_file_intact(
    network, float_file, tmp_path, monkeypatch
):
    path = tmp_path / "net.tflite"
    with open(float_file.path, "rb") as f:
        good = f.read()
    path.write_bytes(good)

    def broken(*args):
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(tflite_lib, "convert", broken)
    with pytest.raises(RuntimeError, match="converter crashed"):
        tfee.export.tflite(network, str(path))
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["net.tflite"]


def test_last_bit_scale_differences_are_repairable_and_larger_ones_are_not():
    verdict = _flatbuffer.chain_verdict
    assert verdict((0.018021779, -128), (0.018021779, -128)) == "same"
    assert verdict((0.018021779134869576, -128), (0.018021777272224426, -128)) == (
        "rounding"
    )
    assert verdict((0.018, -128), (0.019, -128)) == "different"
    assert verdict((0.018, -128), (0.018, -127)) == "different"


def test_an_input_quantization_can_be_set_to_the_producers(int8_file):
    with open(int8_file.path, "rb") as f:
        data = f.read()
    patched = _flatbuffer.set_input_quantization(
        data, [("stage_2", "features_1", (0.5, -3))]
    )
    details = (
        Interpreter(model_content=patched)
        .get_signature_runner("stage_2")
        .get_input_details()["features_1"]
    )
    assert details["quantization"] == (0.5, -3)


def test_each_signature_cut_out_alone_computes_what_it_computed_in_the_file(
    int8_file,
):
    with open(int8_file.path, "rb") as f:
        data = f.read()
    whole = Interpreter(model_content=data)
    alone = _flatbuffer.signature_models(data)
    assert list(alone) == _flatbuffer.signature_keys(data)
    rng = np.random.default_rng(0)
    for key, model in alone.items():
        parsed = _flatbuffer.read(model)
        assert len(parsed.subgraphs) == 1 and len(parsed.signatureDefs) == 1
        assert _flatbuffer.signature_keys(model) == [key]
        assert len(model) < len(data)
        runners = [
            whole.get_signature_runner(key),
            Interpreter(model_content=model).get_signature_runner(key),
        ]
        feed = {
            name: rng.integers(-128, 128, details["shape"]).astype(details["dtype"])
            for name, details in runners[0].get_input_details().items()
        }
        expected, got = (runner(**feed) for runner in runners)
        assert expected.keys() == got.keys()
        for name in expected:
            np.testing.assert_array_equal(expected[name], got[name])


def test_a_network_that_calls_python_is_rejected_before_conversion(tmp_path):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="b1")(inputs)

    def python_square(t):
        squared = tf.numpy_function(lambda a: a * a, [t], tf.float32)
        squared.set_shape(t.shape)
        return squared

    x = keras.layers.Lambda(python_square, output_shape=(8, 8, 4), name="b2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    backbone = keras.Model(inputs, keras.layers.Dense(3)(x))
    network = tfee.attach_exits(backbone, ["b1"], head="linear")
    with pytest.raises(ValueError, match="calls Python code"):
        tfee.export.tflite(network, str(tmp_path / "x.tflite"))
    assert not (tmp_path / "x.tflite").exists()


class _ScaleFromTable(keras.layers.Layer):
    """Holds a resource (a hash table) that network.variables does not list."""

    def build(self, shape):
        keys = tf.constant([0, 1], tf.int64)
        values = tf.constant([1.0, 2.0])
        initializer = tf.lookup.KeyValueTensorInitializer(keys, values)
        self.table = tf.lookup.StaticHashTable(initializer, 0.0)

    def call(self, x):
        return x * self.table.lookup(tf.constant(1, tf.int64))


def test_signatures_save_a_network_holding_a_resource_beside_its_variables():
    image = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="c1")(_ScaleFromTable()(image))
    x = keras.layers.GlobalAveragePooling2D()(x)
    network = tfee.attach_exits(
        keras.Model(image, keras.layers.Dense(3)(x)), ["c1"], head="linear"
    )
    functions = _signatures.functions(tfee.read_structure(network), ["exit_1"])
    converter, directory = _signatures.converter(network, functions)
    try:
        assert os.path.exists(os.path.join(directory, "saved_model.pb"))
        assert converter is not None
    finally:
        _signatures.remove(directory)


def test_the_converter_made_without_a_first_load_writes_what_the_public_one_does(
    network,
):
    structure = tfee.read_structure(network)
    functions = _signatures.functions(structure, ["exit_1", "stage_1"])
    converter, directory = _signatures.converter(network, functions)
    try:
        public = tf.lite.TFLiteConverter.from_saved_model(
            directory, signature_keys=list(functions)
        )
        assert _signatures.run(converter) == _signatures.run(public)
    finally:
        _signatures.remove(directory)


def test_conversion_leaves_the_garbage_collector_as_it_found_it(network):
    structure = tfee.read_structure(network)
    functions = _signatures.functions(structure, ["exit_1"])

    def convert():
        converter, directory = _signatures.converter(network, functions)
        try:
            _signatures.run(converter)
        finally:
            _signatures.remove(directory)

    convert()
    assert gc.get_freeze_count() == 0
    gc.freeze()  # A caller's frozen objects stay frozen.
    try:
        frozen = gc.get_freeze_count()
        convert()
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def test_int8_representative_data_that_looks_like_raw_pixels_warns(network, tmp_path):
    # Issue 31, item 6: raw 0-255 floats for a [0, 1] network calibrated the
    # int8 ranges 255x too wide and the file fell to near chance, silently.
    raw = np.round(np.clip(tiny_data()[0], 0.0, 1.0) * 255.0)
    with pytest.warns(
        UserWarning, match=r"looks like raw pixels \(whole numbers up to"
    ):
        tfee.export.tflite(
            network, str(tmp_path / "raw.tflite"), quantize="int8", representative=raw
        )


def test_int8_export_and_verify_say_nothing_of_tf_lite_interpreter(tmp_path):
    # Issue 31: TensorFlow's calibrator warned that tf.lite.Interpreter is
    # deprecated, though tfee runs every file on LiteRT.
    import warnings

    network = tiny_network()
    images = tiny_data(16)[0]
    path = str(tmp_path / "int8.tflite")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tfee.export.tflite(network, path, quantize="int8", representative=images)
        tfee.export.verify(path, network, images, min_agreement=0.0)
    assert not [w for w in caught if "tf.lite.Interpreter" in str(w.message)]
