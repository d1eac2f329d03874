"""Fitting the learned exit decision (`DecisionPolicy`) on validation outputs.

Per exit but the deepest, an L2-regularised logistic regression predicts
whether that exit's answer is right from `tfee.rules.decision_step`'s
signals (EENet's exit-assignment scores, Ilhan et al. 2023; JEI-DNN's
gates): Newton's method in numpy, deterministic, no training loop. The
thresholds on its scores are then calibrated like any rule's
(`tfee.calibrate(..., rule="decision")`).
"""

import numpy as np

from tfee import rules
from tfee.policy import decision_policy

__all__ = ["fit_decision"]

_MAX_NEWTON_STEPS = 50
_TOLERANCE = 1e-9


def _logistic(signals, target, l2):
    """(weights, bias) of an L2-regularised logistic regression (bias free)."""
    usable = np.isfinite(signals).all(axis=-1)
    x = np.concatenate([signals[usable], np.ones((usable.sum(), 1))], axis=1)
    y = target[usable].astype(np.float64)
    penalty = np.full(x.shape[1], float(l2))
    penalty[-1] = 0.0  # The bias is not shrunk.
    beta = np.zeros(x.shape[1])
    if len(y) == 0:
        return beta[:-1], 0.0
    for _ in range(_MAX_NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ beta, -500, 500)))
        gradient = x.T @ (p - y) + penalty * beta
        # A tiny ridge keeps the bias finite when every answer is right (or
        # wrong) and the system singular.
        hessian = (x.T * (p * (1 - p))) @ x + np.diag(penalty + 1e-6)
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.max(np.abs(step)) < _TOLERANCE:
            break
    return beta[:-1], float(beta[-1])


def fit_decision(outputs, l2=1.0):
    """Fits the learned decision's model on validation outputs.

    Args:
      outputs: `ExitOutputs` (from `tfee.collect_outputs`) of validation data.
      l2: the weights' L2 penalty (the bias has none), >= 0.

    Returns:
      A `DecisionPolicy` whose thresholds are all None (nobody leaves early):
      the fitted model, to calibrate thresholds for (as `tfee.calibrate(...,
      rule="decision")` does) or to read `weights` and `biases` from.
    """
    signals = rules.decision_features(outputs.logits)
    correct = outputs.correct()
    weights, biases = [], []
    for k in range(outputs.num_exits - 1):
        w, b = _logistic(signals[k], correct[k], l2)
        weights.append(w)
        biases.append(b)
    return decision_policy.DecisionPolicy(
        [None] * (outputs.num_exits - 1),
        np.reshape(weights, (outputs.num_exits - 1, len(rules.DECISION_SIGNALS))),
        biases,
    )
