"""Confidence rules in numpy: the scores a policy compares with its thresholds.

The same rules as `tfee.layers.confidence_from_logits` (max softmax, 1 minus
normalised entropy, top-1 minus top-2 margin), plus "learned" for heads with a
confidence output. Every score lies in [0, 1]; non-finite logits or
confidences give NaN, and NaN never passes a threshold.
"""

import numpy as np

__all__ = ["RULES", "THRESHOLD_RANGE", "confidence_scores", "predictions"]

RULES = ("max_softmax", "entropy", "margin", "learned")

# Every rule's score lies in [0, 1]; thresholds must too.
THRESHOLD_RANGE = (0.0, 1.0)


def check_rule(rule, api):
    """Raises a ValueError naming `api` unless `rule` is one of `RULES`."""
    if rule not in RULES:
        raise ValueError(
            f"{api}: unknown `rule`, expected one of {RULES}. Received: rule={rule!r}"
        )


def _softmax(logits):
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / np.sum(exp, axis=-1, keepdims=True)


def confidence_scores(logits, rule, confidence=None):
    """Confidence per sample under `rule`, in [0, 1]; NaN where it is undefined.

    Args:
      logits: array (..., batch, classes); any leading axes (e.g. exits) are
        kept.
      rule: "max_softmax", "entropy" (1 - entropy / log(classes)), "margin"
        (top-1 minus top-2 probability) or "learned".
      confidence: the learned confidence, array (..., batch) or
        (..., batch, 1); required for rule="learned", ignored otherwise.

    Returns:
      A float64 array (..., batch). Non-finite logits (or a non-finite
      learned confidence) give NaN.

    Raises:
      ValueError: unknown rule, a learned rule without `confidence`, or
        logits with fewer than 2 classes.
    """
    api = "tfee.policy.confidence_scores"
    check_rule(rule, api)
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim < 2 or logits.shape[-1] < 2:
        raise ValueError(
            f"{api}: `logits` must have shape (..., batch, classes) with at least "
            f"2 classes. Received: logits.shape={logits.shape}"
        )
    finite = np.all(np.isfinite(logits), axis=-1)
    if rule == "learned":
        if confidence is None:
            raise ValueError(
                f"{api}: rule='learned' needs the heads' learned `confidence`. "
                "Received: confidence=None (build the network with "
                "tfee.attach_exits(..., with_confidence=True))"
            )
        score = np.asarray(confidence, dtype=np.float64)
        if score.shape == logits.shape[:-1] + (1,):
            score = score[..., 0]
        if score.shape != logits.shape[:-1]:
            raise ValueError(
                f"{api}: `confidence` must have shape {logits.shape[:-1]} (or with a "
                f"trailing 1) to match the logits. Received: confidence.shape="
                f"{score.shape}"
            )
        return np.where(finite & np.isfinite(score), score, np.nan)
    if rule == "max_softmax" and finite.all():
        # The cascade runtime calls this once per exit and sample: the top
        # probability is 1 / sum(exp(logits - max)), with no softmax to build.
        shifted = logits - logits.max(axis=-1, keepdims=True)
        return 1.0 / np.exp(shifted).sum(axis=-1)
    with np.errstate(all="ignore"):
        probabilities = _softmax(np.where(finite[..., None], logits, 0.0))
        if rule == "max_softmax":
            score = probabilities.max(axis=-1)
        elif rule == "entropy":
            classes = logits.shape[-1]
            log_p = np.log(np.clip(probabilities, 1e-300, None))
            entropy = -np.sum(probabilities * log_p, axis=-1)
            score = 1.0 - entropy / np.log(classes)
        else:
            top2 = np.partition(probabilities, -2, axis=-1)[..., -2:]
            score = top2[..., 1] - top2[..., 0]
    return np.where(finite, np.clip(score, 0.0, 1.0), np.nan)


def predictions(logits):
    """Arg-max class per sample; -1 where the logits are not finite."""
    logits = np.asarray(logits)
    finite = np.all(np.isfinite(logits), axis=-1)
    safe = np.where(finite[..., None], logits, 0)
    return np.where(finite, np.argmax(safe, axis=-1), -1)
