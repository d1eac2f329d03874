"""tfee.Cascade: stage signatures on LiteRT under an exit policy."""

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

import tfee
from tests.tiny_files import tiny_data
from tfee.runtime._litert import SignatureCall


class RecordingPolicy(tfee.ThresholdPolicy):
    """A max-softmax threshold policy that records what the engine asks it."""

    def __init__(self, thresholds):
        super().__init__(thresholds)
        self.calls = []

    def update(self, state, exit_index, logits, confidence=None):
        self.calls.append((exit_index, len(logits), confidence))
        return super().update(state, exit_index, logits, confidence)


def _keras_predictions(network, images):
    return [np.argmax(x, -1) for x in network.predict(images, verbose=0)[:2]]


@pytest.mark.parametrize("threshold,exit_index", [(0.0, 0), (None, 1)])
def test_a_threshold_of_zero_or_none_sends_everyone_to_the_first_or_deepest_exit(
    float_file, network, images, threshold, exit_index
):
    result = tfee.Cascade(float_file.path, RecordingPolicy([threshold])).predict(images)
    assert np.all(result.exit_indices == exit_index)
    np.testing.assert_array_equal(
        result.predictions, _keras_predictions(network, images)[exit_index]
    )


def test_mixed_exits_give_each_sample_the_answer_of_its_own_exit(
    float_file, network, images
):
    first, deepest = _keras_predictions(network, images)
    logits = network.predict(images, verbose=0)[0]
    threshold = float(np.median(tfee.rules.scores(logits, "max_softmax")))
    policy = RecordingPolicy([threshold])
    result = tfee.Cascade(float_file.path, policy).predict(images)
    predictions, exits = result.predictions, result.exit_indices
    assert 0 < np.sum(exits == 0) < len(images)
    expected = np.where(exits == 0, first, deepest)
    np.testing.assert_array_equal(predictions, expected)
    # Only the samples that stayed reach stage 2.
    assert policy.calls[1][1] == np.sum(exits == 1)


def test_batch_one_gives_the_same_answers_as_one_batch(float_file, images):
    cascade = tfee.Cascade(float_file.path, RecordingPolicy([0.6]))
    together = cascade.predict(images)
    one_by_one = cascade.predict(images, batch_size=1)
    np.testing.assert_array_equal(together.predictions, one_by_one.predictions)
    np.testing.assert_array_equal(together.exit_indices, one_by_one.exit_indices)
    np.testing.assert_array_equal(together.macs, one_by_one.macs)


def test_learned_confidence_reaches_the_policy_only_where_a_head_learns_it(
    float_file, images
):
    policy = RecordingPolicy([None])
    tfee.Cascade(float_file.path, policy).predict(images[:4])
    (_, _, first), (_, _, deepest) = policy.calls
    assert first is not None and first.shape == (4,)
    assert deepest is None


def test_int8_cascade_agrees_with_keras_at_the_deepest_exit(int8_file, network, images):
    result = tfee.Cascade(int8_file.path, RecordingPolicy([None])).predict(images)
    predictions, exits = result.predictions, result.exit_indices
    agreement = np.mean(predictions == _keras_predictions(network, images)[1])
    assert agreement >= 0.95
    assert np.all(exits == 1)


def test_real_threshold_policy_drives_the_cascade(float_file, images):
    policy = tfee.ThresholdPolicy([0.0])
    exits = tfee.Cascade(float_file.path, policy).predict(images).exit_indices
    assert np.all(exits == 0)


def test_a_policy_with_another_exit_count_is_rejected(float_file):
    with pytest.raises(ValueError, match="policy is for 3 exits but the network has 2"):
        tfee.Cascade(float_file.path, RecordingPolicy([0.5, 0.5]))


def test_an_object_that_is_not_a_policy_is_rejected(float_file):
    with pytest.raises(TypeError, match="must be a tfee policy"):
        tfee.Cascade(float_file.path, object())


def test_a_file_without_stage_signatures_is_rejected(exits_only_file):
    with pytest.raises(ValueError, match=r"needs the signatures stage_1..stage_2"):
        tfee.Cascade(exits_only_file.path, RecordingPolicy([0.5]))


def test_images_of_the_wrong_shape_are_rejected(float_file):
    cascade = tfee.Cascade(float_file.path, RecordingPolicy([0.5]))
    with pytest.raises(ValueError, match=r"shape \(batch,\) \+ \(8, 8, 1\)"):
        cascade.predict(np.zeros((2, 4, 4, 1), np.float32))


def test_a_missing_file_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="no .tflite file"):
        tfee.Cascade(str(tmp_path / "missing.tflite"), RecordingPolicy([0.5]))


@pytest.mark.parametrize("rule", ["max_softmax", "entropy", "learned"])
def test_batch_one_exits_where_the_policy_says_on_the_files_outputs(
    float_file, images, rule
):
    # The stage logits (and learned confidence) the file itself computes.
    interpreter = Interpreter(model_path=float_file.path)
    stage_1 = interpreter.get_signature_runner("stage_1")(image=images)
    stage_2 = interpreter.get_signature_runner("stage_2")(
        features_1=stage_1["features_1"]
    )
    first = stage_1["confidence"] if rule == "learned" else None
    scores = tfee.rules.scores(stage_1["logits"], rule, first)
    policy = tfee.ThresholdPolicy([float(np.median(scores))], rule=rule)
    expected = policy.exit_indices(
        [stage_1["logits"], stage_2["logits"]],
        None if first is None else [first, np.full(len(images), np.nan)],
    )
    assert 0 < np.sum(expected == 0) < len(images)
    cascade = tfee.Cascade(float_file.path, policy)
    one_by_one = cascade.predict(images, batch_size=1).exit_indices
    together = cascade.predict(images).exit_indices
    np.testing.assert_array_equal(one_by_one, expected)
    np.testing.assert_array_equal(together, expected)


def test_signature_call_returns_what_the_signature_runner_returns(float_file, images):
    interpreter = Interpreter(model_path=float_file.path)
    call = SignatureCall(interpreter, "stage_1", "image", ["logits", "features_1"])
    runner = Interpreter(model_path=float_file.path).get_signature_runner("stage_1")
    # Changing batch sizes re-allocate the subgraph; equal ones reuse it.
    for batch in (images[:1], images[:5], images[5:10], images[:1]):
        logits, features = call(batch)
        expected = runner(image=batch)
        np.testing.assert_array_equal(logits, expected["logits"])
        np.testing.assert_array_equal(features, expected["features_1"])


def test_signature_call_rows_read_the_interpreters_own_buffers_between_batches(
    float_file, images
):
    # `row` returns views of the output tensors, bound at batch 1; a batch
    # call re-allocates (and may move) them, so the views are made again.
    interpreter = Interpreter(model_path=float_file.path)
    call = SignatureCall(interpreter, "stage_1", "image", ["logits", "features_1"])
    runner = Interpreter(model_path=float_file.path).get_signature_runner("stage_1")
    for batch in (images[:1], images[1:2], images[:5], images[2:3], images[3:4]):
        if len(batch) == 1:
            logits, features = (np.copy(v) for v in call.row(batch))
        else:
            logits, features = call(batch)
        expected = runner(image=batch)
        np.testing.assert_array_equal(logits, expected["logits"])
        np.testing.assert_array_equal(features, expected["features_1"])


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_the_batch_one_quantizers_compute_what_the_batch_ones_do(dtype):
    details = {"dtype": dtype, "quantization": (0.0371, 5 if dtype == np.int8 else 130)}
    info = np.iinfo(dtype)
    codes = np.arange(info.min, info.max + 1).astype(dtype)[None]
    np.testing.assert_array_equal(
        tfee.runtime.quantization.row_dequantizer(details)(codes),
        tfee.runtime.dequantize_output(codes, details)[0],
    )
    values = np.random.default_rng(0).normal(0, 4, (1, 8, 8, 3)).astype(np.float32)
    quantize = tfee.runtime.quantization.quantizer(details, values.shape)
    np.testing.assert_array_equal(
        quantize(values), tfee.runtime.quantize_input(values, details)
    )
    values[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="no NaN or infinity"):
        quantize(values)


def test_exit_logits_are_the_keras_logits_of_every_exit(float_file, network, images):
    cascade = tfee.Cascade(float_file.path)
    logits = cascade.exit_logits(images, batch_size=5)
    expected = network.predict(images, verbose=0)[:2]
    assert len(logits) == 2
    for got, want in zip(logits, expected):
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_int8_exit_logits_give_the_int8_cascade_answers(int8_file, images):
    logits = tfee.Cascade(int8_file.path).exit_logits(images)
    predictions = (
        tfee.Cascade(int8_file.path, RecordingPolicy([None]))
        .predict(images)
        .predictions
    )
    np.testing.assert_array_equal(np.argmax(logits[1], -1), predictions)


def test_collected_outputs_of_a_float_file_are_the_keras_outputs(
    float_file, network, images
):
    labels = tiny_data()[1]
    got = tfee.Cascade(float_file.path).collect_outputs(images, labels, 7)
    want = tfee.collect_outputs(network, (images, labels))
    np.testing.assert_allclose(got.logits, want.logits, atol=1e-4)
    np.testing.assert_allclose(got.confidences, want.confidences, atol=1e-5)
    np.testing.assert_array_equal(got.exit_macs, want.exit_macs)
    assert got.full_macs == want.full_macs
    np.testing.assert_array_equal(got.labels, labels)


def test_the_int8_files_outputs_predict_its_cascade_exactly(int8_file, images):
    labels = tiny_data()[1]
    outputs = tfee.Cascade(int8_file.path).collect_outputs(images, labels)
    assert tfee.calibrate(outputs, max_accuracy_drop=0.01).num_exits == 2
    scores = np.sort(tfee.rules.scores(outputs.logits[0], "max_softmax"))
    middle = len(scores) // 2
    policy = tfee.ThresholdPolicy([(scores[middle - 1] + scores[middle]) / 2])
    expected = policy.exit_indices(outputs.logits)
    exits = tfee.Cascade(int8_file.path, policy).predict(images).exit_indices
    np.testing.assert_array_equal(exits, expected)
    assert 0 < np.sum(exits == 0) < len(images)


def test_collect_outputs_needs_one_integer_label_per_image(float_file, images):
    cascade = tfee.Cascade(float_file.path)
    with pytest.raises(ValueError, match="48 integer labels.*Received: 3 labels"):
        cascade.collect_outputs(images, [0, 1, 2])
    with pytest.raises(ValueError, match="dtype float"):
        cascade.collect_outputs(images, np.zeros(len(images)))


def test_a_cascade_without_a_policy_cannot_predict(float_file, images):
    with pytest.raises(ValueError, match="no exit policy.*policy=None"):
        tfee.Cascade(float_file.path).predict(images)
    with pytest.raises(ValueError, match="exit_logits.*batch_size=0"):
        tfee.Cascade(float_file.path).exit_logits(images, batch_size=0)


def test_an_empty_batch_is_refused_with_a_clear_error(float_file):
    cascade = tfee.Cascade(float_file.path, tfee.ThresholdPolicy([0.5]))
    with pytest.raises(ValueError, match=r"at least one float image.*\(0, 8, 8, 1\)"):
        cascade.predict(np.zeros((0, 8, 8, 1), np.float32))


@pytest.mark.parametrize("which", ["float_file", "int8_file"])
def test_profile_measures_each_exit_and_the_full_model_and_calibrates_in_time(
    which, request, images
):
    cascade = tfee.Cascade(request.getfixturevalue(which).path)
    costs = cascade.profile(images, warmup=2)
    assert isinstance(costs, tfee.policy.ExitCosts) and costs.unit == "ms"
    assert costs.num_exits == 2 and 0 < costs.exit_costs[0] <= costs.exit_costs[1]
    assert costs.full_cost > 0  # The file has exit_2: the network without exits.
    assert "batch 1" in costs.source
    labels = tiny_data()[1]
    outputs = cascade.collect_outputs(images, labels)
    budget = float(np.mean(costs.exit_costs))
    policy = tfee.calibrate(outputs, cost_budget=budget, costs=costs)
    result = tfee.evaluate(outputs, policy=policy, costs=costs)
    assert result.mean_cost <= budget * (1 + 1e-9)


def test_profile_refuses_non_finite_images(float_file, images):
    broken = images.copy()
    broken[3, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"time finite images; rows \[3\]"):
        with pytest.warns(UserWarning, match="NaN or infinite"):
            tfee.Cascade(float_file.path).profile(broken)


def test_a_keras_or_truncated_file_is_named_not_a_struct_error(float_file, tmp_path):
    # Issue 31: Cascade on a .keras or a truncated file raised struct.error.
    keras_file = tmp_path / "net.keras"
    keras_file.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(ValueError, match=r"is not a .tflite file"):
        tfee.Cascade(str(keras_file))
    data = open(float_file.path, "rb").read()
    truncated = tmp_path / "cut.tflite"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match=r"truncated or corrupt .tflite"):
        tfee.Cascade(str(truncated))


def test_a_policy_from_another_network_is_refused_where_it_meets_this_one(
    float_file, network, images, tmp_path
):
    # Issue 31, item 8: a policy from another network with as many exits ran
    # and meant nothing. Calibrated policies carry a fingerprint.
    import shutil

    cascade = tfee.Cascade(float_file.path)
    outputs = cascade.collect_outputs(images, tiny_data()[1])
    policy = tfee.calibrate(outputs, max_accuracy_drop=0.05)
    assert policy.fingerprint["exit_macs"] == outputs.exit_macs.tolist()
    loaded = tfee.policy.Policy.from_json(policy.to_json())
    assert loaded == policy and loaded.fingerprint == policy.fingerprint
    tfee.Cascade(float_file.path, policy)  # its own network: fine
    foreign = tfee.policy.Policy.from_dict(
        {
            **policy.to_dict(),
            "fingerprint": {
                "classes": 3,
                "exit_macs": [3 * m for m in policy.fingerprint["exit_macs"]],
            },
        }
    )
    copy = tmp_path / "copy.tflite"
    shutil.copyfile(float_file.path, copy)
    for check in (
        lambda: tfee.Cascade(float_file.path, foreign),
        lambda: tfee.DynamicPredictor(network, foreign),
        lambda: tfee.evaluate(outputs, policy=foreign),
        lambda: tfee.export.set_policy(str(copy), foreign),
    ):
        with pytest.raises(ValueError, match="calibrated on another network"):
            check()
    # A policy written by hand has no fingerprint and is taken as it is.
    tfee.Cascade(float_file.path, tfee.ThresholdPolicy([0.5]))
