"""When pruning happens and how sparse each group is at that step.

A tfee schedule is evaluated in Python by `tfee.compress.PruningScheduler`
for a group's final target sparsity, so the same schedule serves every scope
(one global target, per-layer or per-section targets). Steps count training
batches from the start of the schedule's phase.
"""

import numbers

__all__ = ["ConstantSparsity", "PolynomialDecay", "Rounds", "Schedule"]


def _check_int(value, argument, api, minimum, allow=()):
    if value in allow and not isinstance(value, bool):
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value < minimum
    ):
        accepted = f"an integer >= {minimum}" + (
            f" (or {', '.join(map(str, allow))})" if allow else ""
        )
        hint = ""
        if isinstance(value, float) and 0 <= value < 1:
            # tfmot's schedules start with the sparsity; tfee's take none.
            hint = (
                " tfee schedules take no sparsity (unlike tfmot's "
                "ConstantSparsity(target_sparsity, begin_step) and "
                "PolynomialDecay(initial_sparsity, final_sparsity, begin_step, "
                "end_step)): the target comes from `sparsity` of "
                "tfee.compress.prune / pruning_plan, per group; pass "
                "the steps by name."
            )
        raise ValueError(
            f"{api}: `{argument}` must be {accepted}. Received: "
            f"{argument}={value!r}.{hint}"
        )


def _check_span(api, begin_step, end_step):
    if end_step != -1 and end_step < begin_step:
        raise ValueError(
            f"{api}: the schedule ends before it begins: `end_step` must be >= "
            f"`begin_step`. Received: begin_step={begin_step}, end_step={end_step}"
        )


class Schedule:
    """Base class: `sparsity(step, target)` is the group's sparsity to prune
    to at `step`, or None when no pruning happens at that step."""

    begin_step = 0

    def sparsity(self, step, target):
        raise NotImplementedError

    @property
    def last_step(self):
        """The last step that prunes (None: the schedule never ends)."""
        raise NotImplementedError

    @property
    def length(self):
        """Steps the schedule needs, fine-tuning included (None: open-ended)."""
        return None if self.last_step is None else self.last_step + 1

    def get_config(self):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Rounds(Schedule):
    """Iterative pruning: N rounds of (prune a fraction of the remaining
    weights, fine-tune), as in Görmez & Koyuncu, "Pruning Early Exit Networks"
    (2022), who prune 20 rounds.

    Every round removes the same fraction `f` of the weights still present,
    with `1 - (1 - f) ** rounds = target`: after round r (1-based) the
    sparsity is `1 - (1 - target) ** (r / rounds)`. Round r prunes at step
    `begin_step + (r - 1) * steps_per_round`; fine-tuning fills the rest.

    Args:
      rounds: the number of rounds, >= 1.
      steps_per_round: training steps (batches) per round, >= 1.
      begin_step: the step of the first round, >= 0.

    Example:
      >>> Rounds(rounds=20, steps_per_round=len(train_ds))  # one round per epoch
    """

    def __init__(self, rounds, steps_per_round, begin_step=0):
        api = "tfee.compress.Rounds"
        _check_int(rounds, "rounds", api, 1)
        _check_int(steps_per_round, "steps_per_round", api, 1)
        _check_int(begin_step, "begin_step", api, 0)
        self.rounds = int(rounds)
        self.steps_per_round = int(steps_per_round)
        self.begin_step = int(begin_step)

    def sparsity(self, step, target):
        offset = step - self.begin_step
        if offset < 0 or offset % self.steps_per_round:
            return None
        done = offset // self.steps_per_round + 1
        if done > self.rounds:
            return None
        return 1.0 - (1.0 - target) ** (done / self.rounds)

    @property
    def last_step(self):
        return self.begin_step + (self.rounds - 1) * self.steps_per_round

    @property
    def length(self):
        return self.begin_step + self.rounds * self.steps_per_round

    def get_config(self):
        return dict(
            rounds=self.rounds,
            steps_per_round=self.steps_per_round,
            begin_step=self.begin_step,
        )


class ConstantSparsity(Schedule):
    """The target at once, re-applied every `frequency` steps (tfmot's
    `ConstantSparsity`).

    Args:
      begin_step: first pruning step, >= 0.
      end_step: last step that may prune, or -1 for no end.
      frequency: prune every `frequency` steps, >= 1.
    """

    def __init__(self, begin_step=0, end_step=-1, frequency=100):
        api = "tfee.compress.ConstantSparsity"
        _check_int(begin_step, "begin_step", api, 0)
        _check_int(end_step, "end_step", api, 0, allow=(-1,))
        _check_int(frequency, "frequency", api, 1)
        _check_span(api, begin_step, end_step)
        self.begin_step, self.end_step, self.frequency = begin_step, end_step, frequency

    def _prunes(self, step):
        offset = step - self.begin_step
        in_range = offset >= 0 and (self.end_step == -1 or step <= self.end_step)
        return in_range and offset % self.frequency == 0

    def sparsity(self, step, target):
        return float(target) if self._prunes(step) else None

    @property
    def last_step(self):
        if self.end_step == -1:
            return None
        return self.end_step - (self.end_step - self.begin_step) % self.frequency

    def get_config(self):
        return dict(
            begin_step=self.begin_step, end_step=self.end_step, frequency=self.frequency
        )


class PolynomialDecay(Schedule):
    """Sparsity rising from `initial_sparsity` to the target along a
    polynomial (tfmot's `PolynomialDecay`, Zhu & Gupta 2017):
    `s(t) = target + (initial - target) * (1 - p) ** power`, p = progress in
    [0, 1] between `begin_step` and `end_step`.

    Args:
      begin_step: first pruning step, >= 0.
      end_step: the step at which the target is reached, >= begin_step.
      initial_sparsity: the sparsity at `begin_step`, in [0, 1); a group whose
        target is lower starts at its target.
      power: the polynomial's exponent, > 0.
      frequency: prune every `frequency` steps, >= 1.
    """

    def __init__(
        self, begin_step, end_step, initial_sparsity=0.0, power=3, frequency=100
    ):
        api = "tfee.compress.PolynomialDecay"
        _check_int(begin_step, "begin_step", api, 0)
        _check_int(end_step, "end_step", api, 0)
        _check_int(frequency, "frequency", api, 1)
        _check_span(api, begin_step, end_step)
        if not (
            isinstance(initial_sparsity, numbers.Real)
            and not isinstance(initial_sparsity, bool)
            and 0 <= initial_sparsity < 1
        ):
            raise ValueError(
                f"{api}: `initial_sparsity` must be a number in [0, 1). "
                f"Received: initial_sparsity={initial_sparsity!r}"
            )
        if not (isinstance(power, numbers.Real) and power > 0):
            raise ValueError(
                f"{api}: `power` must be a number > 0. Received: power={power!r}"
            )
        self.begin_step, self.end_step = begin_step, end_step
        self.initial_sparsity, self.power = float(initial_sparsity), float(power)
        self.frequency = frequency

    def sparsity(self, step, target):
        offset = step - self.begin_step
        if offset < 0 or step > self.end_step:
            return None
        if offset % self.frequency and step != self.end_step:
            return None
        span = max(self.end_step - self.begin_step, 1)
        progress = min(offset / span, 1.0)
        initial = min(self.initial_sparsity, target)
        return target + (initial - target) * (1.0 - progress) ** self.power

    @property
    def last_step(self):
        return self.end_step

    def get_config(self):
        return dict(
            begin_step=self.begin_step,
            end_step=self.end_step,
            initial_sparsity=self.initial_sparsity,
            power=self.power,
            frequency=self.frequency,
        )
