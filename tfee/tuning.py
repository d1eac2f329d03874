"""keras-tuner search over tfee hyperparameters: thresholds, placement, lambda, sparsity.

keras-tuner's built-in tuners build and fit Keras 3 models and reject tf_keras
ones, and without tensorboard their trials fail silently (DESIGN.md). So
`ExitTuner` subclasses `keras_tuner.Tuner`, overrides `run_trial`, and calls
a user-supplied `evaluate(hp) -> metrics` that builds, trains, calibrates or
compresses whatever it wants with tfee and returns the objective itself. Any
error inside a trial stops the search loudly instead of being swallowed.

Oracles are keras-tuner's own: `keras_tuner.oracles.RandomSearchOracle` and
`BayesianOptimizationOracle` (or "random" / "bayesian" here).
"""

import numbers
import os

import keras_tuner
import numpy as np

from tfee import rules
from tfee._checks import check_int
from tfee.policy import evaluation as evaluation_lib
from tfee.policy import outputs as outputs_lib
from tfee.policy import threshold_policy as threshold_policy_lib

__all__ = ["ExitTuner", "make_oracle", "threshold_evaluator", "threshold_policy"]

_ORACLES = ("random", "bayesian")


def make_oracle(kind, objective, max_trials, seed=0):
    """A keras-tuner oracle by name.

    Args:
      kind: "random" (`RandomSearchOracle`) or "bayesian"
        (`BayesianOptimizationOracle`).
      objective: a metric name to maximise, or a `keras_tuner.Objective`.
      max_trials: trials to run, a positive int.
      seed: the oracle's random seed.

    Returns:
      A `keras_tuner.Oracle`.
    """
    api = "tfee.tuning.make_oracle"
    if kind not in _ORACLES:
        raise ValueError(
            f"{api}: `kind` must be one of {_ORACLES}. Received: kind={kind!r}"
        )
    max_trials = check_int(max_trials, "max_trials", api)
    if isinstance(objective, str):
        objective = keras_tuner.Objective(objective, direction="max")
    if kind == "random":
        return keras_tuner.oracles.RandomSearchOracle(
            objective=objective, max_trials=max_trials, seed=seed
        )
    return keras_tuner.oracles.BayesianOptimizationOracle(
        objective=objective,
        max_trials=max_trials,
        num_initial_points=min(2, max_trials),
        seed=seed,
    )


class ExitTuner(keras_tuner.Tuner):
    """A keras-tuner `Tuner` whose trials call `evaluate(hp)` and nothing else.

    Args:
      evaluate: a callable `(hp, *search_args, **search_kwargs) -> float or
        dict` that reads hyperparameters from `hp` (a
        `keras_tuner.HyperParameters`), builds / trains / calibrates with tfee
        and returns the objective's value, or a dict of metrics holding it.
      oracle: a `keras_tuner.Oracle`, or "random" / "bayesian" (then
        `objective` and `max_trials` are required).
      objective: the metric to maximise (a name, or a `keras_tuner.Objective`);
        only with a named oracle.
      max_trials: trials to run; only with a named oracle.
      seed: oracle seed; only with a named oracle.
      directory, project_name, overwrite: where keras-tuner keeps its trial
        records (as in keras-tuner).

    Raises:
      TypeError: `evaluate` is not callable.
      ValueError: a named oracle without objective or max_trials.

    Example:
      >>> tuner = tfee.tuning.ExitTuner(
      ...     tfee.tuning.threshold_evaluator(val_outputs, macs_weight=0.5),
      ...     oracle="bayesian", objective="score", max_trials=20,
      ...     directory="/tmp/tune")
      >>> tuner.search()
      >>> policy = tfee.tuning.threshold_policy(
      ...     tuner.get_best_hyperparameters()[0], val_outputs.num_exits)
    """

    def __init__(
        self,
        evaluate,
        oracle="random",
        *,
        objective=None,
        max_trials=None,
        seed=0,
        directory=None,
        project_name="tfee_tuning",
        overwrite=False,
        **kwargs,
    ):
        api = "tfee.tuning.ExitTuner"
        if not callable(evaluate):
            raise TypeError(
                f"{api}: `evaluate` must be a callable (hp) -> objective value or "
                f"metrics dict. Received: evaluate={type(evaluate).__name__}"
            )
        if isinstance(oracle, str):
            if objective is None or max_trials is None:
                raise ValueError(
                    f"{api}: a named oracle ({oracle!r}) needs `objective` and "
                    f"`max_trials`. Received: objective={objective!r}, "
                    f"max_trials={max_trials!r}"
                )
            oracle = make_oracle(oracle, objective, max_trials, seed)
        elif not isinstance(oracle, keras_tuner.Oracle):
            raise TypeError(
                f"{api}: `oracle` must be a keras_tuner Oracle or one of {_ORACLES}. "
                f"Received: oracle={type(oracle).__name__}"
            )
        if directory is not None:
            directory = os.fspath(directory)
        super().__init__(
            oracle=oracle,
            directory=directory,
            project_name=project_name,
            overwrite=overwrite,
            **kwargs,
        )
        self._evaluate = evaluate

    def run_trial(self, trial, *args, **kwargs):
        """Calls `evaluate(trial.hyperparameters, ...)`; returns its metrics."""
        try:
            result = self._evaluate(trial.hyperparameters, *args, **kwargs)
        except Exception as error:
            # keras-tuner marks failing trials invalid and moves on silently;
            # a FatalError stops the search with the real cause.
            raise keras_tuner.errors.FatalError(
                f"tfee.tuning.ExitTuner: trial {trial.trial_id} failed: "
                f"{type(error).__name__}: {error}"
            ) from error
        if isinstance(result, dict):
            return {k: float(v) for k, v in result.items()}
        if isinstance(result, numbers.Real):
            return float(result)
        raise keras_tuner.errors.FatalError(
            "tfee.tuning.ExitTuner: `evaluate` must return a number or a dict of "
            f"metrics. Received: {type(result).__name__}"
        )

    def save_model(self, trial_id, model, step=0):
        """Trials keep no model: `evaluate` owns whatever it builds."""

    def load_model(self, trial):
        raise NotImplementedError(
            "tfee.tuning.ExitTuner keeps no models; rebuild one from "
            "tuner.get_best_hyperparameters()."
        )


def threshold_policy(hp, num_exits, rule="max_softmax"):
    """The `ThresholdPolicy` described by `hp` (its "threshold_k" floats).

    Registers one `hp.Float("threshold_k", 0, 1)` per exit except the deepest
    if they are not there yet, so the same call defines the search space
    inside a trial and rebuilds the policy from the best hyperparameters.
    """
    rules.check_rule(rule, "tfee.tuning.threshold_policy")
    thresholds = [hp.Float(f"threshold_{k}", 0.0, 1.0) for k in range(1, num_exits)]
    return threshold_policy_lib.ThresholdPolicy(thresholds, rule=rule)


def threshold_evaluator(outputs, rule="max_softmax", macs_weight=0.5):
    """An `evaluate(hp)` that scores per-exit thresholds on cached outputs.

    The score to maximise is accuracy - macs_weight x (mean MACs / full MACs).

    Args:
      outputs: `ExitOutputs` from `tfee.collect_outputs` (validation data).
      rule: the confidence rule.
      macs_weight: how much one full network's MACs cost in accuracy.

    Returns:
      A callable for `ExitTuner` returning {"score", "accuracy",
      "macs_fraction"}.
    """
    api = "tfee.tuning.threshold_evaluator"
    if not isinstance(outputs, outputs_lib.ExitOutputs):
        raise TypeError(
            f"{api}: `outputs` must be ExitOutputs from tfee.collect_outputs. "
            f"Received: outputs={type(outputs).__name__}"
        )
    rules.check_rule(rule, api)
    if (
        isinstance(macs_weight, bool)
        or not isinstance(macs_weight, numbers.Real)
        or not np.isfinite(macs_weight)
        or macs_weight < 0
    ):
        raise ValueError(
            f"{api}: `macs_weight` must be a non-negative number. "
            f"Received: macs_weight={macs_weight!r}"
        )

    def evaluate(hp):
        policy = threshold_policy(hp, outputs.num_exits, rule)
        result = evaluation_lib.evaluate(outputs, policy=policy)
        return {
            "score": result.accuracy - macs_weight * result.macs_fraction,
            "accuracy": result.accuracy,
            "macs_fraction": result.macs_fraction,
        }

    return evaluate
