import warnings

import numpy as np
import pytest

import tfee.policy
from tests.policy.conftest import make_outputs
from tfee.policy import PatiencePolicy
from tfee.policy import ThresholdPolicy
from tfee.policy import UnreachableTargetWarning


def evaluate(outputs, policy):
    return tfee.policy.evaluate(outputs, policy=policy)


@pytest.mark.parametrize("rule", ["max_softmax", "entropy", "margin"])
def test_accuracy_drop_target_is_met_more_cheaply_than_the_deepest_exit(outputs, rule):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        policy = tfee.policy.calibrate(outputs, rule=rule, max_accuracy_drop=0.02)
    result = evaluate(outputs, policy)
    assert isinstance(policy, ThresholdPolicy) and policy.rule == rule
    assert result.accuracy >= result.deepest_accuracy - 0.02 - 1e-12
    assert result.mean_macs < outputs.exit_macs[-1]


def test_macs_budget_is_met_with_the_most_accurate_shared_setting_or_better(outputs):
    policy = tfee.policy.calibrate(outputs, macs_budget=0.5)
    result = evaluate(outputs, policy)
    assert result.macs_fraction <= 0.5
    shared = [p for p in tfee.policy.front(outputs).points if p.macs_fraction <= 0.5]
    assert result.accuracy >= max(p.accuracy for p in shared)


def test_per_exit_search_is_never_worse_than_the_shared_threshold(outputs):
    shared = evaluate(
        outputs, tfee.policy.calibrate(outputs, max_accuracy_drop=0.01, refine=False)
    )
    refined = evaluate(outputs, tfee.policy.calibrate(outputs, max_accuracy_drop=0.01))
    assert refined.mean_macs <= shared.mean_macs
    assert refined.accuracy >= refined.deepest_accuracy - 0.01 - 1e-12
    assert (
        len(set(tfee.policy.calibrate(outputs, max_accuracy_drop=0.01).thresholds)) > 1
    )


def test_an_unreachable_budget_warns_and_returns_the_cheapest_setting(outputs):
    with pytest.warns(UnreachableTargetWarning, match="no max_softmax setting reaches"):
        policy = tfee.policy.calibrate(outputs, macs_budget=0.01)
    result = evaluate(outputs, policy)
    assert result.exit_counts[0] == outputs.num_samples


def test_an_unreachable_accuracy_warns_and_returns_the_most_accurate_setting(outputs):
    with pytest.warns(UnreachableTargetWarning, match=r"accuracy >= .*closest"):
        policy = tfee.policy.calibrate(outputs, max_accuracy_drop=-0.5)
    best = max(p.accuracy for p in tfee.policy.front(outputs).points)
    assert evaluate(outputs, policy).accuracy >= best


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "exactly one target"),
        ({"max_accuracy_drop": 0.01, "macs_budget": 0.5}, "exactly one target"),
        ({"max_accuracy_drop": 2.0}, r"max_accuracy_drop.*\[-1, 1\].*Received"),
        ({"macs_budget": 0.0}, "macs_budget` must be a positive fraction"),
        ({"macs_budget": 0.5, "rule": "top5"}, "unknown `rule`"),
        ({"macs_budget": 0.5, "rule": "learned"}, "no learned confidence|none"),
        ({"macs_budget": 0.5, "candidates": 1}, "candidates"),
    ],
)
def test_bad_calibration_arguments_raise(outputs, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tfee.policy.calibrate(outputs, **kwargs)


def test_front_is_pareto_optimal_and_sorted_by_cost(outputs):
    front = tfee.policy.front(outputs, candidates=32)
    macs = [p.mean_macs for p in front.points]
    accuracy = [p.accuracy for p in front.points]
    assert macs == sorted(macs) and accuracy == sorted(accuracy)
    assert len(set(accuracy)) == len(accuracy) > 3
    assert front.settings_evaluated >= len(front.points)
    for point in front.points:
        result = evaluate(outputs, point.policy)
        assert result.accuracy == pytest.approx(point.accuracy)
        assert result.mean_macs == pytest.approx(point.mean_macs)


def test_patience_and_learned_rules_calibrate_their_own_policy_types():
    outputs = make_outputs(confidences=True)
    patience = tfee.policy.calibrate(outputs, rule="patience", macs_budget=0.7)
    assert isinstance(patience, PatiencePolicy)
    assert evaluate(outputs, patience).macs_fraction <= 0.7
    learned = tfee.policy.calibrate(outputs, rule="learned", macs_budget=0.7)
    assert learned.rule == "learned"
    assert evaluate(outputs, learned).macs_fraction <= 0.7
    assert len(tfee.policy.front(outputs, rule="patience").points) >= 2


def test_calibration_ignores_samples_with_non_finite_outputs():
    outputs = make_outputs()
    logits = outputs.logits.copy()
    logits[:-1, :10] = np.nan
    broken = tfee.policy.ExitOutputs(
        logits, None, outputs.labels, outputs.exit_macs, 950
    )
    policy = tfee.policy.calibrate(broken, macs_budget=0.6)
    exits = policy.exit_indices(broken.logits)
    assert (exits[:10] == broken.num_exits - 1).all()


def test_refined_front_dominates_the_shared_front(outputs):
    shared = tfee.policy.front(outputs, candidates=32)
    refined = tfee.policy.front(outputs, candidates=32, refine=True, budgets=6)
    assert refined.settings_evaluated > shared.settings_evaluated
    for point in shared.points:
        best = max(p.accuracy for p in refined.points if p.mean_macs <= point.mean_macs)
        assert best >= point.accuracy
    assert any(len(set(p.policy.thresholds)) > 1 for p in refined.points)
    for point in refined.points:
        assert evaluate(outputs, point.policy).accuracy == pytest.approx(point.accuracy)
