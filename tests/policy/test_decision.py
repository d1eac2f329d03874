"""The learned exit decision: its policy, its fit, its calibration."""

import dataclasses
import json

import numpy as np
import pytest

import tfee
from tests.policy.conftest import make_outputs
from tests.policy.test_policies import stream
from tfee import rules
from tfee.policy import DecisionPolicy
from tfee.policy import Policy
from tfee.policy import ThresholdPolicy
from tfee.policy import compatibility
from tfee.policy.decision import fit_decision

SIGNALS = len(rules.DECISION_SIGNALS)


def _policy(thresholds=(0.8, None, 0.6)):
    # Every signal counts, none alone decides.
    weights = [[2.0, 1.0, 1.5, 3.0, 1.0, 1.0], [1.0, -0.5, 1.0, 2.0, 2.0, 1.5]]
    weights.append([0.5, 1.0, 1.0, 2.5, 1.0, 2.0])
    return DecisionPolicy(list(thresholds), weights, [-4.0, -4.5, -4.0])


def independent_exits(samples=3000, num_exits=4, classes=10, seed=0):
    """Exits whose mistakes are independent: what the earlier exits said
    tells a decision something the current exit's softmax cannot."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, samples)
    logits = rng.normal(0, 1.5, (num_exits, samples, classes))
    logits[:, np.arange(samples), labels] += np.linspace(0.9, 3.6, num_exits)[:, None]
    return tfee.policy.ExitOutputs(
        logits=logits,
        confidences=None,
        labels=labels,
        exit_macs=np.linspace(100, 400, num_exits).astype(int),
        full_macs=380,
    )


def test_streaming_and_vectorised_decisions_agree_with_nan_rows():
    outputs = make_outputs(num_exits=4, samples=300)
    logits = outputs.logits.copy()
    logits[1, :5, 0] = np.nan  # Poisons exits 2..4 of samples 0-4.
    policy = _policy()
    expected = policy.exit_indices(logits)
    np.testing.assert_array_equal(stream(policy, logits), expected)
    np.testing.assert_array_equal(stream(policy, logits, compact=False), expected)
    assert (expected[:5][expected[:5] != 0] == 3).all()
    assert len(np.unique(expected)) > 2  # The fixture really decides.


def test_decision_policy_round_trips_through_json_and_checks_signals():
    policy = _policy()
    assert Policy.from_json(policy.to_json()) == policy
    data = json.loads(policy.to_json())
    assert data["type"] == "decision" and data["signals"] == list(
        rules.DECISION_SIGNALS
    )
    data["signals"] = data["signals"][:-1]
    with pytest.raises(ValueError, match="reads the signals"):
        Policy.from_dict(data)


@pytest.mark.parametrize(
    "weights,biases,message",
    [
        (np.zeros((2, SIGNALS)), [0.0, 0.0, 0.0], "`weights` must be finite"),
        (np.zeros((3, SIGNALS)), [0.0, 0.0], "`biases` must be finite"),
        (np.full((3, SIGNALS), np.nan), [0.0] * 3, "`weights`"),
        ("weights", [0.0] * 3, "`weights`"),
    ],
)
def test_bad_decision_models_raise_naming_the_argument(weights, biases, message):
    with pytest.raises(ValueError, match=message):
        DecisionPolicy([0.5, 0.5, 0.5], weights, biases)


def test_threshold_policies_refuse_the_stateful_rule():
    with pytest.raises(ValueError, match="unknown `rule`"):
        ThresholdPolicy([0.5, 0.5], rule="decision")
    with pytest.raises(ValueError, match="unknown `rule`"):
        tfee.layers.Confidence(rule="decision")


def _auc(score, right):
    """How often a right answer scores above a wrong one (ties: ranked)."""
    ranks = score.argsort().argsort()
    n_right = right.sum()
    n_wrong = len(right) - n_right
    return (ranks[right].sum() - n_right * (n_right - 1) / 2) / (n_right * n_wrong)


def test_fit_predicts_which_exits_are_right_better_than_max_softmax():
    outputs = independent_exits()
    model = fit_decision(outputs)
    assert model.thresholds == (None,) * 3
    scores = model.scores(outputs.logits)
    softmax = rules.scores(outputs.logits[:-1], "max_softmax")
    correct = outputs.correct()[:-1]
    auc = [_auc(scores[k], correct[k]) for k in range(3)]
    auc_softmax = [_auc(softmax[k], correct[k]) for k in range(3)]
    # Exit 1 has nothing earlier to read; later exits gain from the ensemble.
    assert auc[0] >= auc_softmax[0] - 0.005
    assert auc[1] > auc_softmax[1] + 0.03 and auc[2] > auc_softmax[2] + 0.08
    # Calibrated to the rate it is right at: the mean score tracks accuracy.
    np.testing.assert_allclose(scores.mean(axis=1), correct.mean(axis=1), atol=0.02)


def test_learned_decision_is_cheaper_than_max_softmax_at_the_same_drop():
    outputs = independent_exits()
    held_out = independent_exits(seed=1)
    cost = {}
    for rule in ("max_softmax", "decision"):
        policy = tfee.calibrate(outputs, rule=rule, max_accuracy_drop=0.005)
        evaluation = tfee.evaluate(held_out, policy=policy)
        cost[rule] = evaluation.mean_macs
        assert isinstance(policy, DecisionPolicy) == (rule == "decision")
    assert cost["decision"] < 0.95 * cost["max_softmax"]


def test_front_of_the_decision_holds_decision_policies():
    front = tfee.policy.front(
        independent_exits(samples=800), rule="decision", refine=True
    )
    assert all(isinstance(p.policy, DecisionPolicy) for p in front.points)
    costs = [p.mean_macs for p in front.points]
    assert costs == sorted(costs)


def _ensemble(num_exits=4, classes=10):
    weights = np.tril(np.full((num_exits, num_exits), 0.5)) + 0.5 * np.eye(num_exits)
    return tfee.policy.ExitEnsemble(weights, np.zeros((num_exits, classes)))


@pytest.mark.parametrize(
    "policy",
    [
        lambda e: ThresholdPolicy([0.6, 0.5, 0.4], ensemble=e),
        lambda e: _policy_with(e),
    ],
)
def test_ensemble_policies_stream_as_they_evaluate_and_round_trip(policy):
    outputs = independent_exits(samples=400)
    policy = policy(_ensemble())
    expected = policy.exit_indices(outputs.logits)
    np.testing.assert_array_equal(stream(policy, outputs.logits), expected)
    np.testing.assert_array_equal(
        stream(policy, outputs.logits, compact=False), expected
    )
    assert Policy.from_json(policy.to_json()) == policy
    assert "ensemble" in json.loads(policy.to_json())
    # The ensemble really decides: without it other samples leave elsewhere.
    plain = type(policy).from_dict({**policy.to_dict(), "ensemble": None})
    assert (plain.exit_indices(outputs.logits) != expected).any()


def _policy_with(ensemble):
    base = _policy()
    return DecisionPolicy(base.thresholds, base.weights, base.biases, ensemble)


def test_bad_ensembles_raise_naming_the_argument():
    with pytest.raises(ValueError, match="`ensemble` must be None or"):
        ThresholdPolicy([0.5, 0.5], ensemble=_ensemble(num_exits=4))
    with pytest.raises(ValueError, match="`weights\\[k, j\\]` must be 0 for j > k"):
        tfee.policy.ExitEnsemble(np.ones((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="`biases` must be finite"):
        tfee.policy.ExitEnsemble(np.eye(3), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="use initial_state / update"):
        ThresholdPolicy([0.5, 0.5, 0.5], ensemble=_ensemble()).leaves(0, np.zeros(10))
    with pytest.raises(ValueError, match="rule='patience', ensemble=True"):
        tfee.calibrate(
            independent_exits(200),
            rule="patience",
            max_accuracy_drop=0.01,
            ensemble=True,
        )


def test_a_fitted_ensemble_is_more_accurate_when_exits_err_independently():
    outputs, held_out = independent_exits(), independent_exits(seed=1)
    fitted = tfee.policy.ExitEnsemble.fit(outputs)
    accuracy = fitted.outputs(held_out).exit_accuracy().per_exit()
    assert (accuracy[1:] > held_out.exit_accuracy().per_exit()[1:] + 0.02).all()
    assert accuracy[0] == pytest.approx(
        held_out.exit_accuracy().per_exit()[0], abs=0.01
    )
    policy = tfee.calibrate(outputs, max_accuracy_drop=0.005, ensemble=True)
    assert policy.ensemble == fitted
    with_ensemble = tfee.evaluate(held_out, policy=policy)
    without = tfee.evaluate(
        held_out, policy=tfee.calibrate(outputs, max_accuracy_drop=0.005)
    )
    assert with_ensemble.deepest_accuracy > without.deepest_accuracy + 0.02
    assert with_ensemble.accuracy > without.accuracy + 0.02


def test_fitting_confident_exits_never_makes_an_exit_worse():
    # Large log-softmax values: a fixed step would overshoot and diverge.
    outputs = independent_exits(samples=1500)
    confident = dataclasses.replace(outputs, logits=outputs.logits * 20)
    fitted = tfee.policy.ExitEnsemble.fit(confident)
    ensembled = fitted.outputs(confident)
    assert (
        ensembled.exit_accuracy().per_exit()
        >= confident.exit_accuracy().per_exit() - 0.005
    ).all()
    assert np.isfinite(fitted.weights).all() and np.isfinite(fitted.biases).all()


def test_an_ensemble_for_another_class_count_is_refused_by_name():
    policy = ThresholdPolicy([0.5, 0.5, 0.5], ensemble=_ensemble(classes=4))
    with pytest.raises(ValueError, match="answers over 4 classes .* have 10"):
        policy.exit_indices(independent_exits(samples=50).logits)
    with pytest.raises(ValueError, match="`policy.ensemble` answers over 4 classes"):
        compatibility.check_ensemble_classes(policy, 10, "api")
    with pytest.raises(ValueError, match="`weights` must be a rectangular array"):
        tfee.policy.ExitEnsemble([[1.0], [1.0, 2.0]], np.zeros((2, 3)))
    assert "ensemble=ExitEnsemble(4 exits, 4 classes)" in repr(policy)


def test_a_patience_policy_refuses_an_ensemble_in_its_file():
    data = tfee.PatiencePolicy(2, 4).to_dict()
    data["ensemble"] = _ensemble().to_dict()
    with pytest.raises(ValueError, match="takes no ensemble"):
        Policy.from_dict(data)
