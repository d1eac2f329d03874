"""ZTW's cascading heads (`attach_exits(cascading=True)`) through every runtime.

Head k also reads exit k-1's logits (heads 2 and 3 here: a cascading head
reading a cascading head), so the stage chain hands stage k+1 two
tensors (features_k and exit k's logits). Every runtime must hand both on:
the Keras stages and `DynamicPredictor` (batch N and the batch-1 graph),
LiteRT float32 and int8 (`Cascade` and the plain client of docs/client.md), and the
TFLite Micro stage models (`MicroCascade`; the generated firmware is run on
real TFLM in tests/export/test_firmware.py). Each must compute the exits the
network computes and decide as `policy.exit_indices` over its own logits.
"""

import json
import shutil

import numpy as np
import pytest

import tfee
import tfee.compress
import tfee.export
from benchmarks.tflite_latency import readme_client
from tests import tiny_files
from tfee import keras
from tfee import layers
from tfee._keras import tf

CLASSES = 3


@pytest.fixture(scope="module")
def network(cascading_network):
    """tests/tiny_files.py's: heads 2 and 3 cascading."""
    return cascading_network


@pytest.fixture(scope="module")
def images():
    return tiny_files.tiny_data()[0]


@pytest.fixture(scope="module")
def outputs(network, images):
    return [np.asarray(o) for o in network.predict(images, verbose=0)]


def _policy(logits):
    """Thresholds at the medians of every exit but the last: all answer some."""
    scores = [tfee.rules.scores(x, "max_softmax") for x in logits[:-1]]
    return tfee.ThresholdPolicy([float(np.median(s)) for s in scores])


def _expected(policy, logits):
    exits = policy.exit_indices(np.stack(logits))
    return exits, np.stack(logits)[exits, np.arange(len(exits))].argmax(-1)


def _check(result, policy, logits):
    exits, predictions = _expected(policy, logits)
    assert len(set(exits)) == len(logits), "every exit should answer some images"
    np.testing.assert_array_equal(result.exit_indices, exits)
    np.testing.assert_array_equal(result.predictions, predictions)


@pytest.fixture(scope="module")
def files(network, images, cascading_micro_export):
    """Its float32 and int8 files, converted once on disk for every worker
    (tests/tiny_files.py: `shared`), and its TFLite Micro export."""

    def convert(directory):
        return tiny_files.litert_files(network, directory, images)

    return {
        **tiny_files.shared("cascading_files", convert),
        "micro": cascading_micro_export,
    }


# -- the head ------------------------------------------------------------------


@pytest.mark.parametrize("head_class", [layers.LinearHead, layers.ConvHead])
def test_every_head_type_prunes_and_clusters_its_cascade_kernel(head_class):
    head = head_class(CLASSES)
    head([tf.ones((2, 4, 4, 5)), tf.ones((2, CLASSES))])
    names = [w.name for w in head.get_prunable_weights()]
    assert any("cascade_kernel" in n for n in names), names
    assert "cascade_kernel" in [n for n, _ in head.get_clusterable_weights()]


def test_a_cascading_head_adds_the_previous_exits_softmax_through_its_own_kernel():
    head = layers.SDNHead(CLASSES, name="head")
    rng = np.random.default_rng(0)
    feature_map = rng.normal(size=(2, 4, 4, 5)).astype(np.float32)
    previous = rng.normal(size=(2, CLASSES)).astype(np.float32)
    logits = head([feature_map, previous]).numpy()
    assert head.cascading and head.cascade_kernel.shape == (CLASSES, CLASSES)
    own = head._features(tf.constant(feature_map), False) @ head.kernel + head.bias
    softmax = tf.nn.softmax(previous).numpy()
    np.testing.assert_allclose(
        logits, own.numpy() + softmax @ head.cascade_kernel.numpy(), atol=1e-5
    )
    # A head built for one input refuses two, and a wrong logits shape is named.
    plain = layers.SDNHead(CLASSES)
    plain(feature_map)
    with pytest.raises(ValueError, match="built for 1 input"):
        plain([feature_map, previous])
    # ... and a cascading head refuses to drop its second input silently.
    with pytest.raises(ValueError, match="built for 2 input.*called with 1"):
        head(feature_map)
    with pytest.raises(ValueError, match=r"previous exit's logits, \(batch, 3\)"):
        layers.SDNHead(CLASSES)([feature_map, previous[:, :2]])


def test_head_k_does_not_train_the_previous_exit():
    head = layers.LinearHead(CLASSES)
    feature_map = tf.ones((2, 4, 4, 5))
    previous = tf.Variable(tf.ones((2, CLASSES)))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(head([feature_map, previous]))
    assert tape.gradient(loss, previous) is None
    assert head.cascade_kernel in head.get_prunable_weights()


def test_the_network_marks_cascading_exits_and_counts_each_head_once(network):
    assert [e.cascading for e in tfee.exits(network)] == [False, True, True, False]
    sections = tfee.sections(network)
    for k in (1, 2, 3):
        assert sections[k - 1].head_layers == (f"exit_{k}_head", f"exit_{k}")
    report = tfee.cost.analyze(network)
    head = network.get_layer("exit_2_head")
    assert report.exits[1].head_macs == head.macs(head.input_shape[0])
    # Every layer in exactly one section: the deepest exit pays the backbone
    # and each head once.
    assert report.exits[-1].cumulative_macs == report.full_macs + sum(
        e.head_macs for e in report.exits
    )


def test_attach_exits_names_a_bad_cascading_argument():
    backbone = tfee.backbones.small_cnn(num_classes=CLASSES, widths=(4, 8))
    with pytest.raises(TypeError, match="`cascading` must be True or False"):
        tfee.attach_exits(backbone, ["block1_out"], cascading="yes")
    # One head has no previous exit to read.
    with pytest.raises(ValueError, match="at least two heads.*cascading=True"):
        tfee.attach_exits(backbone, ["block1_out"], cascading=True)


def test_a_saved_cascading_network_loads_with_its_connections(
    network, images, outputs, tmp_path
):
    path = str(tmp_path / "cascading.keras")
    network.save(path)
    loaded = keras.models.load_model(path)
    assert [e.cascading for e in tfee.exits(loaded)] == [False, True, True, False]
    for got, want in zip(loaded.predict(images, verbose=0), outputs):
        np.testing.assert_allclose(got, want, atol=1e-6)


# -- the runtimes ------------------------------------------------------------------


def test_the_stages_chain_to_the_networks_outputs(network, images, outputs):
    stages = tfee.stage_models(network)
    assert [len(s.inputs) for s in stages] == [1, 2, 2, 1]
    value, chained = images, []
    for k, stage in enumerate(stages):
        result = stage(value, training=False)
        chained.append(result["logits"].numpy())
        if k + 1 < len(stages):
            value = tfee.stages.next_stage_input(stages[k + 1], result)
    for got, want in zip(chained, outputs):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_dynamic_predictor_at_batch_n_and_one(network, images, outputs):
    policy = _policy(outputs)
    predictor = tfee.DynamicPredictor(network, policy)
    _check(predictor.predict(images), policy, outputs)
    _check(predictor.predict(images, batch_size=1), policy, outputs)


def test_litert_float32_computes_the_networks_exits(files, outputs, images):
    cascade = tfee.Cascade(files["float32"])
    logits = cascade.exit_logits(images)
    for got, want in zip(logits, outputs):
        np.testing.assert_allclose(got, want, atol=1e-4)
    exits = cascade.metadata["exits"]
    assert [e["previous_logits"] for e in exits] == [None, "logits_1", "logits_2", None]
    # A format-3 reader would feed one input: cascading files say format 4.
    assert cascade.metadata["format"] == tfee.runtime.litert.CASCADING_METADATA_FORMAT


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_litert_cascade_and_the_readme_client_decide_on_the_files_logits(
    files, images, dtype, tmp_path
):
    logits = tfee.Cascade(files[dtype]).exit_logits(images)
    policy = _policy(logits)
    cascade = tfee.Cascade(files[dtype], policy)
    _check(cascade.predict(images), policy, logits)
    _check(cascade.predict(images, batch_size=1), policy, logits)
    # The plain client (docs/client.md) reads the policy and the chain from the file alone
    # (a copy: the shared file stays as converted).
    path = tmp_path / "with_policy.tflite"
    shutil.copyfile(files[dtype], path)
    tfee.export.set_policy(str(path), policy)
    client = readme_client()(str(path))
    answers = np.array([client(image) for image in images])
    np.testing.assert_array_equal(answers[:, 1], cascade.predict(images).exit_indices)
    np.testing.assert_array_equal(answers[:, 0], cascade.predict(images).predictions)


def test_int8_hands_the_logits_on_with_the_scale_they_were_written_in(files):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=files["int8"])
    written = interpreter.get_signature_runner("stage_1").get_output_details()
    read = interpreter.get_signature_runner("stage_2").get_input_details()
    assert written["logits"]["quantization"] == read["logits_1"]["quantization"]
    assert written["features_1"]["quantization"] == read["features_1"]["quantization"]
    assert read["logits_1"]["dtype"] == np.int8


def test_int8_keeps_the_keras_answers(files, images, outputs):
    logits = tfee.Cascade(files["int8"]).exit_logits(images)
    for got, want in zip(logits, outputs):
        assert np.mean(got.argmax(-1) == want.argmax(-1)) >= 0.9


def test_tflite_micro_hands_both_tensors_on(files, images):
    export = files["micro"]
    with open(export.manifest_path) as f:
        manifest = json.load(f)
    assert manifest["format"] == tfee.runtime.micro.CASCADING_MANIFEST_FORMAT
    stages = manifest["stages"]
    assert [sorted(s["inputs"]) for s in stages] == [
        ["image"],
        ["features_1", "logits_1"],
        ["features_2", "logits_2"],
        ["features_3"],
    ]
    cascade = tfee.runtime.MicroCascade(
        export.manifest_path, tfee.ThresholdPolicy([None] * 3)
    )
    logits, _ = cascade.exit_outputs(images)
    policy = _policy(logits)
    _check(
        tfee.runtime.MicroCascade(export.manifest_path, policy).predict(images),
        policy,
        logits,
    )
    # The same int8 arithmetic as the LiteRT int8 chain, converted per stage.
    litert = tfee.Cascade(files["int8"]).exit_logits(images)
    for got, want in zip(logits, litert):
        assert np.mean(got.argmax(-1) == want.argmax(-1)) >= 0.9
    header = open(export.header_path).read()
    assert "inputs: 0 = features_1, 1 = logits_1" in header


def test_a_quantization_aware_cascading_network_exports_int8_that_chains(
    network, images, tmp_path
):
    labels = tiny_files.tiny_data()[1]
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)
    trained = tfee.compress.quantization_aware_training(
        network, data, epochs=1, preserve_clusters=False, verbose=0
    )
    path = str(tmp_path / "qat.tflite")
    tfee.export.tflite(trained, path, quantize="int8", representative=images)
    logits = tfee.Cascade(path).exit_logits(images)
    policy = _policy(logits)
    _check(tfee.Cascade(path, policy).predict(images), policy, logits)
