"""A quantization-aware network exports int8 exit and stage signatures with metadata."""

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

import tfee
import tfee.compress
import tfee.export
from tests.compress import _tiny
from tests.tiny_files import tiny_data
from tfee import keras
from tfee import tf

CLUSTERS = 4


@pytest.fixture(scope="module")
def qat_network(network):
    """The shared tiny network, clustered (4), then one QAT epoch."""
    images, labels = tiny_data()
    clustered = tfee.compress.strip(
        tfee.compress.cluster_weights(network, CLUSTERS, init="linear")
    )
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)
    with _tiny.eagerly():
        return tfee.compress.quantization_aware_training(
            clustered, data, optimizer=keras.optimizers.Adam(1e-3), verbose=0
        )


@pytest.fixture(scope="module")
def qat_file(qat_network, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("qat") / "net.tflite")
    report = tfee.export.tflite(
        qat_network,
        path,
        quantize="int8",
        representative=tiny_data()[0],
        policy=tfee.ThresholdPolicy([0.8]),
    )
    return report


def test_every_signature_is_int8_and_the_metadata_says_so(qat_file):
    assert qat_file.signatures == ("exit_1", "exit_2", "stage_1", "stage_2")
    interpreter = Interpreter(model_path=qat_file.path)
    for name in qat_file.signatures:
        runner = interpreter.get_signature_runner(name)
        details = list(runner.get_input_details().values()) + list(
            runner.get_output_details().values()
        )
        assert {d["dtype"] for d in details} == {np.int8}, name
    metadata = tfee.runtime.read_metadata(qat_file.path)
    assert metadata["quantize"] == "int8" and metadata["input"]["dtype"] == "int8"


def test_the_metadata_counts_the_macs_of_the_network_before_qat(
    qat_file, qat_network, network
):
    exported = tfee.runtime.read_metadata(qat_file.path)["exits"]
    assert [e["cumulative_macs"] for e in exported] == [
        e.cumulative_macs for e in tfee.exits(network)
    ]


def test_the_stage_chain_computes_exactly_what_the_exit_signatures_do(qat_file, images):
    # Each stage input reads features with the range its producer writes.
    chain = tfee.Cascade(qat_file.path).exit_logits(images)
    interpreter = Interpreter(model_path=qat_file.path)
    for k, logits in enumerate(chain, start=1):
        runner = interpreter.get_signature_runner(f"exit_{k}")
        image = tfee.runtime.quantize_input(images, runner.get_input_details()["image"])
        direct = tfee.runtime.dequantize_output(
            runner(image=image)["logits"], runner.get_output_details()["logits"]
        )
        np.testing.assert_array_equal(direct, logits)


def test_the_file_answers_as_the_qat_network_does(qat_file, qat_network, images):
    chain = tfee.Cascade(qat_file.path).exit_logits(images)
    simulated = qat_network.predict(images, verbose=0)
    for k, logits in enumerate(chain):
        agreement = np.mean(logits.argmax(1) == simulated[k].argmax(1))
        assert agreement >= 0.95, (k, agreement)


def test_cluster_counts_survive_per_output_channel(qat_file):
    assert qat_file.max_unique_values_per_channel <= CLUSTERS
    assert qat_file.max_unique_values > CLUSTERS  # channels differ in scale


def test_the_embedded_policy_runs_on_the_qat_file(qat_file, images):
    cascade = tfee.Cascade(qat_file.path)
    assert cascade.policy == tfee.ThresholdPolicy([0.8])
    assert len(cascade.predict(images, batch_size=1).predictions) == len(images)


def test_a_qat_network_refuses_a_float_export(qat_network, tmp_path):
    with pytest.raises(ValueError, match="exports as quantize='int8'"):
        tfee.export.tflite(qat_network, str(tmp_path / "net.tflite"))
    assert not (tmp_path / "net.tflite").exists()


def test_sparse_macs_of_a_qat_network_ask_for_the_network_before_qat(qat_network):
    with pytest.raises(TypeError, match="before tfee.compress.quantize_preserving"):
        tfee.cost.analyze(qat_network, sparse=True)


def test_plain_qat_of_an_unclustered_network_exports_a_chaining_int8_file(
    network, images, tmp_path
):
    tiny_images, labels = tiny_data()
    data = tf.data.Dataset.from_tensor_slices((tiny_images, labels)).batch(16)
    with _tiny.eagerly():
        qat = tfee.compress.quantization_aware_training(
            network, data, preserve_clusters=False, verbose=0
        )
    head = qat.get_layer("quant_exit_1_head").quantize_config
    assert not head.preserve_clusters
    path = str(tmp_path / "plain.tflite")
    tfee.export.tflite(qat, path, quantize="int8", representative=tiny_images)
    chain = tfee.Cascade(path).exit_logits(images)
    simulated = qat.predict(images, verbose=0)
    for k, logits in enumerate(chain):
        assert np.mean(logits.argmax(1) == simulated[k].argmax(1)) >= 0.95
