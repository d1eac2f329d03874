"""Evaluating a policy from cached outputs, and the oracle bound.

Every figure comes from one pass over the data (`collect_outputs`): accuracy,
mean MACs (absolute and as a fraction of the backbone alone), the exit
histogram, the accuracy of the samples that left at each exit, agreement with
the deepest exit, and the oracle: each sample leaves at the earliest exit that
is right (the deepest if none is).
"""

import dataclasses
import math

import numpy as np

from tfee import rules
from tfee._keras import keras
from tfee.policy import base_policy
from tfee.policy import compatibility
from tfee.policy import costs as costs_lib
from tfee.policy import outputs as outputs_lib

__all__ = [
    "Evaluation",
    "evaluate",
    "oracle",
    "oracle_exit_indices",
    "oracle_macs_at_accuracy",
]


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """What a policy (or the oracle) does on a dataset.

    Attributes:
      name: what was evaluated (the policy's repr, or "oracle").
      accuracy: top-1 accuracy of the cascade's answers.
      mean_macs: mean MACs per sample (backbone to where it left + heads).
      macs_fraction: mean_macs / full_macs (printed as "% of the full
        network's MACs"; above 1 where heads cost more than they save).
      exit_counts: samples that left at each exit.
      exit_accuracy: accuracy of the samples that left at each exit (NaN
        where none left).
      agreement: fraction of samples whose answer equals the deepest exit's.
      deepest_accuracy: accuracy of the deepest exit alone ("full accuracy").
      single_exit_accuracy: each exit's accuracy on every sample.
      exit_macs: cumulative MACs to each exit.
      full_macs: MACs of the backbone alone.
      num_samples: samples evaluated.
      oracle: the oracle's `Evaluation` on the same outputs (None for the
        oracle itself).
      mean_cost: the mean measured cost per sample, where `evaluate` was
        given `costs` (`tfee.policy.ExitCosts`), else None.
      cost_unit: its unit ("ms", "cycles", ...), or None.
      cost_fraction: mean_cost over the full model's measured cost (None
        where either is unknown).
    """

    name: str
    accuracy: float
    mean_macs: float
    macs_fraction: float
    exit_counts: tuple
    exit_accuracy: tuple
    agreement: float
    deepest_accuracy: float
    single_exit_accuracy: tuple
    exit_macs: tuple
    full_macs: int
    num_samples: int
    oracle: "Evaluation" = None
    mean_cost: float = None
    cost_unit: str = None
    cost_fraction: float = None

    @property
    def accuracy_drop(self):
        """Deepest exit's accuracy minus this accuracy (positive = worse)."""
        return self.deepest_accuracy - self.accuracy

    @property
    def exit_fractions(self):
        return tuple(c / self.num_samples for c in self.exit_counts)

    def to_dict(self):
        """Plain JSON-ready values (NaN becomes None)."""

        def clean(value):
            if isinstance(value, float) and not math.isfinite(value):
                return None
            if isinstance(value, (list, tuple)):
                return [clean(v) for v in value]
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            return value

        data = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "oracle"
        }
        data["accuracy_drop"] = self.accuracy_drop
        data["exit_fractions"] = self.exit_fractions
        data = clean(data)
        data["oracle"] = None if self.oracle is None else self.oracle.to_dict()
        return data

    def table(self):
        """A plain-text report: summary lines, then one row per exit.

        The "% full MACs" column is each exit's cumulative MACs (heads on the
        way included) as a percentage of the full network's MACs, so the
        deepest exit shows more than 100.
        """
        lines = [
            f"policy: {self.name}",
            f"accuracy {100 * self.accuracy:.2f}% (deepest exit "
            f"{100 * self.deepest_accuracy:.2f}%, drop {100 * self.accuracy_drop:+.2f} "
            f"points), agreement with the deepest exit {100 * self.agreement:.1f}%",
            f"mean MACs {self.mean_macs:,.0f} = {100 * self.macs_fraction:.1f}% of the "
            f"full network's MACs ({self.full_macs:,}, the backbone alone), "
            f"{self.num_samples} samples",
        ]
        if self.mean_cost is not None:
            fraction = ""
            if self.cost_fraction is not None:
                fraction = f" = {100 * self.cost_fraction:.1f}% of the full model's"
            lines.append(
                f"mean measured cost {self.mean_cost:.4g} {self.cost_unit}{fraction}"
            )
        oracle = self.oracle
        if oracle is not None:
            lines.append(
                f"oracle: accuracy {100 * oracle.accuracy:.2f}% at "
                f"{100 * oracle.macs_fraction:.1f}% of the full network's MACs"
            )
        lines.append(
            f"{'exit':<6}{'% full MACs':>12}{'exit acc %':>12}{'left':>8}{'left %':>8}"
            f"{'acc of left %':>15}"
            + (f"{'oracle left %':>15}" if oracle is not None else "")
        )
        for k in range(len(self.exit_counts)):
            row = (
                f"{k + 1:<6}{_percent(self.exit_macs[k] / self.full_macs):>12}"
                f"{_percent(self.single_exit_accuracy[k]):>12}"
                f"{self.exit_counts[k]:>8}{_percent(self.exit_fractions[k]):>8}"
                f"{_percent(self.exit_accuracy[k]):>15}"
            )
            if oracle is not None:
                row += f"{_percent(oracle.exit_fractions[k]):>15}"
            lines.append(row)
        return "\n".join(lines)

    def __str__(self):
        return self.table()


def _percent(value):
    return (
        "    -" if value is None or not math.isfinite(value) else f"{100 * value:5.1f}"
    )


def _as_outputs(source, dataset, api, sparse):
    if isinstance(source, outputs_lib.ExitOutputs):
        if dataset is not None:
            raise ValueError(
                f"{api}: `source` is already cached ExitOutputs; pass dataset=None. "
                f"Received: dataset={type(dataset).__name__}"
            )
        return source
    if isinstance(source, keras.Model):
        if dataset is None:
            raise ValueError(
                f"{api}: a network needs a `dataset` of (images, labels) to run on. "
                "Received: dataset=None"
            )
        return outputs_lib.collect_outputs(source, dataset, sparse=sparse)
    raise TypeError(
        f"{api}: `source` must be a tfee early-exit network or ExitOutputs from "
        f"tfee.collect_outputs. Received: source={type(source).__name__}"
    )


def summarize(outputs, exit_indices, name, with_oracle=True, costs=None):
    """The `Evaluation` of samples leaving at `exit_indices` (0-based, (N,)),
    with their mean measured cost where `costs` are given."""
    exit_indices = np.asarray(exit_indices)
    correct = outputs.correct()
    samples = np.arange(outputs.num_samples)
    answered = correct[exit_indices, samples]
    predicted = rules.predictions(outputs.logits)
    agreement = np.mean(predicted[exit_indices, samples] == predicted[-1])
    counts = np.bincount(exit_indices, minlength=outputs.num_exits)
    right = np.bincount(exit_indices, weights=answered, minlength=outputs.num_exits)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_exit = np.where(counts > 0, right / np.maximum(counts, 1), np.nan)
    mean_macs = float(np.mean(outputs.exit_macs[exit_indices]))
    return Evaluation(
        name=name,
        accuracy=float(np.mean(answered)),
        mean_macs=mean_macs,
        macs_fraction=mean_macs / outputs.full_macs,
        exit_counts=tuple(int(c) for c in counts),
        exit_accuracy=tuple(float(a) for a in per_exit),
        agreement=float(agreement),
        deepest_accuracy=float(np.mean(correct[-1])),
        single_exit_accuracy=tuple(float(a) for a in correct.mean(axis=1)),
        exit_macs=tuple(int(m) for m in outputs.exit_macs),
        full_macs=outputs.full_macs,
        num_samples=outputs.num_samples,
        oracle=oracle(outputs) if with_oracle else None,
        **_cost_fields(costs, exit_indices),
    )


def _cost_fields(costs, exit_indices):
    if costs is None:
        return {}
    mean = float(np.mean(costs.per_sample(exit_indices)))
    fraction = costs.fraction(mean)
    return {
        "mean_cost": mean,
        "cost_unit": costs.unit,
        "cost_fraction": None if math.isnan(fraction) else fraction,
    }


def _check_against(policy, outputs, api):
    """`compatibility.check_policy` against cached outputs."""
    learned = [False] * outputs.num_exits
    if outputs.confidences is not None:
        learned = list(np.any(np.isfinite(outputs.confidences), axis=1))
    return compatibility.check_policy(
        policy,
        outputs.num_exits,
        learned,
        api,
        exit_macs=outputs.exit_macs,
        classes=outputs.logits.shape[-1],
    )


def evaluate(source, dataset=None, policy=None, *, sparse=False, costs=None):
    """Accuracy, mean MACs, exit histogram and the oracle of a policy.

    Args:
      source: a tfee early-exit network (run once over `dataset`) or
        `ExitOutputs` from `tfee.collect_outputs` (then dataset=None).
      dataset: (images, labels) batches as a tf.data.Dataset, or arrays.
      policy: a `ThresholdPolicy`, `PatiencePolicy` or `DecisionPolicy` for
        the same number of exits.
      sparse: count MACs of non-zero weights only (when running a network).
      costs: `tfee.policy.ExitCosts` measured on a device: the evaluation
        then also reports the mean measured cost beside the MACs.

    Returns:
      An `Evaluation` (print it for a table).

    Raises:
      TypeError: `source` or `policy` of the wrong type.
      ValueError: missing dataset, empty dataset, or a policy for a different
        number of exits.

    Example:
      >>> outputs = tfee.collect_outputs(net, test_ds)
      >>> result = tfee.evaluate(outputs, policy=policy)
      >>> result.accuracy, result.macs_fraction, result.oracle.macs_fraction
    """
    api = "tfee.evaluate"
    if policy is None:
        raise ValueError(f"{api}: `policy` is required. Received: policy=None")
    if not isinstance(policy, base_policy.Policy):
        compatibility.check_policy(policy, None, None, api)
    outputs = _as_outputs(source, dataset, api, sparse)
    _check_against(policy, outputs, api)
    costs = costs_lib.check_costs(costs, outputs.num_exits, api)
    exit_indices = policy.exit_indices(outputs.logits, outputs.confidences)
    if policy.ensemble is not None:  # Samples answer with the ensemble.
        outputs = policy.ensemble.outputs(outputs)
    return summarize(outputs, exit_indices, repr(policy), costs=costs)


def oracle_exit_indices(outputs):
    """Each sample's earliest correct exit (0-based), the deepest if none is."""
    correct = outputs.correct()
    correct[-1] = True
    return np.argmax(correct, axis=0)


def oracle(source, dataset=None):
    """The oracle's `Evaluation`: each sample leaves at its earliest right exit.

    No policy can reach the oracle's accuracy at lower cost; samples no exit
    gets right leave at the deepest exit (shared/BENCHMARK.md).

    Args:
      source: a tfee early-exit network (with `dataset`) or `ExitOutputs`.
      dataset: as for `evaluate`.
    """
    outputs = _as_outputs(source, dataset, "tfee.oracle", sparse=False)
    return summarize(outputs, oracle_exit_indices(outputs), "oracle", False)


def oracle_macs_at_accuracy(outputs, accuracy, hopeless_at_deepest=False):
    """The least mean MACs any label-aware exit assignment needs for `accuracy`.

    This is the oracle "at the same accuracy" a policy is compared with: every
    sample may leave at any exit, chosen knowing the label; samples that are
    not needed for the target leave at the first exit (the cheapest), and the
    samples needed are the ones whose earliest correct exit is cheapest. It
    is a lower bound on the mean MACs of every policy with at least this
    accuracy on these outputs.

    Args:
      outputs: `ExitOutputs`.
      accuracy: target accuracy in [0, 1].
      hopeless_at_deepest: follow the plain oracle's convention for samples
        no exit gets right: they leave at the deepest exit instead of the
        first (then it is no longer a strict lower bound).

    Returns:
      Mean MACs per sample (float), or None if no assignment reaches
      `accuracy` (more than the samples any exit gets right).
    """
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(
            "tfee.policy.oracle_macs_at_accuracy: `accuracy` must lie in [0, 1]. "
            f"Received: accuracy={accuracy!r}"
        )
    correct = outputs.correct()
    macs = outputs.exit_macs.astype(np.float64)
    n = outputs.num_samples
    hopeless = int((~correct.any(axis=0)).sum())
    base = macs[0]
    if hopeless_at_deepest:
        base = ((n - hopeless) * macs[0] + hopeless * macs[-1]) / n
    # A small tolerance: accuracies computed as counts / n must not round up.
    needed = int(math.ceil(accuracy * n - 1e-9))
    free = int(correct[0].sum())
    if needed <= free:
        return float(base)
    rest = ~correct[0] & correct.any(axis=0)
    first = np.argmax(correct[:, rest], axis=0)
    extra = np.sort(macs[first] - macs[0])
    if needed - free > len(extra):
        return None
    return float(base + extra[: needed - free].sum() / n)
