import numpy as np
import pytest

import tfee.policy
from tests.policy.conftest import make_outputs
from tfee.policy import PatiencePolicy
from tfee.policy import Policy
from tfee.policy import ThresholdPolicy
from tfee.policy import compatibility

CONFIDENT = [5.0, 0.0, 0.0]
UNSURE = [0.1, 0.0, 0.0]
# One threshold policy per rule, for four exits.
THRESHOLD_POLICIES = [
    ThresholdPolicy([0.6, 0.7, 0.5]),
    ThresholdPolicy([0.2, None, 0.3], rule="entropy"),
    ThresholdPolicy([0.3, 0.4, 0.1], rule="margin"),
    ThresholdPolicy([0.5, 0.6, 0.7], rule="learned"),
]


def stream(policy, logits, confidences=None, compact=True):
    """Exit index per sample through the streaming interface."""
    logits = np.asarray(logits)
    samples = logits.shape[1]
    state = policy.initial_state(samples)
    remaining = np.arange(samples)
    exits = np.full(samples, -1)
    for k in range(policy.num_exits):
        rows = remaining if compact else np.arange(samples)
        confidence = None if confidences is None else confidences[k][rows]
        leave, state = policy.update(state, k, logits[k][rows], confidence)
        assert exits[rows[leave]].tolist() == [-1] * int(leave.sum())
        exits[rows[leave]] = k
        remaining = np.flatnonzero(exits == -1)
    return exits


def test_threshold_policy_leaves_at_the_first_exit_reaching_its_threshold():
    logits = np.array(
        [[CONFIDENT, UNSURE, UNSURE], [CONFIDENT, CONFIDENT, UNSURE], [UNSURE] * 3]
    )
    policy = ThresholdPolicy([0.9, 0.9])
    assert policy.num_exits == 3
    assert policy.exit_indices(logits).tolist() == [0, 1, 2]
    assert stream(policy, logits).tolist() == [0, 1, 2]


def test_none_threshold_never_lets_a_sample_leave_there():
    logits = np.array([[CONFIDENT], [CONFIDENT], [CONFIDENT]])
    assert ThresholdPolicy([None, 0.5]).exit_indices(logits).tolist() == [1]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("rule", ["max_softmax", "entropy", "margin"])
def test_non_finite_logits_never_exit(bad, rule):
    logits = np.array([[[bad, 0.0, 0.0]], [[bad, 0.0, 0.0]], [CONFIDENT]])
    policy = ThresholdPolicy([0.0, 0.0], rule=rule)
    assert policy.exit_indices(logits).tolist() == [2]
    assert stream(policy, logits).tolist() == [2]


def test_non_finite_learned_confidence_never_exits():
    logits = np.array([[CONFIDENT, CONFIDENT], [CONFIDENT, CONFIDENT]])
    confidences = np.array([[np.nan, 0.9], [np.nan, np.nan]])
    policy = ThresholdPolicy([0.0], rule="learned")
    assert policy.exit_indices(logits, confidences).tolist() == [1, 0]
    assert stream(policy, logits, confidences).tolist() == [1, 0]


def test_learned_rule_without_confidences_raises():
    with pytest.raises(ValueError, match="learned"):
        ThresholdPolicy([0.5], rule="learned").exit_indices(np.zeros((2, 3, 4)))


@pytest.mark.parametrize("value", [-0.1, 1.5, np.nan])
def test_thresholds_outside_the_rule_range_raise(value):
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\].*thresholds\[1\]"):
        ThresholdPolicy([0.5, value])


def test_non_numeric_thresholds_and_unknown_rules_raise():
    with pytest.raises(TypeError, match="thresholds"):
        ThresholdPolicy([True])
    with pytest.raises(ValueError, match="unknown `rule`.*Received: rule='top1'"):
        ThresholdPolicy([0.5], rule="top1")


@pytest.mark.parametrize("compact", [True, False])
@pytest.mark.parametrize(
    "policy",
    THRESHOLD_POLICIES + [PatiencePolicy(2, 4), PatiencePolicy(3, 4)],
    ids=repr,
)
def test_streaming_update_matches_the_vectorised_policy(policy, compact):
    outputs = make_outputs(confidences=True)
    expected = policy.exit_indices(outputs.logits, outputs.confidences)
    got = stream(policy, outputs.logits, outputs.confidences, compact=compact)
    np.testing.assert_array_equal(got, expected)
    assert len(np.unique(expected)) > 1


@pytest.mark.parametrize(
    "policy",
    THRESHOLD_POLICIES,
    ids=repr,
)
def test_one_sample_leaves_where_the_vectorised_policy_says(policy):
    outputs = make_outputs(confidences=True)
    logits = np.array(outputs.logits, np.float32)
    logits[0, :3, 0] = [np.nan, -np.inf, np.inf]  # these never leave at exit 1
    expected = policy.exit_indices(logits, outputs.confidences)
    got = [
        next(
            k
            for k in range(policy.num_exits)
            if policy.leaves(k, logits[k][i], outputs.confidences[k][i])
        )
        for i in range(logits.shape[1])
    ]
    np.testing.assert_array_equal(got, expected)
    assert np.all(expected[:3] > 0)
    assert len(np.unique(expected)) > 1


def test_one_sample_decisions_reject_negative_exits_and_always_leave_at_the_last():
    policy = ThresholdPolicy([1.0, 1.0])
    assert policy.leaves(2, np.array(UNSURE)) is True
    assert policy.leaves(0, np.array(UNSURE)) is False
    with pytest.raises(ValueError, match="exit_index=-1"):
        policy.leaves(-1, np.array(CONFIDENT))


def test_every_remaining_sample_leaves_at_the_deepest_exit():
    policy = ThresholdPolicy([1.0])
    state = policy.initial_state(3)
    leave, state = policy.update(state, 0, np.zeros((3, 4)))
    assert not leave.any()
    leave, _ = policy.update(state, 1, np.full((3, 4), np.nan))
    assert leave.all()


def test_update_rejects_exits_out_of_order_and_batches_that_do_not_fit():
    policy = ThresholdPolicy([0.5, 0.5])
    state = policy.initial_state(4)
    with pytest.raises(ValueError, match="expects exit_index=0"):
        policy.update(state, 1, np.zeros((4, 3)))
    with pytest.raises(
        ValueError, match=r"exit_index.*\[0, 2\].*Received: exit_index=3"
    ):
        policy.update(state, 3, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="logits hold 2 samples"):
        policy.update(state, 0, np.zeros((2, 3)))
    with pytest.raises(TypeError, match="initial_state"):
        policy.update(None, 0, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="batch_size"):
        policy.initial_state(0)


def test_patience_policy_leaves_once_n_consecutive_exits_agree():
    a, b = [3.0, 0.0], [0.0, 3.0]
    logits = np.array([[a, a, b], [a, b, a], [b, b, a], [b, a, a]])
    # Columns are samples: (a, a, b, b), (a, b, b, a), (b, a, a, a).
    assert PatiencePolicy(2, 4).exit_indices(logits).tolist() == [1, 2, 2]
    assert PatiencePolicy(3, 4).exit_indices(logits).tolist() == [3, 3, 3]
    logits[2, 2] = [np.nan, 0.0]  # A non-finite exit breaks the streak.
    assert PatiencePolicy(2, 4).exit_indices(logits).tolist() == [1, 2, 3]
    assert PatiencePolicy(1, 4).exit_indices(logits).tolist() == [0, 0, 0]


def test_patience_out_of_range_raises():
    with pytest.raises(
        ValueError, match=r"patience.*\[1, num_exits=3\].*Received: patience=4"
    ):
        PatiencePolicy(4, 3)


@pytest.mark.parametrize(
    "policy",
    [ThresholdPolicy([0.25, None, 0.5], rule="margin"), PatiencePolicy(2, 5)],
    ids=repr,
)
def test_policies_round_trip_through_json_and_files(policy, tmp_path):
    assert Policy.from_json(policy.to_json()) == policy
    path = tmp_path / "nested" / "policy.json"
    policy.save(path)
    loaded = tfee.load_policy(str(path))
    assert loaded == policy and type(loaded) is type(policy)
    assert loaded.num_exits == policy.num_exits


def test_loading_something_that_is_not_a_policy_raises(tmp_path):
    with pytest.raises(ValueError, match="not a tfee policy"):
        Policy.from_json('{"type": "threshold"}')
    with pytest.raises(ValueError, match="unknown policy type"):
        Policy.from_json('{"format": "tfee.policy", "type": "magic"}')
    with pytest.raises(ValueError, match="no such policy file"):
        tfee.load_policy(str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="not a PatiencePolicy"):
        PatiencePolicy.from_json(ThresholdPolicy([0.5]).to_json())


def test_a_policy_for_a_different_number_of_exits_raises():
    with pytest.raises(
        ValueError, match="policy is for 3 exits but the outputs have 4"
    ):
        ThresholdPolicy([0.5, 0.5]).exit_indices(np.zeros((4, 2, 3)))


def test_a_confidence_that_does_not_match_the_logits_rows_is_refused():
    policy = ThresholdPolicy([0.5], rule="learned")
    state = policy.initial_state(2)
    with pytest.raises(ValueError, match=r"shape \(2,\) or \(2, 1\).*\(4,\)"):
        policy.update(state, 0, np.zeros((2, 3)), np.array([0.6, 0.6, 0.7, 0.1]))


def test_leaves_refuses_exit_indices_out_of_range():
    policy = ThresholdPolicy([0.5, 0.5])
    assert policy.leaves(2, np.zeros(3)) is True
    for bad in (3, -1, 1.0, True):
        with pytest.raises(ValueError, match=r"int in \[0, 2\].*Received"):
            policy.leaves(bad, np.zeros(3))


def test_check_policy_refuses_a_learned_rule_without_confidences():
    policy = ThresholdPolicy([0.5, None], rule="learned")
    with pytest.raises(ValueError, match=r"exits \[1\] have no learned confidence"):
        compatibility.check_policy(policy, 3, [False, False, False], "api")
    assert compatibility.check_policy(policy, 3, [True, False, False], "api") is policy
    with pytest.raises(ValueError, match="policy is for 3 exits but the network has 2"):
        compatibility.check_policy(policy, 2, [True, True], "api")
