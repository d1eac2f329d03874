"""The decision travels inside the .tflite: metadata, embedded policy, set_policy."""

import json
import os

import numpy as np
import pytest

import tfee
import tfee.export
from tfee import _flatbuffer


@pytest.fixture(scope="module")
def described_file(network, tiny_images, tmp_path_factory):
    """An int8 file with a policy, normalisation and labels."""
    path = str(tmp_path_factory.mktemp("described") / "net.tflite")
    tfee.export.tflite(
        network,
        path,
        quantize="int8",
        representative=tiny_images,
        policy=tfee.ThresholdPolicy([0.7]),
        normalisation=([0.5], 0.25),
        labels=["a", "b", "c"],
    )
    return path


def test_the_metadata_describes_exits_input_policy_and_labels(described_file):
    metadata = tfee.runtime.read_metadata(described_file)
    assert metadata["format"] == tfee.runtime.METADATA_FORMAT
    assert metadata["num_exits"] == 2 and metadata["num_classes"] == 3
    first, last = metadata["exits"]
    assert (first["stage_signature"], first["stage_input"]) == ("stage_1", "image")
    assert (first["features"], first["confidence"]) == ("features_1", "confidence")
    assert (last["stage_input"], last["features"], last["confidence"]) == (
        "features_1",
        None,
        None,
    )
    assert first["cumulative_macs"] < last["cumulative_macs"]
    assert tfee.policy.Policy.from_dict(metadata["policy"]) == tfee.ThresholdPolicy(
        [0.7]
    )
    spec = metadata["input"]
    assert spec["shape"] == [8, 8, 1] and spec["dtype"] == "int8"
    assert spec["scale"] > 0 and -128 <= spec["zero_point"] <= 127
    assert (spec["mean"], spec["std"]) == ([0.5], [0.25])
    assert metadata["labels"] == ["a", "b", "c"]


def test_the_input_quantization_is_the_files_own(described_file):
    from ai_edge_litert.interpreter import Interpreter

    details = (
        Interpreter(model_path=described_file)
        .get_signature_runner("stage_1")
        .get_input_details()["image"]
    )
    spec = tfee.runtime.read_metadata(described_file)["input"]
    assert (spec["scale"], spec["zero_point"]) == pytest.approx(details["quantization"])


def test_a_float_file_without_extras_says_so(float_file):
    metadata = tfee.runtime.read_metadata(float_file.path)
    assert metadata["policy"] is None and metadata["labels"] is None
    assert metadata["input"]["dtype"] == "float32"
    assert metadata["input"]["scale"] is None and metadata["input"]["mean"] is None


def test_cascade_runs_the_embedded_policy(described_file, images):
    embedded = tfee.Cascade(described_file)
    assert embedded.policy == tfee.ThresholdPolicy([0.7])
    given = tfee.Cascade(described_file, tfee.ThresholdPolicy([0.7]))
    np.testing.assert_array_equal(
        embedded.predict(images).exit_indices, given.predict(images).exit_indices
    )


def test_set_policy_replaces_only_the_policy(float_file, images, tmp_path):
    path = str(tmp_path / "net.tflite")
    with open(float_file.path, "rb") as f:
        original = f.read()
    with open(path, "wb") as f:
        f.write(original)
    before = tfee.runtime.read_metadata(path)
    os.chmod(path, 0o640)
    tfee.export.set_policy(path, tfee.PatiencePolicy(2, 2))
    after = tfee.runtime.read_metadata(path)
    assert after.pop("policy") == tfee.PatiencePolicy(2, 2).to_dict()
    before.pop("policy")
    assert after == before
    assert tfee.Cascade(path).policy == tfee.PatiencePolicy(2, 2)
    # Same weights and signatures: every exit computes what it did.
    for old, new in zip(
        tfee.Cascade(float_file.path).exit_logits(images),
        tfee.Cascade(path).exit_logits(images),
    ):
        np.testing.assert_array_equal(old, new)
    tfee.export.set_policy(path, None)
    assert tfee.Cascade(path).policy is None
    assert os.listdir(tmp_path) == ["net.tflite"]  # no temporary left behind


def test_set_policy_refuses_a_policy_for_another_network_and_keeps_the_file(
    float_file, tmp_path
):
    path = str(tmp_path / "net.tflite")
    with open(float_file.path, "rb") as f:
        original = f.read()
    with open(path, "wb") as f:
        f.write(original)
    with pytest.raises(ValueError, match="policy is for 3 exits but the network has 2"):
        tfee.export.set_policy(path, tfee.ThresholdPolicy([0.5, 0.5]))
    with open(path, "rb") as f:
        assert f.read() == original


def test_set_policy_refuses_a_file_tfee_did_not_write(float_file, tmp_path):
    path = str(tmp_path / "other.tflite")
    with open(float_file.path, "rb") as f:
        model = _flatbuffer.read(f.read())
    model.metadata = [m for m in model.metadata if m.name.decode() != "tfee"]
    from tensorflow.lite.tools import flatbuffer_utils

    with open(path, "wb") as f:
        f.write(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    with pytest.raises(ValueError, match="has no tfee metadata"):
        tfee.export.set_policy(path, tfee.ThresholdPolicy([0.5]))
    with pytest.raises(ValueError, match="has no tfee metadata"):
        tfee.Cascade(path)


def test_a_format_2_file_is_read_as_format_3(float_file, tmp_path):
    metadata = tfee.runtime.read_metadata(float_file.path)
    old = {
        "format": "tfee.export.tflite/2",
        "num_exits": 2,
        "exit_names": ["exit_1", "exit_2"],
        "learned_confidence": [True, False],
        "quantize": "float32",
        "signatures": metadata["signatures"],
        "cumulative_macs": [e["cumulative_macs"] for e in metadata["exits"]],
        "full_macs": metadata["full_macs"],
    }
    path = str(tmp_path / "old.tflite")
    with open(float_file.path, "rb") as f:
        data = _flatbuffer.with_metadata(f.read(), old)
    with open(path, "wb") as f:
        f.write(data)
    assert tfee.runtime.read_metadata(path)["exits"] == metadata["exits"]


def test_an_unknown_metadata_format_is_refused(float_file, tmp_path):
    path = str(tmp_path / "future.tflite")
    with open(float_file.path, "rb") as f:
        data = _flatbuffer.with_metadata(f.read(), {"format": "tfee.export.tflite/9"})
    with open(path, "wb") as f:
        f.write(data)
    with pytest.raises(ValueError, match="tfee.export.tflite/9"):
        tfee.runtime.read_metadata(path)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"policy": tfee.ThresholdPolicy([0.5, 0.5])}, "policy is for 3 exits"),
        ({"policy": "0.9"}, "must be a tfee policy"),
        ({"normalisation": (0.5, 0.0)}, "`normalisation` must be None or"),
        ({"normalisation": ([0.1, 0.2], 1.0)}, "1 per-channel numbers"),
        ({"normalisation": (float("nan"), 1.0)}, "all finite"),
        ({"labels": ["a", "b"]}, "name each of the network's 3 classes"),
        ({"labels": "abc"}, "list of 3 class names"),
    ],
)
def test_bad_extras_are_refused_before_anything_is_written(
    network, tmp_path, kwargs, message
):
    path = tmp_path / "net.tflite"
    with pytest.raises((TypeError, ValueError), match=message):
        tfee.export.tflite(network, str(path), **kwargs)
    assert not path.exists()


def test_an_output_path_that_is_a_directory_is_refused(network, tmp_path):
    with pytest.raises(ValueError, match="`path` is a directory"):
        tfee.export.tflite(network, str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_the_metadata_is_plain_json_in_the_standard_metadata_list(float_file):
    from ai_edge_litert import schema_py_generated as schema

    with open(float_file.path, "rb") as f:
        model = schema.Model.GetRootAs(f.read(), 0)
    names = [model.Metadata(i).Name() for i in range(model.MetadataLength())]
    assert b"tfee" in names
    entry = model.Metadata(names.index(b"tfee"))
    document = json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
    assert document == tfee.runtime.read_metadata(float_file.path)


def test_representative_images_with_nan_are_refused(network, tiny_images, tmp_path):
    bad = tiny_images.copy()
    bad[3, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="1 NaN or infinite values"):
        tfee.export.tflite(
            network, str(tmp_path / "n.tflite"), quantize="int8", representative=bad
        )
    assert os.listdir(tmp_path) == []
