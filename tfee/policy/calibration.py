"""Calibration: thresholds chosen on validation outputs for a target.

Two targets: a maximum accuracy drop versus the deepest exit, or a MACs
budget (mean MACs per sample as a fraction of the backbone alone). The search
is vectorised over cached outputs and grows linearly with
(exits x candidate thresholds), never as a grid over all exits:

  1. One shared threshold for every exit (SDN's setting), at `candidates`
     quantiles of the pooled confidences: the accuracy-vs-MACs front and a
     starting point that meets the target.
  2. Coordinate search per exit (as in MSDNet's budgeted thresholds): each
     exit's threshold in turn is moved to the candidate (a quantile of that
     exit's own confidences, or "never") that best serves the target with
     the other thresholds fixed; a few passes until nothing improves.
  3. Where the target binds, no single threshold can move without breaking
     it or costing more, so step 2 stays where step 1 left it. The same
     search also runs without the target, for cost - w x accuracy at a
     range of trade-offs w (a Lagrangian relaxation): it trades accuracy
     between exits, as cheap exits and dear ones call for. The best of
     these settings that meets the target is chosen (step 2's on ties).

A target no setting reaches gives an `UnreachableTargetWarning` and the
closest setting (the most accurate, or the cheapest).

With a `confidence`, a setting meets the target only if it still does at the
one-sided upper confidence bound of its accuracy drop (or mean MACs) on new
samples: a normal approximation to the paired per-sample difference from
the deepest exit (or to the per-sample MACs), from the same one pass.
"""

import collections
import dataclasses
import numbers
import statistics
import warnings

import numpy as np

from tfee import rules
from tfee._checks import check_bool
from tfee._checks import check_int
from tfee.policy import _thresholds
from tfee.policy import base_policy
from tfee.policy import compatibility
from tfee.policy import costs as costs_lib
from tfee.policy import decision as decision_lib
from tfee.policy import decision_policy
from tfee.policy import ensemble as ensemble_lib
from tfee.policy import evaluation as evaluate_lib
from tfee.policy import outputs as outputs_lib
from tfee.policy import patience_policy
from tfee.policy import threshold_policy

__all__ = ["Front", "FrontPoint", "UnreachableTargetWarning", "calibrate", "front"]

_CALIBRATION_RULES = rules.RULES + ("patience", rules.DECISION)
_MAX_PASSES = 4
_EPS = 1e-12


class UnreachableTargetWarning(UserWarning):
    """No policy setting meets the calibration target; the closest is returned."""


@dataclasses.dataclass(frozen=True)
class FrontPoint:
    """One setting on the accuracy-vs-MACs front."""

    policy: base_policy.Policy
    accuracy: float
    mean_macs: float
    macs_fraction: float

    def to_dict(self):
        return {
            "policy": self.policy.to_dict(),
            "accuracy": self.accuracy,
            "mean_macs": self.mean_macs,
            "macs_fraction": self.macs_fraction,
        }


@dataclasses.dataclass(frozen=True)
class Front:
    """The Pareto front (cheapest first) of one policy family on some outputs.

    Attributes:
      rule: the confidence rule (or "patience").
      points: `FrontPoint`s no other evaluated setting beats on both
        accuracy and MACs, sorted by MACs.
      settings_evaluated: how many settings were tried.
    """

    rule: str
    points: tuple
    settings_evaluated: int

    def to_dict(self):
        return {
            "rule": self.rule,
            "settings_evaluated": self.settings_evaluated,
            "points": [p.to_dict() for p in self.points],
        }


def _check_rule(rule, outputs, api):
    if rule not in _CALIBRATION_RULES:
        raise ValueError(
            f"{api}: unknown `rule`, expected one of {_CALIBRATION_RULES}. "
            f"Received: rule={rule!r}"
        )
    if rule == "learned" and outputs.confidences is None:
        raise ValueError(
            f"{api}: rule='learned' needs heads with a learned confidence "
            "(attach_exits(..., with_confidence=True)); these outputs have none."
        )


def _check_candidates(candidates, api):
    check_int(candidates, "candidates", api, minimum=2)


def _scores(outputs, rule, model=None):
    """(K-1, N) confidences of every exit but the deepest (rule "decision":
    the fitted `model`'s scores)."""
    if rule == rules.DECISION:
        return model.scores(outputs.logits)
    confidences = None if outputs.confidences is None else outputs.confidences[:-1]
    return rules.scores(outputs.logits[:-1], rule, confidences)


def _quantiles(values, candidates):
    """`candidates` thresholds spanning the finite values, plus inf ("never")."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.array([np.inf])
    levels = np.linspace(0.0, 1.0, candidates)
    return np.unique(np.append(np.quantile(finite, levels), np.inf))


def _policy(thresholds, rule, model=None):
    clean = [None if not np.isfinite(t) else float(t) for t in thresholds]
    if rule == rules.DECISION:
        return decision_policy.DecisionPolicy(clean, model.weights, model.biases)
    return threshold_policy.ThresholdPolicy(clean, rule=rule)


# Per setting (arrays over settings): accuracy, mean MACs, and the second
# moments the confidence bounds need: the share of samples whose correctness
# differs from the deepest exit's, and the mean of squared MACs.
_Moments = collections.namedtuple(
    "_Moments", ["accuracy", "cost", "disagreement", "cost_square"]
)


def _assess(exit_indices, correct, macs):
    """`_Moments` of (T, N) exit assignments."""
    samples = np.arange(correct.shape[1])
    chosen = correct[exit_indices, samples]
    cost = macs[exit_indices]
    return _Moments(
        chosen.mean(axis=-1),
        cost.mean(axis=-1),
        (chosen != correct[-1]).mean(axis=-1),
        (cost**2).mean(axis=-1),
    )


def _pareto(accuracy, cost):
    """Indices of settings no other beats on both, cheapest first."""
    order = np.lexsort((-accuracy, cost))
    kept, best = [], -np.inf
    for i in order:
        if accuracy[i] > best + _EPS:
            kept.append(i)
            best = accuracy[i]
    return kept


def _exit_costs(outputs, costs=None):
    """Per exit, what leaving there costs: `costs` (measured) or MACs."""
    if costs is None:
        return outputs.exit_macs.astype(np.float64)
    return np.asarray(costs.exit_costs, np.float64)


def _shared_family(outputs, rule, candidates, model=None, costs=None):
    """(thresholds (K-1, T) or patience values (T,), `_Moments` over T)."""
    correct = outputs.correct()
    macs = _exit_costs(outputs, costs)
    if rule == "patience":
        settings = np.arange(1, outputs.num_exits + 1)
        exits = np.stack(
            [
                patience_policy.PatiencePolicy(int(p), outputs.num_exits).exit_indices(
                    outputs.logits
                )
                for p in settings
            ]
        )
        return settings, _assess(exits, correct, macs)
    scores = _scores(outputs, rule, model)
    shared = _quantiles(scores, candidates)
    thresholds = np.repeat(shared[None], outputs.num_exits - 1, axis=0)
    exits = _thresholds.first_passing(scores, thresholds)
    return thresholds, _assess(exits, correct, macs)


def _model(outputs, rule):
    """The learned decision's model, fitted on `outputs` (None for other rules)."""
    return decision_lib.fit_decision(outputs) if rule == rules.DECISION else None


def _make_policy(setting, rule, num_exits, model=None):
    if rule == "patience":
        return patience_policy.PatiencePolicy(int(setting), num_exits)
    return _policy(setting, rule, model)


def front(outputs, rule="max_softmax", candidates=64, refine=False, budgets=12):
    """The accuracy-vs-MACs front over threshold (or patience) settings.

    Args:
      outputs: `ExitOutputs` from `tfee.collect_outputs`.
      rule: a confidence rule ("max_softmax", "entropy", "margin",
        "learned"), "patience" (every patience 1..K) or "decision" (the
        learned decision, its model fitted on `outputs` first).
      candidates: thresholds tried, at evenly spaced quantiles of the
        confidences (pooled for the shared sweep, per exit when refining).
      refine: also run calibration's per-exit search for `budgets` MACs
        budgets spread over the shared front, and keep the settings it finds
        (the front `calibrate` actually draws from). Ignored for "patience".
      budgets: how many budgets `refine` searches.

    Returns:
      A `Front`: the settings no other evaluated setting beats on both
      accuracy and MACs, cheapest first.
    """
    api = "tfee.policy.front"
    _check_outputs(outputs, api)
    _check_rule(rule, outputs, api)
    _check_candidates(candidates, api)
    model = _model(outputs, rule)
    settings, moments = _shared_family(outputs, rule, candidates, model)
    accuracy, cost = moments.accuracy, moments.cost
    columns = list(settings if rule == "patience" else settings.T)
    if refine and rule != "patience":
        shared = _pareto(accuracy, cost)
        picks = np.unique(np.linspace(0, len(shared) - 1, budgets).round().astype(int))
        extra = []
        for i in (shared[p] for p in picks):
            target = _Target(outputs, None, cost[i])
            extra.append(
                _refine(outputs, rule, settings[:, i], target, candidates, model)
            )
        if extra:
            thresholds = np.stack(extra, axis=1)
            exits = _thresholds.first_passing(_scores(outputs, rule, model), thresholds)
            more = _assess(
                exits, outputs.correct(), outputs.exit_macs.astype(np.float64)
            )
            columns += list(thresholds.T)
            accuracy = np.concatenate([accuracy, more.accuracy])
            cost = np.concatenate([cost, more.cost])
    points = tuple(
        FrontPoint(
            _make_policy(columns[i], rule, outputs.num_exits, model),
            float(accuracy[i]),
            float(cost[i]),
            float(cost[i] / outputs.full_macs),
        )
        for i in _pareto(accuracy, cost)
    )
    return Front(rule, points, len(accuracy))


# A max_accuracy_drop at least this large is more likely a percentage than a
# fraction (0.5 meant as half a point): it warns.
PERCENT_SUSPICION = 0.1


class _Target:
    """Ranks settings: feasible first, then the target's objective.

    `max_cost` is absolute: MACs, or the unit of calibrate's `costs`.
    """

    def __init__(self, outputs, max_accuracy_drop, max_cost, confidence=None):
        self.deepest = float(outputs.correct()[-1].mean())
        self.by_accuracy = max_accuracy_drop is not None
        self.min_accuracy = (
            self.deepest - max_accuracy_drop if self.by_accuracy else None
        )
        self.max_cost = None if self.by_accuracy else max_cost
        # z of the one-sided bound; 0 (no margin) without a confidence.
        self.z = (
            0.0 if confidence is None else statistics.NormalDist().inv_cdf(confidence)
        )
        self.samples = outputs.num_samples

    def margin(self, moments):
        """The confidence bound's margin on the drop (or on the mean MACs)."""
        if self.by_accuracy:
            drop = self.deepest - moments.accuracy
            variance = moments.disagreement - drop**2
        else:
            variance = moments.cost_square - moments.cost**2
        return self.z * np.sqrt(np.maximum(variance, 0.0) / self.samples)

    def feasible(self, moments):
        if self.by_accuracy:
            return moments.accuracy - self.margin(moments) >= self.min_accuracy - _EPS
        return moments.cost + self.margin(moments) <= self.max_cost * (1 + _EPS)

    def best(self, moments):
        """Index of the best setting (the first among equals) and its feasibility."""
        accuracy, cost = moments.accuracy, moments.cost
        feasible = self.feasible(moments)
        if feasible.any():
            # Feasible settings only: the cheapest (then most accurate) within
            # the accuracy drop, or the most accurate (then cheapest) within
            # the budget.
            if self.by_accuracy:
                primary, secondary = np.where(feasible, cost, np.inf), -accuracy
            else:
                primary, secondary = np.where(feasible, -accuracy, np.inf), cost
        elif self.by_accuracy:
            primary, secondary = -accuracy, cost
        else:
            primary, secondary = cost, -accuracy
        index = int(np.lexsort((secondary, primary))[0])
        return index, bool(feasible[index])


class _Tradeoff:
    """Ranks settings by mean cost - `weight` x accuracy, with no target:
    the per-exit search can then trade accuracy between exits (step 3)."""

    def __init__(self, weight):
        self.weight = weight

    def best(self, moments):
        # argmin takes the first among equals: the current threshold stays.
        return int(np.argmin(moments.cost - self.weight * moments.accuracy)), True


# Step 3's trade-offs, as multiples of the spread of the exits' costs.
_TRADEOFFS = np.geomspace(1e-2, 1e2, 13)


def _search(outputs, rule, thresholds, target, candidates, model, costs):
    """Steps 2 and 3 from `thresholds` (K-1,): the best setting for `target`."""
    found = [_refine(outputs, rule, thresholds, target, candidates, model, costs)]
    # With measured costs, the MACs' trade-offs are tried too: each search
    # is greedy, and either may find the setting that is cheaper in time.
    for table in [costs] if costs is None else [costs, None]:
        spread = np.ptp(_exit_costs(outputs, table))
        for weight in spread * _TRADEOFFS:
            tradeoff = _Tradeoff(weight)
            found.append(
                _refine(outputs, rule, thresholds, tradeoff, candidates, model, table)
            )
    settings = np.stack(found, axis=1)
    exits = _thresholds.first_passing(_scores(outputs, rule, model), settings)
    index, _ = target.best(
        _assess(exits, outputs.correct(), _exit_costs(outputs, costs))
    )
    return settings[:, index]


def _mean_if_leaving(quantity, k, rest, leave):
    """Means of a (K, N) per-sample quantity, one per candidate in `leave`
    (C, N): the samples that leave at exit k take its value, the others
    that of the exit `rest` (N,) they leave at without k."""
    kept = quantity[rest, np.arange(quantity.shape[1])]
    return (kept.sum() + (leave * (quantity[k] - kept)).sum(axis=1)) / len(rest)


def _refine(outputs, rule, thresholds, target, candidates, model=None, costs=None):
    """Coordinate search over each exit's threshold, from `thresholds` (K-1,)."""
    correct = outputs.correct()
    # Per exit and sample, every quantity `_Moments` averages.
    per_sample = (
        correct.astype(np.float64),
        np.repeat(_exit_costs(outputs, costs)[:, None], correct.shape[1], 1),
        (correct != correct[-1]).astype(np.float64),
    )
    per_sample += (per_sample[1] ** 2,)
    scores = _scores(outputs, rule, model)
    per_exit = [_quantiles(scores[k], candidates) for k in range(len(scores))]
    thresholds = thresholds.copy()
    for _ in range(_MAX_PASSES):
        changed = False
        for k in range(len(scores)):
            without_k = thresholds.copy()
            without_k[k] = np.inf
            rest = _thresholds.first_passing(scores, without_k)
            reaches = rest >= k
            values = np.append(thresholds[k], per_exit[k])
            leave = reaches[None] & rules.leaves(scores[k][None], values[:, None])
            moments = _Moments(
                *(_mean_if_leaving(q, k, rest, leave) for q in per_sample)
            )
            index, _ = target.best(moments)
            if index != 0 and values[index] != thresholds[k]:
                thresholds[k] = values[index]
                changed = True
        if not changed:
            break
    return thresholds


def _check_outputs(outputs, api):
    if not isinstance(outputs, outputs_lib.ExitOutputs):
        raise TypeError(
            f"{api}: `outputs` must be ExitOutputs from tfee.collect_outputs. "
            f"Received: outputs={type(outputs).__name__}"
        )


def calibrate(
    source,
    dataset=None,
    *,
    rule="max_softmax",
    max_accuracy_drop=None,
    macs_budget=None,
    candidates=64,
    refine=True,
    sparse=False,
    confidence=None,
    ensemble=False,
    costs=None,
    cost_budget=None,
):
    """Chooses a policy on validation data for an accuracy, MACs or cost target.

    Args:
      source: a tfee early-exit network (run once over `dataset`) or
        `ExitOutputs` from `tfee.collect_outputs` (then dataset=None).
      dataset: validation (images, labels) batches or arrays.
      rule: "max_softmax", "entropy", "margin", "learned" (thresholds),
        "patience" (PABEE; the patience is searched instead) or "decision"
        (a `DecisionPolicy`: a logistic model per exit over the signals of
        the exits so far, fitted on these outputs, then its thresholds).
      max_accuracy_drop: the largest accepted accuracy loss versus the
        deepest exit, as a fraction (0.005 = half a point); negative values
        ask for more accuracy than the deepest exit.
      macs_budget: the largest accepted mean MACs, as a fraction of the full
        network (the backbone alone).
      candidates: thresholds tried per exit (evenly spaced quantiles).
      refine: run the per-exit coordinate search after the shared sweep.
      sparse: count MACs of non-zero weights only (when running a network).
      confidence: None meets the target on these outputs. A probability in
        [0.5, 1) meets it with a margin: the accuracy drop (or the mean MACs)
        at its one-sided upper confidence bound for new samples, a normal
        approximation to the per-sample differences from the deepest exit
        (or to the per-sample MACs). The choice among many settings is not
        corrected for, so the bound is approximate: it guards against
        validation noise, not against a shift in the data.
      ensemble: also fit a `tfee.policy.ExitEnsemble` on these outputs (each
        exit answering with a learned combination of the exits so far, Zero
        Time Waste) and calibrate on its answers; the policy carries it, and
        the accuracy drop is measured against the ensemble's deepest answer.
        Not with rule="patience".
      costs: `tfee.policy.ExitCosts` measured on the device (e.g.
        `tfee.Cascade(path).profile(images)`, in ms): the policy
        then minimises (or budgets) the mean measured cost instead of MACs,
        which on LiteRT are not proportional to time.
      cost_budget: the largest accepted mean cost per sample, in `costs`'
        unit (0.8 with costs in ms: at most 0.8 ms); needs `costs`.

    Returns:
      The chosen `ThresholdPolicy` (`PatiencePolicy`, `DecisionPolicy`): the cheapest
      setting within the accuracy drop, or the most accurate within the
      budget.

    Raises:
      ValueError: not exactly one target, a target or `confidence` out of
        range, unknown rule, or an empty dataset.

    Warns:
      UnreachableTargetWarning: no setting meets the target; the closest one
        (most accurate, or cheapest) is returned.

    Example:
      >>> policy = tfee.calibrate(net, val_ds, max_accuracy_drop=0.005)
      >>> print(tfee.evaluate(net, test_ds, policy))
      >>> # within half a point at the 90% upper bound, not just on average
      >>> safer = tfee.calibrate(net, val_ds, max_accuracy_drop=0.005,
      ...                        confidence=0.9)
      >>> # as fast as possible on this device, or within 0.8 ms a sample:
      >>> costs = tfee.Cascade("net.tflite").profile(val_images)
      >>> fast = tfee.calibrate(outputs, max_accuracy_drop=0.005, costs=costs)
      >>> timed = tfee.calibrate(outputs, cost_budget=0.8, costs=costs)
    """
    api = "tfee.calibrate"
    targets = (max_accuracy_drop, macs_budget, cost_budget)
    if sum(t is not None for t in targets) != 1:
        raise ValueError(
            f"{api}: pass exactly one target, `max_accuracy_drop`, `macs_budget` or "
            f"`cost_budget`. Received: max_accuracy_drop={max_accuracy_drop!r}, "
            f"macs_budget={macs_budget!r}, cost_budget={cost_budget!r}"
        )
    if cost_budget is not None and costs is None:
        raise ValueError(
            f"{api}: `cost_budget` is in the unit of measured `costs`; pass them "
            "too (e.g. tfee.Cascade(path).profile(images)). Received: "
            "costs=None"
        )
    if macs_budget is not None and costs is not None:
        raise ValueError(
            f"{api}: `macs_budget` budgets MACs but `costs` replace MACs by "
            "measured costs; pass `cost_budget` in their unit instead. Received: "
            f"macs_budget={macs_budget!r}, costs={costs!r}"
        )
    if cost_budget is not None and not _positive_number(cost_budget):
        raise ValueError(
            f"{api}: `cost_budget` must be a positive number in the unit of "
            f"`costs`. Received: cost_budget={cost_budget!r}"
        )
    if max_accuracy_drop is not None and (
        isinstance(max_accuracy_drop, bool)
        or not isinstance(max_accuracy_drop, numbers.Real)
        or not -1.0 < max_accuracy_drop < 1.0
    ):
        # 1 or more would accept any accuracy: a percentage, almost surely.
        raise ValueError(
            f"{api}: `max_accuracy_drop` must be a fraction in (-1, 1) (0.005 = half "
            f"a point, 0.01 = one point). Received: "
            f"max_accuracy_drop={max_accuracy_drop!r}"
        )
    if max_accuracy_drop is not None and max_accuracy_drop >= PERCENT_SUSPICION:
        warnings.warn(
            f"{api}: max_accuracy_drop={max_accuracy_drop:g} accepts losing "
            f"{100 * max_accuracy_drop:g} points of accuracy; it is a fraction "
            f"(pass {max_accuracy_drop / 100:g} for {max_accuracy_drop:g} "
            "point(s)).",
            stacklevel=2,
        )
    if macs_budget is not None and not _positive_number(macs_budget):
        raise ValueError(
            f"{api}: `macs_budget` must be a positive fraction of the full "
            f"network's MACs (0.6 = 60%). Received: macs_budget={macs_budget!r}"
        )
    if confidence is not None and (
        isinstance(confidence, bool)
        or not isinstance(confidence, numbers.Real)
        or not 0.5 <= confidence < 1.0
    ):
        raise ValueError(
            f"{api}: `confidence` must be None or a probability in [0.5, 1) "
            f"(0.9 = the target holds at the 90% upper bound). "
            f"Received: confidence={confidence!r}"
        )
    _check_candidates(candidates, api)
    check_bool(ensemble, "ensemble", api)
    if ensemble and rule == "patience":
        raise ValueError(
            f"{api}: `ensemble=True` combines exits' answers for threshold and "
            "decision rules; patience counts agreeing exits instead. Received: "
            "rule='patience', ensemble=True"
        )
    outputs = evaluate_lib._as_outputs(source, dataset, api, sparse)
    costs = costs_lib.check_costs(costs, outputs.num_exits, api)
    _check_rule(rule, outputs, api)
    _warn_about_few_samples(outputs.num_samples, rule, api)
    exit_ensemble = None
    if ensemble:
        exit_ensemble = ensemble_lib.ExitEnsemble.fit(outputs)
        outputs = exit_ensemble.outputs(outputs)
    most = float(np.max(outputs.exit_macs)) / outputs.full_macs
    if macs_budget is not None and macs_budget > max(most, 1.0):
        # No policy can cost that much: the budget would constrain nothing.
        raise ValueError(
            f"{api}: `macs_budget` is a fraction of the full network's MACs "
            f"(0.6 = 60%); every policy of this network costs at most "
            f"{most:.3f}, so macs_budget={macs_budget!r} constrains nothing. "
            f"Did you mean {macs_budget / 100:g}?"
        )
    if cost_budget is not None:
        max_cost = cost_budget
    elif macs_budget is not None:
        max_cost = macs_budget * outputs.full_macs
    else:
        max_cost = None
    target = _Target(outputs, max_accuracy_drop, max_cost, confidence)

    model = _model(outputs, rule)
    settings, moments = _shared_family(outputs, rule, candidates, model, costs)
    index, _ = target.best(moments)
    if rule == "patience":
        policy = _make_policy(settings[index], rule, outputs.num_exits)
    else:
        thresholds = settings[:, index]
        if refine:
            thresholds = _search(
                outputs, rule, thresholds, target, candidates, model, costs
            )
        policy = _policy(thresholds, rule, model)
    exits = policy.exit_indices(outputs.logits, outputs.confidences)
    chosen = _assess(exits[None], outputs.correct(), _exit_costs(outputs, costs))
    if not target.feasible(chosen)[0]:
        if target.by_accuracy:
            wanted = (
                f"accuracy >= {target.min_accuracy:.4f} (deepest exit "
                f"{target.deepest:.4f} - max_accuracy_drop {max_accuracy_drop:g})"
            )
        elif costs is not None:
            wanted = f"mean cost <= {cost_budget:g} {costs.unit}"
        else:
            wanted = f"mean MACs <= {macs_budget:g} x full ({target.max_cost:,.0f})"
        if confidence is not None:
            wanted += f" at the {confidence:g} upper confidence bound"
        warnings.warn(
            UnreachableTargetWarning(
                f"{api}: no {rule} setting reaches the target {wanted} on these "
                f"outputs; returning the closest: accuracy {chosen.accuracy[0]:.4f} "
                f"at {_cost_text(chosen.cost[0], outputs, costs)} ({policy!r})."
            ),
            stacklevel=2,
        )
    if exit_ensemble is not None:
        policy = _with_ensemble(policy, exit_ensemble)
    # Where it meets a network or file, the policy is checked to be theirs.
    policy.fingerprint = compatibility.fingerprint(
        None if outputs.sparse_macs else outputs.exit_macs, outputs.logits.shape[-1]
    )
    return policy


# Fewer validation samples than this make a calibrated policy noise: a
# threshold is a quantile of that many scores, accuracy moves in steps of
# 1/samples, and the decision rule fits a logistic model per exit.
MIN_SAMPLES = 30
MIN_DECISION_SAMPLES = 100


def _warn_about_few_samples(samples, rule, api):
    needed = MIN_DECISION_SAMPLES if rule == rules.DECISION else MIN_SAMPLES
    if samples < needed:
        warnings.warn(
            f"{api}: {samples} validation samples are too few to calibrate "
            f"rule={rule!r} (at least {needed}): its accuracy moves in steps of "
            f"{100 / samples:.1f} points and the policy will not hold on new data. "
            f"Received: {samples} samples",
            UserWarning,
            stacklevel=3,
        )


def _positive_number(value):
    return (
        not isinstance(value, bool)
        and isinstance(value, numbers.Real)
        and value > 0
        and bool(np.isfinite(value))
    )


def _cost_text(cost, outputs, costs):
    if costs is None:
        return f"{100 * cost / outputs.full_macs:.1f}% of the full network's MACs"
    return f"a mean cost of {cost:.4g} {costs.unit}"


def _with_ensemble(policy, exit_ensemble):
    """`policy` deciding on (and answering with) `exit_ensemble`'s answers."""
    if isinstance(policy, decision_policy.DecisionPolicy):
        return decision_policy.DecisionPolicy(
            policy.thresholds, policy.weights, policy.biases, ensemble=exit_ensemble
        )
    return threshold_policy.ThresholdPolicy(
        policy.thresholds, rule=policy.rule, ensemble=exit_ensemble
    )
