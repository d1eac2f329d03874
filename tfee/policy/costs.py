"""What leaving at each exit costs on a device, measured rather than counted.

MACs are a proxy: on LiteRT an int8 network's first stages run slower per
MAC than its later ones, and a cascade pays a stage split and a decision per
exit. `ExitCosts` holds costs measured where the network runs
(`tfee.Cascade.profile` in milliseconds, or instruction counts or
cycles a user measured on a microcontroller), so that `tfee.calibrate` can
ask for "as fast as possible on this device" or "at most 0.8 ms" and
`tfee.evaluate` can report the mean cost beside the MACs.
"""

import dataclasses
import json
import math
import numbers

import numpy as np

from tfee._files import write_bytes_atomically

__all__ = ["ExitCosts"]


@dataclasses.dataclass(frozen=True)
class ExitCosts:
    """The measured cost of a sample that leaves at each exit.

    Attributes:
      exit_costs: K numbers, increasing: what a sample that leaves at exit k
        costs in all (the stages up to k, their heads and decisions, and the
        per-sample work before the first stage).
      unit: what they count: "ms", "cycles", "instructions", ...
      full_cost: the same measure for the full model without exits (the
        denominator of `fraction`), or None where it was not measured.
      source: how they were measured, for reports.

    Raises:
      ValueError: fewer than one cost, a cost that is not a finite number
        >= 0, costs that decrease with depth, or a bad unit or full cost.

    Example:
      >>> costs = tfee.Cascade("net.tflite").profile(val_images)
      >>> policy = tfee.calibrate(outputs, max_accuracy_drop=0.005, costs=costs)
      >>> policy = tfee.calibrate(outputs, cost_budget=0.8, costs=costs)  # ms
      >>> # a microcontroller's instructions per image, exit by exit:
      >>> costs = tfee.policy.ExitCosts([4.1e8, 6.0e8, 9.3e8], "instructions")
    """

    exit_costs: tuple
    unit: str
    full_cost: float = None
    source: str = ""

    def __post_init__(self):
        api = "tfee.policy.ExitCosts"
        values = np.asarray(self.exit_costs, dtype=object).reshape(-1)
        if not len(values) or not all(_finite_non_negative(v) for v in values):
            raise ValueError(
                f"{api}: `exit_costs` must be one finite number >= 0 per exit. "
                f"Received: exit_costs={self.exit_costs!r}"
            )
        values = tuple(float(v) for v in values)
        if any(b < a for a, b in zip(values, values[1:])):
            raise ValueError(
                f"{api}: `exit_costs` are cumulative (leaving later costs at least "
                f"as much), so they cannot decrease. Received: exit_costs={values}"
            )
        if not isinstance(self.unit, str) or not self.unit:
            raise ValueError(
                f"{api}: `unit` must name what the costs count (e.g. 'ms', "
                f"'cycles'). Received: unit={self.unit!r}"
            )
        if self.full_cost is not None and not (
            _finite_non_negative(self.full_cost) and self.full_cost > 0
        ):
            raise ValueError(
                f"{api}: `full_cost` must be None or a positive number. "
                f"Received: full_cost={self.full_cost!r}"
            )
        object.__setattr__(self, "exit_costs", values)
        if self.full_cost is not None:
            object.__setattr__(self, "full_cost", float(self.full_cost))

    @property
    def num_exits(self):
        return len(self.exit_costs)

    def per_sample(self, exit_indices):
        """The cost each sample paid, from the 0-based exits it took."""
        return np.asarray(self.exit_costs, np.float64)[np.asarray(exit_indices)]

    def fraction(self, cost):
        """`cost` over the full model's (NaN where that was not measured)."""
        return math.nan if self.full_cost is None else cost / self.full_cost

    def to_dict(self):
        return dataclasses.asdict(self) | {"exit_costs": list(self.exit_costs)}

    @classmethod
    def from_dict(cls, data):
        return cls(**data)

    def save(self, path):
        """Writes the costs as JSON (`load` reads them back)."""
        write_bytes_atomically(path, json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path):
        with open(path) as f:
            return cls.from_dict(json.load(f))


def check_costs(costs, num_exits, api):
    """Raises unless `costs` is None or `ExitCosts` for `num_exits` exits."""
    if costs is None:
        return None
    if not isinstance(costs, ExitCosts):
        raise TypeError(
            f"{api}: `costs` must be None or tfee.policy.ExitCosts (e.g. from "
            "tfee.Cascade(path).profile(images)). Received: "
            f"costs={type(costs).__name__}"
        )
    if costs.num_exits != num_exits:
        raise ValueError(
            f"{api}: `costs` hold {costs.num_exits} exits but the outputs have "
            f"{num_exits}; measure the costs on this network's file. Received: "
            f"costs.exit_costs={costs.exit_costs}"
        )
    return costs


def _finite_non_negative(value):
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )
