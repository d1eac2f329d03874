"""Input normalisation stored in the network: every runtime feeds raw images."""

import json

import numpy as np
import pytest

import tfee
import tfee.export
from tests.tiny_files import tiny_data
from tests.tiny_files import tiny_network
from tfee import keras
from tfee import tf

MEAN, STD = 0.7, 0.4


def _raw_and_normalised():
    images, labels = tiny_data()
    return images, (images - MEAN) / STD, labels


@pytest.fixture(scope="module")
def trained():
    """A tiny network trained on normalised images, as a user would have it."""
    _, normalised, labels = _raw_and_normalised()
    net = tiny_network(with_confidence=False)
    net.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    net.fit(normalised, [labels, labels], epochs=30, verbose=0)
    return net


@pytest.fixture(scope="module")
def raw_network(trained):
    return tfee.include_normalisation(trained, (MEAN, STD))


def test_the_included_network_gives_on_raw_images_what_the_trained_one_gives_on_normalised(
    trained, raw_network
):
    raw, normalised, _ = _raw_and_normalised()
    expected = trained.predict(normalised, verbose=0)
    got = raw_network.predict(raw, verbose=0)
    for a, b in zip(expected, got):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert raw_network.layers[1].name == "input_normalisation"
    assert raw_network.output_names == trained.output_names
    assert tfee.cost.analyze(raw_network).full_macs == (
        tfee.cost.analyze(trained).full_macs
    )


def test_the_statistics_are_read_back_and_the_input_network_is_left_alone(
    trained, raw_network
):
    stored = tfee.included_normalisation(raw_network)
    assert stored["mean"] == pytest.approx([MEAN]) and stored["std"] == pytest.approx(
        [STD]
    )
    assert tfee.included_normalisation(trained) is None
    assert "input_normalisation" not in [layer.name for layer in trained.layers]


def test_the_statistics_survive_save_and_load(raw_network, tmp_path):
    path = str(tmp_path / "net.keras")
    raw_network.save(path)
    loaded = tfee.load_model(path)
    assert tfee.included_normalisation(loaded) == tfee.included_normalisation(
        raw_network
    )
    raw, _, _ = _raw_and_normalised()
    np.testing.assert_allclose(
        loaded.predict(raw, verbose=0)[0], raw_network.predict(raw, verbose=0)[0]
    )


def test_normalising_twice_is_refused(raw_network):
    with pytest.raises(ValueError, match="already normalises its input"):
        tfee.include_normalisation(raw_network, (MEAN, STD))


@pytest.mark.parametrize(
    "normalisation, expected",
    [
        (None, "Received: None"),
        ((0.5, 0.0), "std > 0"),
        (([0.1, 0.2], [1.0, 1.0]), "1 per-channel numbers"),
        ((0.5, float("nan")), "all finite"),
        ("0.5", "Received: normalisation='0.5'"),
    ],
)
def test_bad_statistics_name_the_argument(trained, normalisation, expected):
    with pytest.raises(ValueError, match="`normalisation`") as error:
        tfee.include_normalisation(trained, normalisation)
    assert expected in str(error.value)


def test_the_exported_file_takes_raw_images_and_says_so(raw_network, tmp_path):
    raw, _, labels = _raw_and_normalised()
    keras_top1 = [np.argmax(x, 1) for x in raw_network.predict(raw, verbose=0)]
    for quantize in ("float32", "int8"):
        path = str(tmp_path / f"{quantize}.tflite")
        tfee.export.tflite(raw_network, path, quantize=quantize, representative=raw)
        cascade = tfee.Cascade(path)
        file_input = cascade.metadata["input"]
        assert file_input["mean"] is None and file_input["std"] is None
        assert file_input["normalised_in_model"]["mean"] == pytest.approx([MEAN])
        for k, logits in enumerate(cascade.exit_logits(raw)):
            agreement = np.mean(np.argmax(logits, 1) == keras_top1[k])
            assert agreement >= (1.0 if quantize == "float32" else 0.9)
        # A trained net: raw images through the file are classified as well.
        assert np.mean(np.argmax(logits, 1) == labels) > 0.5


def test_a_client_side_normalisation_on_top_is_refused(raw_network, tmp_path):
    with pytest.raises(ValueError, match="normalises its input itself"):
        tfee.export.tflite(
            raw_network, str(tmp_path / "x.tflite"), normalisation=(MEAN, STD)
        )
    assert not (tmp_path / "x.tflite").exists()


@pytest.mark.parametrize("clustered", [False, True])
def test_quantization_aware_training_keeps_it(raw_network, tmp_path, clustered):
    raw, _, labels = _raw_and_normalised()
    data = tf.data.Dataset.from_tensor_slices((raw, labels)).batch(16)
    network = raw_network
    if clustered:  # the cluster-preserving scheme, which claims Normalization
        network = tfee.compress.strip(
            tfee.compress.cluster_weights(raw_network, 4, init="linear")
        )
    qat = tfee.compress.quantization_aware_training(
        network, data, epochs=1, preserve_clusters=clustered, verbose=0
    )
    assert tfee.included_normalisation(qat)["std"] == pytest.approx([STD])
    path = str(tmp_path / f"qat_{clustered}.tflite")
    tfee.export.tflite(qat, path, quantize="int8", representative=raw)
    file_input = tfee.runtime.read_metadata(path)["input"]
    assert file_input["normalised_in_model"]["std"] == pytest.approx([STD])


def test_the_firmware_is_told_to_feed_raw_images(raw_network, tmp_path):
    raw, _, _ = _raw_and_normalised()
    export = tfee.export.micro(raw_network, str(tmp_path / "fw"), raw)
    with open(export.manifest_path) as f:
        manifest = json.load(f)
    assert manifest["normalised_in_model"]["mean"] == pytest.approx([MEAN])
    with open(export.header_path) as f:
        assert "x the raw image: the network normalises it" in f.read()
    policy = tfee.ThresholdPolicy([0.5])
    micro = tfee.runtime.MicroCascade(export.manifest_path, policy).predict(raw)
    # TFLite Micro runs raw images through the network's own normalisation.
    keras_top1 = np.stack(
        [np.argmax(x, 1) for x in raw_network.predict(raw, verbose=0)], axis=1
    )
    expected = keras_top1[np.arange(len(raw)), micro.exit_indices]
    assert np.mean(micro.predictions == expected) >= 0.9
