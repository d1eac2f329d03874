import os
import stat

import pytest

import tfee.policy
from tests.policy.conftest import make_outputs
from tfee.policy import ExitCosts
from tfee.policy import UnreachableTargetWarning

# Measured costs that disagree with the MACs (1..10 x 100 .. 1000 MACs): the
# first exit is nearly as dear as the deepest, as int8 LiteRT's first stages
# are, so leaving there saves little time.
FRONT_LOADED = ExitCosts((0.9, 0.95, 0.97, 1.0), "ms", full_cost=0.95)


def test_costs_replace_macs_as_what_an_accuracy_target_minimises():
    # Exit 2 costs barely more time than exit 1 but 4x its MACs: in time,
    # samples should wait for exit 2's better answers.
    outputs = make_outputs(samples=2000)
    costs = ExitCosts((0.5, 0.52, 0.9, 1.0), "ms", full_cost=0.95)
    by_macs = tfee.calibrate(outputs, max_accuracy_drop=0.02)
    by_time = tfee.calibrate(outputs, max_accuracy_drop=0.02, costs=costs)
    on_macs = tfee.evaluate(outputs, policy=by_macs, costs=costs)
    on_time = tfee.evaluate(outputs, policy=by_time, costs=costs)
    for result in (on_macs, on_time):  # Both meet the drop ...
        assert result.accuracy >= result.deepest_accuracy - 0.02 - 1e-12
    assert on_time.mean_cost < 0.95 * on_macs.mean_cost  # ... one is faster.
    assert on_time.cost_unit == "ms"
    assert on_time.cost_fraction == pytest.approx(on_time.mean_cost / 0.95)
    assert "mean measured cost" in str(on_time)


def test_a_cost_budget_is_met_in_the_costs_unit_with_the_most_accurate_setting(
    outputs,
):
    budget = 0.96
    policy = tfee.calibrate(outputs, cost_budget=budget, costs=FRONT_LOADED)
    result = tfee.evaluate(outputs, policy=policy, costs=FRONT_LOADED)
    assert result.mean_cost <= budget * (1 + 1e-9)
    # The deepest exit alone (1.0 ms) is over budget, so some samples leave.
    assert result.exit_counts[-1] < outputs.num_samples
    with pytest.warns(UnreachableTargetWarning, match="mean cost <= 0.5 ms"):
        tfee.calibrate(outputs, cost_budget=0.5, costs=FRONT_LOADED)


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (dict(cost_budget=0.9), ValueError, "pass them too"),
        (dict(macs_budget=0.5, costs=FRONT_LOADED), ValueError, "cost_budget"),
        (dict(max_accuracy_drop=0.01, cost_budget=0.9), ValueError, "exactly one"),
        (dict(cost_budget=-1.0, costs=FRONT_LOADED), ValueError, "positive number"),
        (dict(max_accuracy_drop=0.01, costs=[1, 2, 3, 4]), TypeError, "ExitCosts"),
        (
            dict(max_accuracy_drop=0.01, costs=ExitCosts((1.0, 2.0), "ms")),
            ValueError,
            "hold 2 exits",
        ),
    ],
)
def test_bad_cost_arguments_raise(outputs, kwargs, error, message):
    with pytest.raises(error, match=message):
        tfee.calibrate(outputs, **kwargs)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(exit_costs=(), unit="ms"), "one finite number"),
        (dict(exit_costs=(1.0, float("nan")), unit="ms"), "one finite number"),
        (dict(exit_costs=(2.0, 1.0), unit="ms"), "cannot decrease"),
        (dict(exit_costs=(1.0, 2.0), unit=""), "unit"),
        (dict(exit_costs=(1.0, 2.0), unit="ms", full_cost=0), "full_cost"),
    ],
)
def test_bad_exit_costs_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ExitCosts(**kwargs)


def test_exit_costs_round_trip_through_json_with_normal_permissions(tmp_path):
    path = tmp_path / "costs.json"
    FRONT_LOADED.save(str(path))
    assert ExitCosts.load(str(path)) == FRONT_LOADED
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask
