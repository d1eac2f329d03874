"""The confidence rules: when a sample may leave, defined once.

Every runtime tfee ships to decides with these definitions: numpy (policies,
calibration, the LiteRT and TFLite Micro cascades), TensorFlow (the
`Confidence` layer, the in-graph batch-1 cascade) and C (`tfee/rules.h`,
read as `C_SOURCE`, which the generated firmware includes verbatim). The
three forms follow one specification, and `tests/test_rules.py` checks them
against each other, the C form compiled.

The specification, on one exit's logits x (C >= 2 classes, float; for int8
files the dequantised logits `(q - zero_point) * scale`, computed in
float32):

  s_i = x_i - max(x),  Z = sum_i exp(s_i)           (in float64 / double)
  max_softmax  1 / Z                                 (the top probability)
  entropy      1 - (log Z - sum_i exp(s_i) s_i / Z) / log C
  margin       (1 - exp(s_(2))) / Z                  (top-1 minus top-2 prob.)
  learned      the head's confidence output as it is
  patience     the arg-max class (first on ties); a streak grows while
               consecutive exits agree (`PatiencePolicy`)
  decision     a logistic model over this exit's and the earlier exits'
               signals (`DECISION_SIGNALS`, `decision_step`): sigmoid(b_k +
               sum_i w_ki f_i), summed in index order (`DecisionPolicy`)

The decision's signals at exit k (0-based), from its logits x and the
earlier exits' (the running state):

  max_softmax, margin, entropy   the three scores above, clipped
  ensemble_max_softmax   the top probability of the geometric ensemble of
                         exits 0..k: softmax(E / (k + 1)), E = the running
                         sum of log_softmax(x) (Zero Time Waste's ensemble)
  agrees_with_ensemble   1 where x's arg-max is the ensemble's, else 0
  streak_share           patience's streak / (k + 1)

A non-finite logit makes that exit's score NaN and poisons the ensemble,
so the sample can only leave at the deepest exit.

Rule scores are clipped to [0, 1]. A non-finite logit (or learned
confidence) makes the score NaN, and a sample leaves at exit k exactly when
its score is finite and `score >= threshold_k` (a missing threshold never
passes).

Deciding from the logits, not from an int8 file's softmax output (which
saturates at 255/256), makes every threshold up to 1.0 mean the same on
every runtime.

The input rule, decided from the input before any layer runs: a sample whose
input holds a NaN or an infinity never leaves early and answers class -1 at
the deepest exit, because its logits and confidence count as NaN at every
exit (`non_finite_rows`, `blocked_outputs`). A max-pool or ReLU may swallow
a NaN or turn -inf into 0, and whether it does depends on the CPU's kernels
(oneDNN, XLA), so the logits alone cannot decide alike on every machine and
batch size. Integer runtimes (int8 files, TensorFlow Lite Micro, the
generated C++ quantizer) refuse such an input instead: int8 has no NaN.
"""

import dataclasses
import importlib.resources
import math
import types

import numpy as np

__all__ = [
    "C_SOURCE",
    "DECISION",
    "DECISION_SIGNALS",
    "RULES",
    "SCORE_RULES",
    "THRESHOLD_RANGE",
    "Rule",
    "RowScores",
    "all_finite",
    "blocked_outputs",
    "check_rule",
    "decision_features",
    "decision_score",
    "decision_step",
    "ensemble_answer",
    "get",
    "log_softmax",
    "leaves",
    "non_finite_rows",
    "predictions",
    "scores",
    "streak",
    "tf_scores",
]

# Every rule's score lies in [0, 1]; thresholds must too.
THRESHOLD_RANGE = (0.0, 1.0)


def _rule_score(rule, shifted, exp, total, ops):
    """The formula of a logit rule, given s = x - max(x), exp(s) and Z.

    `ops` supplies the array library's log, its index-order sum over the
    classes, exp, the number of classes and the second-largest s, so that
    numpy (batch or one row) and TensorFlow evaluate the same expressions.
    """
    if rule == "max_softmax":
        return 1.0 / total
    if rule == "entropy":
        entropy = ops.log(total) - ops.reduce_sum(exp * shifted) / total
        return 1.0 - entropy / ops.log(ops.classes)
    return (1.0 - ops.exp(ops.second(shifted))) / total


@dataclasses.dataclass(frozen=True)
class Rule:
    """One confidence rule.

    Attributes:
      name: the rule's name in policies and files.
      summary: one line for docs and messages.
      needs_confidence: whether it reads a head's learned confidence.
      c_id: the value of `TFEE_RULE` that selects it in the C form.
      stateful: whether the score also reads the earlier exits' outputs (a
        policy's running state), not only this exit's.
    """

    name: str
    summary: str
    needs_confidence: bool
    c_id: int
    stateful: bool = False


DECISION = "decision"
_REGISTRY = (
    Rule("max_softmax", "the top softmax probability (SDN)", False, 0),
    Rule("entropy", "1 - softmax entropy / log(classes) (BranchyNet)", False, 1),
    Rule("margin", "top-1 minus top-2 softmax probability", False, 2),
    Rule("learned", "the head's learned confidence (PTEENet, EENet)", True, 3),
    Rule(
        DECISION,
        "a logistic model over this and the earlier exits' signals (EENet, ZTW)",
        False,
        4,
        stateful=True,
    ),
)
_BY_NAME = {rule.name: rule for rule in _REGISTRY}

# The rules a `ThresholdPolicy` scores one exit's outputs with.
RULES = tuple(rule.name for rule in _REGISTRY if not rule.stateful)
# The rules computed from logits alone (a weightless `Confidence` layer).
SCORE_RULES = tuple(
    rule.name for rule in _REGISTRY if not (rule.needs_confidence or rule.stateful)
)


def check_rule(rule, api, argument="rule", accepted=RULES):
    """Raises a ValueError naming `api` unless `rule` is one of `accepted`."""
    if not isinstance(rule, str) or rule not in accepted:
        raise ValueError(
            f"{api}: unknown `{argument}`, expected one of {tuple(accepted)}. "
            f"Received: {argument}={rule!r}"
        )


def get(rule, api="tfee.rules.get"):
    """The `Rule` called `rule`; a ValueError naming `api` for unknown names."""
    check_rule(rule, api, accepted=tuple(_BY_NAME))
    return _BY_NAME[rule]


def _check_logits(logits, api):
    if logits.ndim < 2 or logits.shape[-1] < 2:
        raise ValueError(
            f"{api}: `logits` must have shape (..., batch, classes) with at least "
            f"2 classes. Received: logits.shape={logits.shape}"
        )


def _learned_values(confidence, shape, api):
    if confidence is None:
        raise ValueError(
            f"{api}: rule='learned' needs the heads' learned `confidence`. "
            "Received: confidence=None (build the network with "
            "tfee.attach_exits(..., with_confidence=True))"
        )
    score = np.asarray(confidence, dtype=np.float64)
    if score.shape == shape + (1,):
        score = score[..., 0]
    if score.shape != shape:
        raise ValueError(
            f"{api}: `confidence` must have shape {shape} (or with a trailing 1) "
            f"to match the logits. Received: confidence.shape={score.shape}"
        )
    return score


def _sequential_sum(values):
    """Sums the last axis in index order, as the C form's loop does
    (np.sum adds pairwise, which can differ in the last bit)."""
    return np.cumsum(values, axis=-1)[..., -1]


# `RowScores.leaves`: how far from a threshold a plain-Python max-softmax
# estimate decides alone (the two exps differ by a few 1e-16 relative), and
# up to how many classes plain Python beats numpy's per-call overhead.
_GUARD = 1e-9
_FAST_CLASSES = 64


class RowScores:
    """`scores` of one sample at a time, for a batch-1 cascade's hot path.

    The same operations in the same order as the batch form (so the scores
    are bit-identical, `tests/test_rules.py` checks it), on buffers allocated
    once: a cascade asks once per exit and image, where numpy's per-call
    overhead, not the arithmetic, is the cost. Not thread-safe: one per
    runtime.

    Args:
      classes: the number of classes of the logits it scores (>= 2).
    """

    def __init__(self, classes):
        self.classes = int(classes)
        self._shifted = np.empty(self.classes, np.float64)
        self._exp = np.empty(self.classes, np.float64)
        self._ops = types.SimpleNamespace(
            log=np.log,
            reduce_sum=lambda v: sum(v.tolist()),  # In index order.
            exp=np.exp,
            classes=np.float64(self.classes),
            second=lambda v: np.partition(v, -2)[-2],
        )

    def score(self, rule, logits, confidence=None):
        """The score (a float in [0, 1], NaN where undefined) of one row.

        Args:
          rule: one of `RULES` (not checked: the caller's policy was).
          logits: float array (classes,), or a list of its values.
          confidence: the learned confidence, a number, for rule="learned".
        """
        # Python floats: float32 -> float64, exactly.
        values = logits if type(logits) is list else logits.tolist()
        # A float64 sum of float32 logits is finite exactly when they all are.
        if not math.isfinite(sum(values)):
            return math.nan
        if rule == "learned":
            value = float(confidence)
            return value if math.isfinite(value) else math.nan
        shifted = np.subtract(logits, max(values), out=self._shifted, dtype=np.float64)
        exp = np.exp(shifted, out=self._exp)
        total = sum(exp.tolist())  # In index order, as _sequential_sum.
        if rule == "max_softmax":  # The common case, without the dispatch.
            score = 1.0 / total
        else:
            score = float(_rule_score(rule, shifted, exp, np.float64(total), self._ops))
        return min(max(score, 0.0), 1.0)

    def leaves(self, rule, logits, threshold, confidence=None):
        """`leaves(score(rule, logits, confidence), threshold)`, sooner.

        For max_softmax over a few classes it first estimates the score in
        plain Python (libm's exp, which can differ from numpy's in the last
        bit); only an estimate within `_GUARD` of the threshold, where that
        bit could matter, is settled by the exact `score`.
        """
        if threshold is None:
            return False
        if rule == "max_softmax" and self.classes <= _FAST_CLASSES:
            values = logits if type(logits) is list else logits.tolist()
            if not math.isfinite(sum(values)):
                return False
            top = max(values)
            estimate = 1.0 / sum([math.exp(v - top) for v in values])
            if abs(estimate - threshold) > _GUARD:
                return estimate >= threshold
        return leaves(self.score(rule, logits, confidence), threshold)

    @staticmethod
    def prediction(logits):
        """`predictions` of one row (an array or a list of its values): its
        arg-max (first on ties), -1 where not finite."""
        values = logits if type(logits) is list else logits.tolist()
        if not math.isfinite(sum(values)):
            return -1
        return values.index(max(values))


def _softmax_parts(safe):
    """(s = x - max(x), exp(s), Z in index order, the numpy ops `_rule_score`
    needs) of finite float64 logits (..., classes)."""
    shifted = safe - safe.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    ops = types.SimpleNamespace(
        log=np.log,
        reduce_sum=_sequential_sum,
        exp=np.exp,
        classes=np.float64(safe.shape[-1]),
        second=lambda v: np.partition(v, -2, axis=-1)[..., -2],
    )
    return shifted, exp, _sequential_sum(exp), ops


def scores(logits, rule, confidence=None, api="tfee.rules.scores"):
    """Confidence per sample under `rule` (numpy, float64), NaN where undefined.

    Args:
      logits: array (..., batch, classes); leading axes (e.g. exits) are kept.
      rule: one of `RULES`.
      confidence: the learned confidence, (..., batch) or (..., batch, 1);
        required for rule="learned", ignored otherwise.
      api: the public API asking, for messages.

    Returns:
      A float64 array (..., batch) in [0, 1] (learned: as given), NaN where
      a logit or the learned confidence is not finite.

    Raises:
      ValueError: unknown rule, a learned rule without `confidence`, or
        logits with fewer than 2 classes.
    """
    check_rule(rule, api)
    logits = np.asarray(logits, dtype=np.float64)
    _check_logits(logits, api)
    if logits.shape[0] == 1 and logits.ndim == 2 and rule != "learned":
        return np.array([RowScores(logits.shape[1]).score(rule, logits[0])])
    finite = np.isfinite(logits).all(axis=-1)
    everywhere = bool(finite.all())
    if rule == "learned":
        score = _learned_values(confidence, logits.shape[:-1], api)
        return np.where(finite & np.isfinite(score), score, np.nan)
    # Non-finite rows are zeroed first, so no operation below can overflow
    # or produce NaN; they become NaN at the end. Runtimes call this once
    # per exit and batch: the all-finite case skips both masks.
    safe = logits if everywhere else np.where(finite[..., None], logits, 0.0)
    shifted, exp, total, ops = _softmax_parts(safe)
    score = _rule_score(rule, shifted, exp, total, ops)
    score = np.minimum(np.maximum(score, 0.0), 1.0)
    return score if everywhere else np.where(finite, score, np.nan)


def tf_scores(logits, rule, confidence=None, dtype=None):
    """`scores` in TensorFlow, for graphs (a layer, an in-graph cascade).

    Args:
      logits: tensor (batch, classes) with a known number of classes >= 2.
      rule: one of `RULES`.
      confidence: the learned confidence (batch,) or (batch, 1), for
        rule="learned".
      dtype: the float type to compute in (default: the logits' own).

    Returns:
      A (batch,) tensor; NaN where a logit (or the confidence) is not finite.
    """
    from tfee._keras import tf

    api = "tfee.rules.tf_scores"
    check_rule(rule, api)
    logits = tf.convert_to_tensor(logits)
    dtype = dtype or logits.dtype
    logits = tf.cast(logits, dtype)
    classes = logits.shape[-1]
    if classes is None or classes < 2:
        raise ValueError(
            f"{api}: `logits` must have a known last axis of at least 2 classes. "
            f"Received: logits.shape={logits.shape}"
        )
    finite = tf.reduce_all(tf.math.is_finite(logits), axis=-1)
    nan = tf.constant(float("nan"), dtype)
    if rule == "learned":
        if confidence is None:
            raise ValueError(
                f"{api}: rule='learned' needs the head's learned `confidence`. "
                "Received: confidence=None"
            )
        score = tf.reshape(tf.cast(confidence, dtype), [-1])
        finite = tf.logical_and(finite, tf.math.is_finite(score))
        return tf.where(finite, score, nan)
    safe = tf.where(finite[:, None], logits, tf.zeros_like(logits))
    shifted = safe - tf.reduce_max(safe, axis=-1, keepdims=True)
    exp = tf.exp(shifted)
    total = tf.reduce_sum(exp, axis=-1)
    ops = types.SimpleNamespace(
        log=tf.math.log,
        reduce_sum=lambda v: tf.reduce_sum(v, axis=-1),
        exp=tf.exp,
        classes=tf.constant(float(classes), dtype),
        second=lambda v: tf.math.top_k(v, k=2).values[:, 1],
    )
    score = _rule_score(rule, shifted, exp, total, ops)
    return tf.where(finite, tf.clip_by_value(score, 0.0, 1.0), nan)


def leaves(score, threshold):
    """Whether scores pass a threshold: finite and >= it (None never passes).

    Works on numbers and numpy arrays (thresholds broadcast). Every numpy
    decision in tfee is this comparison; the C form is `tfee_leaves`, and
    DynamicPredictor's batch-1 graph compares in TensorFlow and hands scores
    within 1e-9 of a threshold back to this one.
    """
    if threshold is None:
        return np.zeros(np.shape(score), bool) if np.ndim(score) else False
    if type(score) is float:  # One sample's score (`RowScores`): no numpy.
        return math.isfinite(score) and score >= threshold
    # NaN compares False without a warning; infinite scores cannot occur.
    passed = np.isfinite(score) & (np.asarray(score) >= threshold)
    return passed if np.ndim(passed) else bool(passed)


def _streak(previous, previous_streak, predicted):
    """Patience's agreement: how many consecutive exits agree, this one included.

    Args:
      previous: the class the previous exit predicted (-1: none or invalid).
      previous_streak: the streak up to the previous exit.
      predicted: this exit's class, from `predictions` (-1 where invalid).

    Returns:
      previous_streak + 1 where this exit agrees with the previous one, else
      1 (0 where this exit's logits are not finite). Arrays broadcast.
    """
    predicted = np.asarray(predicted)
    valid = predicted >= 0
    same = valid & (predicted == previous)
    return np.where(same, np.asarray(previous_streak) + 1, valid.astype(np.int64))


streak = _streak  # Public name; decision_step's argument shadows it there.


def predictions(logits):
    """Arg-max class per sample (first on ties); -1 where logits are not finite."""
    logits = np.asarray(logits)
    finite = np.isfinite(logits).all(axis=-1)
    if finite.all():
        return np.argmax(logits, axis=-1)
    safe = np.where(finite[..., None], logits, 0)
    return np.where(finite, np.argmax(safe, axis=-1), -1)


def non_finite_rows(inputs):
    """The input rule: per sample (first axis), whether its input holds a NaN
    or an infinity, so that it may not leave before the deepest exit.

    Args:
      inputs: an array (or eager tensor) (n, ...) of a network's inputs.

    Returns:
      A bool array (n,).
    """
    inputs = np.asarray(inputs)
    if inputs.dtype.kind in "iub" or all_finite(inputs):  # Integers hold no NaN.
        return np.zeros(len(inputs), bool)
    if inputs.dtype.kind not in "fc":  # bfloat16 and other extension floats.
        inputs = inputs.astype(np.float32)
    return ~np.isfinite(inputs.reshape(len(inputs), -1)).all(axis=1)


def all_finite(values):
    """Whether an array holds no NaN and no infinity, in one numpy call in
    the common case (a batch-1 runtime asks once per image): a finite sum
    proves it (NaN and infinities propagate); a sum that overflowed is
    checked value by value."""
    values = np.asarray(values)
    if values.dtype.kind in "iub":
        return True
    if values.dtype.kind not in "fc":  # bfloat16 and other extension floats.
        values = values.astype(np.float32)
    if values.dtype.kind == "f" and math.isfinite(values.sum()):
        return True
    return bool(np.isfinite(values).all())


def blocked_outputs(logits, confidence, blocked):
    """An exit's outputs with the rows `blocked` (from `non_finite_rows`)
    set to NaN: the input rule is then the rule for non-finite logits, which
    never leave before the deepest exit and answer -1 there.

    Args:
      logits: float array (n, classes).
      confidence: float array (n,) of learned confidences, or None.
      blocked: bool array (n,).

    Returns:
      (logits, confidence), copies where a row is blocked.
    """
    blocked = np.asarray(blocked, bool)
    if not blocked.any():
        return logits, confidence
    logits = np.array(logits, dtype=np.float32, copy=True)
    logits[blocked] = np.nan
    if confidence is not None:
        confidence = np.array(confidence, dtype=np.float32, copy=True)
        confidence[blocked] = np.nan
    return logits, confidence


DECISION_SIGNALS = (
    "max_softmax",
    "margin",
    "entropy",
    "ensemble_max_softmax",
    "agrees_with_ensemble",
    "streak_share",
)


def decision_step(logits, exit_index, ensemble, previous, streak):
    """The learned decision's signals at one exit, and the state after it.

    Args:
      logits: (n, classes) logits of exit `exit_index` (0-based).
      exit_index: the exit's 0-based index (the ensemble averages
        `exit_index + 1` exits).
      ensemble: (n, classes) float64 running sum of the earlier exits'
        log-softmax (zeros before exit 0).
      previous, streak: (n,) patience's state (`streak`), -1 and 0 before
        exit 0.

    Returns:
      (signals, ensemble, previous, streak): signals (n, len(DECISION_SIGNALS))
      float64, NaN rows where this exit's logits (or an earlier exit's) are
      not finite; the new state arrays.
    """
    x = np.asarray(logits, dtype=np.float64)
    _check_logits(x, "tfee.rules.decision_step")
    finite = np.isfinite(x).all(axis=-1)
    shifted, exp, total, ops = _softmax_parts(np.where(finite[:, None], x, 0.0))
    own = [
        np.minimum(np.maximum(_rule_score(rule, shifted, exp, total, ops), 0.0), 1.0)
        for rule in ("max_softmax", "margin", "entropy")
    ]
    log_softmax = _log_softmax(shifted, total)
    ensemble = np.asarray(ensemble, np.float64) + np.where(
        finite[:, None], log_softmax, np.nan
    )
    count = np.float64(exit_index + 1)
    mean = ensemble / count
    usable = np.isfinite(mean).all(axis=-1)
    mean_safe = np.where(usable[:, None], mean, 0.0)
    ensemble_top = 1.0 / _sequential_sum(
        np.exp(mean_safe - mean_safe.max(axis=-1, keepdims=True))
    )
    predicted = predictions(x)
    agrees = (np.argmax(mean_safe, axis=-1) == predicted).astype(np.float64)
    streak = _streak(previous, streak, predicted)
    signals = np.stack(own + [ensemble_top, agrees, streak / count], axis=-1)
    signals[~(finite & usable)] = np.nan
    return signals, ensemble, predicted, streak


def _log_softmax(shifted, total):
    """log softmax from s = x - max(x) and Z = sum exp(s) (index order)."""
    return shifted - np.log(total)[..., None]


def log_softmax(logits):
    """log softmax over the last axis, float64: s - log(sum exp(s)) with
    s = x - max(x), the sum in index order; NaN rows where a logit is not
    finite."""
    x = np.asarray(logits, dtype=np.float64)
    finite = np.isfinite(x).all(axis=-1, keepdims=True)
    shifted, _, total, _ = _softmax_parts(np.where(finite, x, 0.0))
    return np.where(finite, _log_softmax(shifted, total), np.nan)


def ensemble_answer(history, weights, biases):
    """The learned ensemble's answer at exit k (Zero Time Waste).

    Args:
      history: (k + 1, n, classes) float64 `log_softmax` of exits 0..k.
      weights: (k + 1,) this exit's weight per exit so far.
      biases: (classes,) this exit's per-class bias.

    Returns:
      float32 (n, classes): biases + sum_j weights[j] history[j], summed in
      j order in float64, then rounded to float32 (the logits every rule
      then scores, as the C form does).
    """
    answer = np.broadcast_to(np.asarray(biases, np.float64), history.shape[1:])
    for weight, past in zip(np.asarray(weights, np.float64), history):
        answer = answer + weight * past
    return answer.astype(np.float32)


def decision_features(logits):
    """`decision_step`'s signals at every exit but the deepest.

    Args:
      logits: (K, n, classes) every exit's logits, shallowest first.

    Returns:
      A float64 array (K - 1, n, len(DECISION_SIGNALS)).
    """
    logits = np.asarray(logits)
    count, classes = logits.shape[1], logits.shape[2]
    ensemble = np.zeros((count, classes))
    previous = np.full(count, -1, np.int64)
    streak = np.zeros(count, np.int64)
    rows = []
    for k in range(len(logits) - 1):
        signals, ensemble, previous, streak = decision_step(
            logits[k], k, ensemble, previous, streak
        )
        rows.append(signals)
    return np.stack(rows) if rows else np.zeros((0, count, len(DECISION_SIGNALS)))


def decision_score(signals, weights, bias):
    """sigmoid(bias + sum_i weights_i signals_i), the sum in index order,
    clipped to [0, 1]; NaN where a signal is NaN.

    Args:
      signals: (..., len(DECISION_SIGNALS)) from `decision_step`.
      weights: (len(DECISION_SIGNALS),) one exit's weights.
      bias: that exit's bias.
    """
    signals = np.asarray(signals, np.float64)
    z = np.full(signals.shape[:-1], np.float64(bias))
    for i, weight in enumerate(np.asarray(weights, np.float64)):
        z = z + weight * signals[..., i]
    with np.errstate(over="ignore"):
        score = 1.0 / (1.0 + np.exp(-z))
    return np.where(np.isfinite(z), np.minimum(np.maximum(score, 0.0), 1.0), np.nan)


# The C form, for firmware: the same formulas in double precision over
# float logits, in tfee/rules.h (package data). The generated cascade
# includes it verbatim.
C_SOURCE = (
    importlib.resources.files("tfee").joinpath("rules.h").read_text(encoding="utf-8")
)
