"""Per-exit thresholds, as ThresholdPolicy and DecisionPolicy both hold them:
their checks, their printed form, and the first exit whose score passes."""

import math
import numbers

import numpy as np

from tfee import rules

__all__ = ["as_array", "clean", "first_passing", "text"]


def clean(thresholds, rule, api):
    """K-1 thresholds as a tuple of floats in [0, 1] or None ("never")."""
    if isinstance(thresholds, (str, bytes)) or not hasattr(thresholds, "__len__"):
        raise TypeError(
            f"{api}: `thresholds` must be a list of K-1 numbers in [0, 1] or "
            f"None. Received: thresholds={thresholds!r}"
        )
    low, high = rules.THRESHOLD_RANGE
    clean = []
    for k, value in enumerate(thresholds):
        if value is None:
            clean.append(None)
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(
                f"{api}: thresholds must be numbers or None. "
                f"Received: thresholds[{k}]={value!r}"
            )
        if math.isnan(value) or not low <= value <= high:
            raise ValueError(
                f"{api}: thresholds for rule {rule!r} must lie in [{low:g}, "
                f"{high:g}] (or be None for 'never leave here'). "
                f"Received: thresholds[{k}]={value!r}"
            )
        clean.append(float(value))
    return tuple(clean)


def as_array(thresholds):
    """Thresholds as float64, None ("never") as infinity."""
    return np.array([np.inf if t is None else t for t in thresholds], np.float64)


def text(thresholds):
    return ", ".join("None" if t is None else f"{t:.4g}" for t in thresholds)


def first_passing(scores, thresholds):
    """Index of the first exit whose score reaches its threshold (else the last).

    Args:
      scores: (K-1, N) confidences, NaN never passes.
      thresholds: (K-1,) or (K-1, T) thresholds (inf never passes).

    Returns:
      (N,) or (T, N) ints in [0, K-1].
    """
    if thresholds.ndim == 1:
        passes = rules.leaves(scores, thresholds[:, None])
    else:
        passes = rules.leaves(scores[:, None, :], thresholds[:, :, None])
    passes = np.concatenate([passes, np.ones((1,) + passes.shape[1:], bool)])
    return np.argmax(passes, axis=0)
