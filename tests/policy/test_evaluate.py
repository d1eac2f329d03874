import numpy as np
import pytest

import tfee
import tfee.policy
from tests.policy.conftest import make_outputs
from tfee import keras
from tfee import tf
from tfee.policy import ExitOutputs
from tfee.policy import ThresholdPolicy

RIGHT, WRONG = [4.0, 0.0], [0.0, 4.0]  # Label 0 everywhere below.
UNSURE_RIGHT = [0.2, 0.0]


@pytest.fixture
def crafted():
    # Samples (columns): 0 confident+right at exit 1; 1 unsure at exit 1,
    # right at 2; 2 wrong everywhere; 3 unsure-right at 1, wrong at 2, right at 3.
    logits = np.array(
        [
            [RIGHT, UNSURE_RIGHT, WRONG, UNSURE_RIGHT],
            [RIGHT, RIGHT, WRONG, WRONG],
            [RIGHT, RIGHT, WRONG, RIGHT],
        ]
    )
    return ExitOutputs(logits, None, [0, 0, 0, 0], [10, 20, 40], 35)


def test_evaluate_reports_accuracy_macs_histogram_and_agreement(crafted):
    result = tfee.evaluate(crafted, policy=ThresholdPolicy([0.9, 0.9]))
    # Exits taken: 0 (right), 1 (right), 0 (confidently wrong), 1 (wrong).
    assert result.exit_counts == (2, 2, 0)
    assert result.accuracy == pytest.approx(0.5)
    assert result.mean_macs == pytest.approx(15.0)
    assert result.macs_fraction == pytest.approx(15.0 / 35)
    assert result.exit_accuracy[:2] == pytest.approx((0.5, 0.5))
    assert np.isnan(result.exit_accuracy[2])
    assert result.agreement == pytest.approx(0.75)
    assert result.deepest_accuracy == pytest.approx(0.75)
    assert result.single_exit_accuracy == pytest.approx((0.75, 0.5, 0.75))


def test_oracle_leaves_at_the_earliest_right_exit_or_the_deepest(crafted):
    result = tfee.oracle(crafted)
    assert tfee.policy.oracle_exit_indices(crafted).tolist() == [0, 0, 2, 0]
    assert result.accuracy == pytest.approx(0.75)
    assert result.mean_macs == pytest.approx((10 + 10 + 40 + 10) / 4)
    evaluation = tfee.evaluate(crafted, policy=ThresholdPolicy([0.5, 0.5]))
    assert evaluation.oracle.to_dict() == result.to_dict()


def test_oracle_at_the_same_accuracy_is_a_lower_bound_for_every_policy():
    outputs = make_outputs()
    rng = np.random.default_rng(1)
    for _ in range(30):
        policy = ThresholdPolicy(list(rng.random(3)))
        result = tfee.evaluate(outputs, policy=policy)
        bound = tfee.policy.oracle_macs_at_accuracy(outputs, result.accuracy)
        assert bound <= result.mean_macs + 1e-9
    assert tfee.policy.oracle_macs_at_accuracy(outputs, 0.0) == outputs.exit_macs[0]
    assert tfee.policy.oracle_macs_at_accuracy(outputs, 1.0) is None


def test_oracle_at_its_own_accuracy_matches_the_oracle_when_hopeless_go_deepest(
    crafted,
):
    plain = tfee.oracle(crafted)
    same = tfee.policy.oracle_macs_at_accuracy(
        crafted, plain.accuracy, hopeless_at_deepest=True
    )
    assert same == pytest.approx(plain.mean_macs)
    strict = tfee.policy.oracle_macs_at_accuracy(crafted, plain.accuracy)
    assert strict == pytest.approx((10 + 10 + 10 + 10) / 4)
    with pytest.raises(ValueError, match=r"`accuracy` must lie in \[0, 1\]"):
        tfee.policy.oracle_macs_at_accuracy(crafted, 1.5)


def test_evaluating_a_policy_for_a_different_number_of_exits_raises(crafted):
    with pytest.raises(ValueError, match="policy is for 4 exits but the network has 3"):
        tfee.evaluate(crafted, policy=ThresholdPolicy([0.5] * 3))
    with pytest.raises(TypeError, match="`policy` must be a tfee policy"):
        tfee.evaluate(crafted, policy=[0.5, 0.5])
    with pytest.raises(ValueError, match="pass dataset=None"):
        tfee.evaluate(crafted, (np.zeros(1), np.zeros(1)), ThresholdPolicy([0.5] * 2))


def test_empty_outputs_raise():
    with pytest.raises(ValueError, match="dataset is empty"):
        ExitOutputs(np.zeros((3, 0, 2)), None, [], [1, 2, 3], 3)


def test_outputs_round_trip_through_npz(tmp_path):
    outputs = make_outputs(confidences=True)
    outputs.save(str(tmp_path / "outputs.npz"))
    loaded = ExitOutputs.load(str(tmp_path / "outputs.npz"))
    np.testing.assert_array_equal(loaded.logits, outputs.logits)
    np.testing.assert_array_equal(loaded.confidences, outputs.confidences)
    assert loaded.full_macs == outputs.full_macs


@pytest.fixture
def confident_net(tiny_cnn):
    return tfee.attach_exits(
        tiny_cnn, ["block1_out"], head="linear", with_confidence=True
    )


def test_collect_outputs_holds_every_exit_the_labels_and_costs(confident_net, images):
    labels = np.array([0, 1, 2, 0, 1, 2])
    dataset = tfee.tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
    outputs = tfee.collect_outputs(confident_net, dataset)
    direct = confident_net.predict(images, verbose=0)
    np.testing.assert_allclose(outputs.logits[0], direct[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs.confidences[0], direct[2][:, 0], rtol=1e-5)
    assert np.isnan(outputs.confidences[1]).all()
    np.testing.assert_array_equal(outputs.labels, labels)
    report = tfee.cost.analyze(confident_net)
    assert outputs.exit_macs.tolist() == [e.cumulative_macs for e in report.exits]
    assert outputs.full_macs == report.full_macs
    from_arrays = tfee.collect_outputs(confident_net, (images, labels))
    np.testing.assert_allclose(from_arrays.logits, outputs.logits, rtol=1e-5, atol=1e-6)


def test_evaluate_runs_a_network_once_over_a_dataset(confident_net, images):
    labels = np.array([0, 1, 2, 0, 1, 2])
    policy = ThresholdPolicy([0.5], rule="learned")
    from_net = tfee.evaluate(confident_net, (images, labels), policy)
    cached = tfee.evaluate(
        tfee.collect_outputs(confident_net, (images, labels)), policy=policy
    )
    assert from_net.to_dict() == cached.to_dict()


def test_collect_outputs_rejects_empty_datasets_and_plain_models(
    confident_net, tiny_cnn
):
    empty = tfee.tf.data.Dataset.from_tensor_slices(
        (np.zeros((0, 8, 8, 1), "float32"), np.zeros(0, "int32"))
    ).batch(2)
    with pytest.raises(ValueError, match="empty"):
        tfee.collect_outputs(confident_net, empty)
    with pytest.raises(ValueError, match="empty"):
        tfee.collect_outputs(confident_net, (np.zeros((0, 8, 8, 1)), np.zeros(0)))
    with pytest.raises(ValueError, match="not a tfee early-exit network"):
        tfee.collect_outputs(tiny_cnn, (np.zeros((1, 8, 8, 1)), np.zeros(1)))
    assert isinstance(confident_net, keras.Model)


@pytest.mark.parametrize(
    "labels,received",
    [
        (np.full(400, 5), r"in \[5, 5\]"),  # outside [0, 5)
        (np.full(400, -1), r"in \[-1, -1\]"),
        (np.full(400, 0.5), "dtype float64"),
    ],
)
def test_labels_outside_the_classes_are_refused_not_scored_zero(labels, received):
    # Issue 31, item 7: evaluate reported 0% as a result.
    outputs = make_outputs()
    with pytest.raises(
        ValueError, match=r"integer class indices in \[0, 5\).*" + received
    ):
        tfee.policy.ExitOutputs(
            outputs.logits, None, labels, outputs.exit_macs, outputs.full_macs
        )


def test_whole_float_labels_count_as_their_classes():
    outputs = make_outputs()
    again = tfee.policy.ExitOutputs(
        outputs.logits, None, outputs.labels.astype(float), outputs.exit_macs, 950
    )
    np.testing.assert_array_equal(again.labels, outputs.labels)


def test_an_unbatched_dataset_is_named_not_a_shape_error():
    # Issue 31: collect_outputs on an unbatched dataset failed deep in Keras.
    from tests.tiny_files import tiny_data
    from tests.tiny_files import tiny_network

    images, labels = tiny_data()
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    with pytest.raises(ValueError, match=r"yields single images; batch it first"):
        tfee.collect_outputs(tiny_network(), dataset)
