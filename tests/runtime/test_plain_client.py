"""A client with only LiteRT and numpy reproduces `Cascade` from the file alone.

The client is docs/client.md's own code block (between the plain-client markers),
executed here as a user would paste it.
"""

import ast

import numpy as np
import pytest

import tfee
import tfee.export
from benchmarks.tflite_latency import readme_client
from benchmarks.tflite_latency import readme_client_source
from tests.tiny_files import tiny_data
from tfee.policy.decision import fit_decision

MEAN, STD = 0.4, 0.3


def test_the_readme_client_imports_only_litert_and_numpy():
    tree = ast.parse(readme_client_source())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            modules.add(node.module.split(".")[0])
    assert modules == {"json", "numpy", "ai_edge_litert"}


@pytest.fixture(scope="module")
def client():
    return readme_client()


@pytest.fixture(scope="module")
def raw_images():
    # Raw pixels whose normalised form is the tiny network's input.
    return tiny_data()[0] * np.float32(STD) + np.float32(MEAN)


def _policies(outputs):
    """One policy per rule (about half the samples leave at exit 1) and patience."""
    policies = []
    for rule in tfee.rules.RULES:
        confidence = outputs.confidences[0] if rule == "learned" else None
        first = tfee.rules.scores(outputs.logits[0], rule, confidence)
        policies.append(tfee.ThresholdPolicy([float(np.median(first))], rule))
    # The learned decision, fitted on these outputs, about half leaving at exit 1.
    model = fit_decision(outputs)
    decision = tfee.DecisionPolicy(
        [float(np.median(model.scores(outputs.logits)[0]))],
        model.weights,
        model.biases,
    )
    # A learned ensemble: exit 2 answers with both exits' log-softmax.
    ensemble = tfee.policy.ExitEnsemble([[1.0, 0.0], [0.7, 0.6]], [[0.0] * 3] * 2)
    threshold = policies[0]
    return policies + [
        tfee.PatiencePolicy(1, 2),
        tfee.PatiencePolicy(2, 2),
        decision,
        tfee.ThresholdPolicy(threshold.thresholds, ensemble=ensemble),
    ]


@pytest.mark.parametrize("quantize", ["float32", "int8"])
def test_the_plain_client_leaves_where_cascade_does(
    quantize, network, tiny_images, raw_images, client, tmp_path
):
    path = str(tmp_path / "net.tflite")
    tfee.export.tflite(
        network,
        path,
        quantize=quantize,
        representative=tiny_images,
        normalisation=(MEAN, STD),
        labels=["dark", "mid", "bright"],
    )
    normalised = (raw_images - np.float32(MEAN)) / np.float32(STD)
    outputs = tfee.Cascade(path).collect_outputs(normalised, tiny_data()[1])
    for policy in _policies(outputs):
        tfee.export.set_policy(path, policy)
        expected = tfee.Cascade(path).predict(normalised, batch_size=1)
        plain = client(path)
        answers = np.array([plain(image) for image in raw_images])
        np.testing.assert_array_equal(answers[:, 0], expected.predictions, str(policy))
        np.testing.assert_array_equal(answers[:, 1], expected.exit_indices, str(policy))
        if policy.kind in ("threshold", "decision"):  # Both exits answer some.
            assert 0 < np.mean(answers[:, 1] == 0) < 1, policy
    # tfee's input rule (issue 29): a NaN or infinite image leaves at no early
    # exit and gets no class; an int8 file refuses it.
    bad = raw_images[:3].copy()
    bad[1, 2, 2, 0], bad[2, 0, 0, 0] = np.nan, -np.inf
    cascade = tfee.Cascade(path)
    if quantize == "int8":
        with pytest.raises(ValueError, match="NaN or infinity"):
            plain(bad[1])
        with pytest.raises(ValueError, match="no NaN or infinity"):
            cascade.predict((bad - np.float32(MEAN)) / np.float32(STD))
        return
    with pytest.warns(UserWarning, match="2 of 3 images hold NaN"):
        expected = cascade.predict((bad - np.float32(MEAN)) / np.float32(STD))
    answers = np.array([plain(image) for image in bad])
    np.testing.assert_array_equal(answers[:, 0], expected.predictions)
    np.testing.assert_array_equal(answers[:, 1], expected.exit_indices)
    assert list(answers[1:, 0]) == [-1, -1]


def test_the_plain_client_reads_files_written_before_cascading_heads(
    float_file, tiny_images, client, tmp_path
):
    """A format-3 file from before `previous_logits` existed lacks the field."""
    from tfee import _flatbuffer

    with open(float_file.path, "rb") as f:
        data = f.read()
    metadata = _flatbuffer.metadata(data)
    for description in metadata["exits"]:
        description.pop("previous_logits", None)
    outputs = tfee.Cascade(float_file.path).collect_outputs(tiny_images, tiny_data()[1])
    metadata["policy"] = _policies(outputs)[0].to_dict()
    path = tmp_path / "old.tflite"
    path.write_bytes(_flatbuffer.with_metadata(data, metadata))
    expected = tfee.Cascade(str(path)).predict(tiny_images, batch_size=1)
    plain = client(str(path))
    answers = np.array([plain(image) for image in tiny_images])
    np.testing.assert_array_equal(answers[:, 1], expected.exit_indices)
    np.testing.assert_array_equal(answers[:, 0], expected.predictions)
