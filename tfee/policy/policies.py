"""Exit policies: when a sample may leave at an exit.

A policy answers, exit by exit, which samples leave. Two families:

  - `ThresholdPolicy`: leave at the first exit whose confidence under a rule
    (max softmax, normalised entropy, margin, learned) reaches that exit's
    threshold (SDN, BranchyNet, PTEENet, MSDNet's budgeted thresholds).
  - `PatiencePolicy`: leave once `patience` consecutive exits agree on the
    class (PABEE, Zhou et al., 2020).
  - `DecisionPolicy`: a learned decision: per exit, a logistic model over
    that exit's and the earlier exits' signals (`tfee.rules.decision_step`:
    confidences, agreement with the exits' running ensemble, patience's
    streak), thresholded (EENet, Ilhan et al. 2023; ZTW's ensemble as a
    signal). `tfee.calibrate(..., rule="decision")` fits and calibrates it.

Every policy works two ways that give the same answer: vectorised over cached
per-exit outputs (`exit_indices`, for evaluation and calibration), and
streaming, one exit at a time (`initial_state` / `update`, for runtimes that
stop computing once a sample has left). The deepest exit takes every sample
still there. NaN or infinite confidences (or logits) never let a sample leave.
"""

import json
import math
import numbers
import os

import numpy as np

from tfee import rules
from tfee._checks import check_finite_array
from tfee._checks import check_int
from tfee._files import write_bytes_atomically
from tfee.policy.ensemble import ExitEnsemble

__all__ = [
    "DecisionPolicy",
    "PatiencePolicy",
    "Policy",
    "ThresholdPolicy",
    "check_ensemble_classes",
    "check_fingerprint",
    "check_policy",
    "fingerprint",
    "load_policy",
]

_FORMAT = "tfee.policy"
_VERSION = 1


class _StreamState:
    """Where a batch stands in a streaming cascade (opaque to callers).

    `alive` marks the samples of the original batch that have not left yet.
    `update` accepts either the whole original batch or only the samples still
    alive (in their original order), so runtimes that forward the survivors
    only and runtimes that run everything both work.
    """

    __slots__ = (
        "batch_size",
        "alive",
        "next_exit",
        "streak",
        "previous",
        "ensemble",
        "history",
        "answers",
    )

    def __init__(
        self,
        batch_size,
        alive,
        next_exit,
        streak,
        previous,
        ensemble=None,
        history=None,
        answers=None,
    ):
        self.batch_size = batch_size
        self.alive = alive
        self.next_exit = next_exit
        self.streak = streak
        self.previous = previous
        # (batch, classes) running sum of log-softmax (DecisionPolicy only).
        self.ensemble = ensemble
        # With an ExitEnsemble: (K, batch, classes) log-softmax of the exits
        # seen, and the answers (logits) of the rows the last update got.
        self.history = history
        self.answers = answers

    def rows(self, batch, api):
        """Indices into the original batch of the `batch` rows just received."""
        alive_rows = np.flatnonzero(self.alive)
        if batch == len(alive_rows):
            return alive_rows
        if batch == self.batch_size:
            return np.arange(self.batch_size)
        raise ValueError(
            f"{api}: the logits hold {batch} samples, but this state's batch has "
            f"{self.batch_size} samples of which {len(alive_rows)} have not left; "
            "pass either all of them or only those still in the cascade."
        )

    def __repr__(self):
        return (
            f"_StreamState(batch_size={self.batch_size}, "
            f"remaining={int(self.alive.sum())}, next_exit={self.next_exit})"
        )


def _check_num_exits(num_exits, api):
    return check_int(num_exits, "num_exits", api)


def _stack_logits(logits, api):
    """Per-exit logits as one float array (exits, samples, classes)."""
    if isinstance(logits, np.ndarray):
        array = logits
    else:
        array = np.stack([np.asarray(x) for x in logits])
    if array.ndim != 3:
        raise ValueError(
            f"{api}: `logits` must be a sequence of (samples, classes) arrays, one "
            f"per exit. Received: shape {array.shape}"
        )
    return array


def _clean_thresholds(thresholds, rule, api):
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


def _threshold_array(thresholds):
    """Thresholds as float64, None ("never") as infinity."""
    return np.array([np.inf if t is None else t for t in thresholds], np.float64)


def _thresholds_text(thresholds):
    return ", ".join("None" if t is None else f"{t:.4g}" for t in thresholds)


def _ensemble_from(data):
    """The `ExitEnsemble` a policy's dict holds, or None."""
    if data.get("ensemble") is None:
        return None
    return ExitEnsemble.from_dict(data["ensemble"])


class Policy:
    """Base class of exit policies; see the module docstring.

    Subclasses implement `_decide(state, rows, exit_index, logits, confidence)`
    returning the leave mask of the given rows and a dict of the state fields
    it changed (whole-batch arrays), `exit_indices`, and `to_dict` /
    `_from_dict`.
    """

    kind = None
    # What the policy was calibrated on (`tfee.calibrate` sets it): the
    # network's class count and exits' cumulative MACs, checked wherever the
    # policy meets a network or file (`check_policy`); None for a policy
    # written by hand.
    fingerprint = None

    def __init__(self, num_exits, ensemble=None):
        self._num_exits = num_exits
        if ensemble is not None and (
            not isinstance(ensemble, ExitEnsemble) or ensemble.num_exits != num_exits
        ):
            raise ValueError(
                f"{type(self).__name__}: `ensemble` must be None or a "
                f"tfee.policy.ExitEnsemble for {num_exits} exits (e.g. from "
                "tfee.calibrate(..., ensemble=True)). Received: ensemble="
                f"{ensemble!r}"
            )
        self.ensemble = ensemble

    def _answers(self, logits):
        """The logits the policy decides on and answers with, (K, n, C)."""
        return logits if self.ensemble is None else self.ensemble.answers(logits)

    @property
    def num_exits(self):
        """K: the number of exits (the deepest takes every remaining sample)."""
        return self._num_exits

    # Streaming.
    def initial_state(self, batch_size):
        """The state of a fresh batch of `batch_size` samples, before exit 0.

        Args:
          batch_size: a positive int.

        Returns:
          An opaque state for `update`.
        """
        api = f"{type(self).__name__}.initial_state"
        batch_size = check_int(batch_size, "batch_size", api)
        return _StreamState(
            batch_size=int(batch_size),
            alive=np.ones(batch_size, bool),
            next_exit=0,
            streak=np.zeros(batch_size, np.int64),
            previous=np.full(batch_size, -1, np.int64),
        )

    def update(self, state, exit_index, logits, confidence=None):
        """Decides which samples leave at exit `exit_index`.

        Args:
          state: from `initial_state` or the previous `update`; not modified.
          exit_index: 0-based exit index; exits must be visited in order.
          logits: array (batch, classes) of this exit, for either every sample
            of the original batch or only those that have not left yet (in
            their original order).
          confidence: the head's learned confidence, (batch,) or (batch, 1),
            or None.

        Returns:
          (leave, new_state): leave is a bool array (batch,) marking the rows
          of `logits` that leave here. At the deepest exit every row still in
          the cascade leaves. In whole-batch mode rows that left earlier are
          False. With an `ensemble`, the policy decides on the ensemble's
          answers, and `new_state.answers` holds them (the logits these rows
          answer with).

        Raises:
          TypeError: `state` is not a policy state.
          ValueError: exit index out of range or out of order, or logits whose
            batch matches neither the batch nor the samples still there.
        """
        api = f"{type(self).__name__}.update"
        if not isinstance(state, _StreamState):
            raise TypeError(
                f"{api}: `state` must come from policy.initial_state or a previous "
                f"update. Received: state={type(state).__name__}"
            )
        if (
            isinstance(exit_index, bool)
            or not isinstance(exit_index, numbers.Integral)
            or not 0 <= exit_index < self.num_exits
        ):
            raise ValueError(
                f"{api}: `exit_index` must be an int in [0, {self.num_exits - 1}] "
                f"(0-based, this policy has {self.num_exits} exits). "
                f"Received: exit_index={exit_index!r}"
            )
        if exit_index != state.next_exit:
            raise ValueError(
                f"{api}: exits must be visited in order; this state expects "
                f"exit_index={state.next_exit}. Received: exit_index={exit_index}"
            )
        logits = np.asarray(logits)
        if logits.ndim != 2:
            raise ValueError(
                f"{api}: `logits` must have shape (batch, classes). "
                f"Received: logits.shape={logits.shape}"
            )
        if confidence is not None:
            confidence = np.asarray(confidence)
            if confidence.shape not in ((len(logits),), (len(logits), 1)):
                raise ValueError(
                    f"{api}: `confidence` must have shape ({len(logits)},) or "
                    f"({len(logits)}, 1), one value per row of `logits`. "
                    f"Received: confidence.shape={confidence.shape}"
                )
            confidence = confidence.reshape(-1)
        rows = state.rows(len(logits), api)
        alive_here = state.alive[rows]
        fields = {
            "streak": state.streak,
            "previous": state.previous,
            "ensemble": state.ensemble,
            "history": state.history,
            "answers": None,
        }
        if self.ensemble is not None:
            history = state.history
            if history is None:
                shape = (self.num_exits, state.batch_size, logits.shape[-1])
                history = np.full(shape, np.nan)
            mine = history[:, rows]
            logits = self.ensemble.step(exit_index, logits, mine)
            history = history.copy()
            history[:, rows] = mine
            fields.update(history=history, answers=logits)
        if exit_index == self.num_exits - 1:
            leave = alive_here.copy()
        else:
            leave, changed = self._decide(state, rows, exit_index, logits, confidence)
            fields.update(changed)
            leave = leave & alive_here
        alive = state.alive.copy()
        alive[rows[leave]] = False
        new_state = _StreamState(state.batch_size, alive, exit_index + 1, **fields)
        return leave, new_state

    def _decide(self, state, rows, exit_index, logits, confidence):
        raise NotImplementedError

    # Vectorised.
    def exit_indices(self, logits, confidences=None):
        """The 0-based exit where each sample leaves, from all exits' outputs.

        Args:
          logits: K arrays (samples, classes), or one array (K, samples,
            classes), shallowest exit first.
          confidences: learned confidences (K, samples) (NaN where a head has
            none), or None.

        Returns:
          An int array (samples,).
        """
        api = f"{type(self).__name__}.exit_indices"
        logits = self._check_exits(logits, api)
        state = self.initial_state(logits.shape[1])
        exits = np.full(logits.shape[1], -1, np.int64)
        for k in range(self.num_exits):
            confidence = None if confidences is None else confidences[k]
            leave, state = self.update(state, k, logits[k], confidence)
            exits[leave] = k
        return exits

    def _check_exits(self, logits, api):
        logits = _stack_logits(logits, api)
        if len(logits) != self.num_exits:
            raise ValueError(
                f"{api}: this policy is for {self.num_exits} exits but the outputs "
                f"have {len(logits)}. Calibrate a policy for this network."
            )
        return logits

    # Serialisation.
    def to_dict(self):
        raise NotImplementedError

    def _header(self):
        """The fields every saved policy starts with."""
        header = {
            "format": _FORMAT,
            "version": _VERSION,
            "type": self.kind,
            "num_exits": self.num_exits,
        }
        if self.fingerprint is not None:
            header["fingerprint"] = dict(self.fingerprint)
        return header

    def _ensemble_text(self):
        return "" if self.ensemble is None else f", ensemble={self.ensemble!r}"

    def _ensemble_dict(self):
        """{"ensemble": ...} where the policy has one (absent otherwise)."""
        if self.ensemble is None:
            return {}
        return {"ensemble": self.ensemble.to_dict()}

    def to_json(self):
        """The policy as a JSON string (see `Policy.from_json`)."""
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path):
        """Writes `to_json()` to `path` atomically (load with `tfee.load_policy`)."""
        write_bytes_atomically(path, self.to_json())

    @classmethod
    def from_json(cls, text_or_path):
        """A policy from a JSON string or a file written by `save`.

        Args:
          text_or_path: JSON text (starting with "{") or a file path.

        Returns:
          A `ThresholdPolicy` or `PatiencePolicy`.

        Raises:
          ValueError: the text is not a tfee policy, or names an unknown type.
        """
        api = "tfee.policy.Policy.from_json"
        if not isinstance(text_or_path, (str, os.PathLike)):
            raise TypeError(
                f"{api}: expects JSON text or a file path. "
                f"Received: {type(text_or_path).__name__}"
            )
        text = os.fspath(text_or_path)
        if not text.lstrip().startswith("{"):
            if not os.path.isfile(text):
                raise ValueError(f"{api}: no such policy file. Received: {text!r}")
            with open(text) as f:
                text = f.read()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{api}: not valid JSON ({error})") from error
        policy = Policy.from_dict(data, api)
        if cls is not Policy and not isinstance(policy, cls):
            raise ValueError(
                f"{api}: the JSON holds a {type(policy).__name__}, not a "
                f"{cls.__name__}."
            )
        return policy

    @staticmethod
    def from_dict(data, api="tfee.policy.Policy.from_dict"):
        """A policy from `to_dict()`'s form (as a .tflite's metadata holds it).

        Raises:
          ValueError: `data` is not a tfee policy, or names an unknown type.
        """
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError(
                f'{api}: not a tfee policy (expected "format": "{_FORMAT}"). '
                f"Received: {type(data).__name__}"
            )
        kinds = {c.kind: c for c in (ThresholdPolicy, PatiencePolicy, DecisionPolicy)}
        if data.get("type") not in kinds:
            raise ValueError(
                f"{api}: unknown policy type, expected one of {sorted(kinds)}. "
                f"Received: type={data.get('type')!r}"
            )
        policy = kinds[data["type"]]._from_dict(data)
        if data.get("fingerprint") is not None:
            policy.fingerprint = _check_fingerprint_form(data["fingerprint"], api)
        return policy

    def __eq__(self, other):
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    def __hash__(self):
        return hash(self.to_json())


class ThresholdPolicy(Policy):
    """Leave at the first exit whose confidence reaches that exit's threshold.

    Args:
      thresholds: K-1 values in [0, 1], one per exit except the deepest (which
        takes every remaining sample); None means "never leave here". A
        sample leaves at exit k if its confidence >= thresholds[k].
      rule: "max_softmax" (SDN), "entropy" (1 - normalised entropy,
        BranchyNet), "margin", or "learned" (the head's confidence output,
        PTEENet / EENet).
      ensemble: a `tfee.policy.ExitEnsemble`: each exit then scores and
        answers with the learned ensemble of the exits so far (ZTW).

    Raises:
      ValueError: unknown rule, or a threshold outside [0, 1] (or NaN).

    Example:
      >>> policy = tfee.ThresholdPolicy([0.9, 0.8], rule="max_softmax")
      >>> policy.num_exits
      3
    """

    kind = "threshold"

    def __init__(self, thresholds, rule="max_softmax", ensemble=None):
        api = "tfee.ThresholdPolicy"
        rules.check_rule(rule, api)
        clean = _clean_thresholds(thresholds, rule, api)
        super().__init__(len(clean) + 1, ensemble)
        self.thresholds = clean
        self.rule = rule

    @classmethod
    def shared(cls, threshold, num_exits, rule="max_softmax"):
        """One threshold for every exit but the deepest (SDN's setting)."""
        num_exits = _check_num_exits(num_exits, "tfee.ThresholdPolicy.shared")
        return cls([threshold] * (num_exits - 1), rule=rule)

    def _decide(self, state, rows, exit_index, logits, confidence):
        threshold = self.thresholds[exit_index]
        if threshold is None:
            return np.zeros(len(logits), bool), {}
        score = rules.scores(
            logits,
            self.rule,
            confidence if self.rule == "learned" else None,
            api=f"{type(self).__name__}.update",
        )
        return rules.leaves(score, threshold), {}

    def leaves(self, exit_index, logits, confidence=None):
        """Whether one sample leaves at `exit_index`: `update` at batch 1, faster.

        A threshold policy keeps no state between exits, so a batch-1 runtime
        can ask exit by exit without building stream states; the answer is
        the one `update` and `exit_indices` give.

        Args:
          exit_index: 0-based exit index (the deepest always answers True).
          logits: the sample's logits, shape (classes,).
          confidence: its learned confidence (a number), for rule="learned".

        Returns:
          A bool.

        Raises:
          ValueError: a negative `exit_index`.
        """
        if (
            isinstance(exit_index, bool)
            or not isinstance(exit_index, numbers.Integral)
            or not 0 <= exit_index < self.num_exits
        ):
            raise ValueError(
                "ThresholdPolicy.leaves: `exit_index` must be an int in "
                f"[0, {self.num_exits - 1}] (0-based). Received: "
                f"exit_index={exit_index!r}"
            )
        if self.ensemble is not None:
            raise ValueError(
                "ThresholdPolicy.leaves: a policy with an ensemble decides on "
                "the answers of the exits so far; use initial_state / update."
            )
        if exit_index == self.num_exits - 1:
            return True
        threshold = self.thresholds[exit_index]
        if threshold is None:
            return False
        score = rules.scores(
            np.asarray(logits)[None],
            self.rule,
            None if confidence is None else np.reshape(confidence, (1,)),
        )[0]
        return rules.leaves(score, threshold)

    def exit_indices(self, logits, confidences=None):
        api = "ThresholdPolicy.exit_indices"
        logits = self._answers(self._check_exits(logits, api))
        if self.rule == "learned" and confidences is None:
            raise ValueError(
                f"{api}: rule='learned' needs the learned confidences. "
                "Received: confidences=None"
            )
        scores = rules.scores(
            logits[:-1],
            self.rule,
            None if self.rule != "learned" else np.asarray(confidences)[:-1],
        )
        return _first_passing(scores, _threshold_array(self.thresholds))

    def to_dict(self):
        return {
            **self._header(),
            "rule": self.rule,
            "thresholds": list(self.thresholds),
            **self._ensemble_dict(),
        }

    @classmethod
    def _from_dict(cls, data):
        return _saved(data, cls, data.get("thresholds", []), rule=data.get("rule"))

    def __repr__(self):
        shown = _thresholds_text(self.thresholds)
        return f"ThresholdPolicy([{shown}], rule={self.rule!r}{self._ensemble_text()})"


def _first_passing(scores, thresholds):
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


def _saved(data, cls, *args, **kwargs):
    """`cls(*args, **kwargs)` with the ensemble a saved policy holds, checked
    against the exit count the file states."""
    policy = cls(*args, ensemble=_ensemble_from(data), **kwargs)
    if "num_exits" in data and data["num_exits"] != policy.num_exits:
        raise ValueError(
            "tfee.policy.Policy.from_json: the file says num_exits="
            f"{data['num_exits']} but holds settings for {policy.num_exits} exits."
        )
    return policy


class PatiencePolicy(Policy):
    """Leave once `patience` consecutive exits agree on the class (PABEE).

    Zhou et al. (2020), "BERT loses patience". A sample leaves at exit k when
    exits k-patience+1 .. k all predict the same class (PABEE's patience t is
    `patience - 1` here); exits with non-finite logits break the streak. The
    deepest exit takes every remaining sample.

    Args:
      patience: how many consecutive exits must agree, 1..num_exits
        (1 = everyone leaves at the first exit).
      num_exits: K, the network's number of exits.

    Raises:
      ValueError: patience or num_exits not a positive int, or
        patience > num_exits.
    """

    kind = "patience"

    def __init__(self, patience, num_exits):
        api = "tfee.PatiencePolicy"
        num_exits = _check_num_exits(num_exits, api)
        if (
            isinstance(patience, bool)
            or not isinstance(patience, numbers.Integral)
            or not 1 <= patience <= num_exits
        ):
            raise ValueError(
                f"{api}: `patience` must be an int in [1, num_exits={num_exits}]. "
                f"Received: patience={patience!r}"
            )
        super().__init__(num_exits)
        self.patience = int(patience)
        self.rule = "patience"

    def _decide(self, state, rows, exit_index, logits, confidence):
        predicted = rules.predictions(logits)
        streak = state.streak.copy()
        previous = state.previous.copy()
        streak[rows] = rules.streak(state.previous[rows], state.streak[rows], predicted)
        previous[rows] = predicted
        return streak[rows] >= self.patience, {"streak": streak, "previous": previous}

    def to_dict(self):
        return {
            **self._header(),
            "patience": self.patience,
        }

    @classmethod
    def _from_dict(cls, data):
        if data.get("ensemble") is not None:
            raise ValueError(
                "tfee.policy.Policy.from_json: a patience policy counts agreeing exits "
                "and takes no ensemble. Received: a patience policy with "
                '"ensemble"'
            )
        return cls(data.get("patience"), data.get("num_exits"))

    def __repr__(self):
        return f"PatiencePolicy(patience={self.patience}, num_exits={self.num_exits})"


class DecisionPolicy(Policy):
    """A learned exit decision: leave at exit k when a logistic model over the
    signals seen so far reaches that exit's threshold.

    At exit k the model reads `tfee.rules.DECISION_SIGNALS`: this exit's max
    softmax, margin and entropy score, the top probability of the geometric
    ensemble of exits 1..k (Zero Time Waste's ensemble, here as a signal),
    whether this exit agrees with that ensemble, and patience's streak. Its
    score sigmoid(biases[k] + weights[k] . signals) estimates how likely the
    exit is right (EENet, Ilhan et al. 2023). Every runtime computes it with
    `tfee.rules` (the C form in firmware); build one with
    `tfee.calibrate(..., rule="decision")`, which fits the model on the
    validation outputs and then its thresholds for the target.

    Args:
      thresholds: K-1 values in [0, 1] or None ("never leave here").
      weights: (K-1, len(DECISION_SIGNALS)) finite numbers, one row per exit.
      biases: K-1 finite numbers.
      ensemble: a `tfee.policy.ExitEnsemble`: the signals are then read from
        (and the sample answers with) the ensemble's answers.

    Raises:
      ValueError: shapes that do not match the thresholds, or non-finite
        weights or biases.
    """

    kind = "decision"

    def __init__(self, thresholds, weights, biases, ensemble=None):
        api = "tfee.DecisionPolicy"
        clean = _clean_thresholds(thresholds, rules.DECISION, api)
        hint = (
            " (one row per exit but the deepest, one column per signal of "
            f"{rules.DECISION_SIGNALS})"
        )
        shape = (len(clean), len(rules.DECISION_SIGNALS))
        weights = check_finite_array(weights, shape, "weights", api, hint)
        biases = check_finite_array(biases, shape[:1], "biases", api, hint)
        super().__init__(len(clean) + 1, ensemble)
        self.thresholds = clean
        self.weights = weights
        self.biases = biases
        self.rule = rules.DECISION

    def _decide(self, state, rows, exit_index, logits, confidence):
        ensemble = state.ensemble
        if ensemble is None:  # Sized at the first exit, when classes are known.
            ensemble = np.zeros((state.batch_size, logits.shape[-1]))
        ensemble, streak, previous = (
            ensemble.copy(),
            state.streak.copy(),
            state.previous.copy(),
        )
        signals, ensemble[rows], previous[rows], streak[rows] = rules.decision_step(
            logits, exit_index, ensemble[rows], previous[rows], streak[rows]
        )
        threshold = self.thresholds[exit_index]
        score = rules.decision_score(
            signals, self.weights[exit_index], self.biases[exit_index]
        )
        return rules.leaves(score, threshold), {
            "ensemble": ensemble,
            "streak": streak,
            "previous": previous,
        }

    def scores(self, logits):
        """The model's score at every exit but the deepest, (K-1, samples),
        from all exits' logits (K, samples, classes)."""
        logits = self._check_exits(logits, f"{type(self).__name__}.scores")
        signals = rules.decision_features(self._answers(logits))
        if self.num_exits == 1:
            return np.zeros((0, logits.shape[1]))
        return np.stack(
            [
                rules.decision_score(signals[k], self.weights[k], self.biases[k])
                for k in range(self.num_exits - 1)
            ]
        )

    def exit_indices(self, logits, confidences=None):
        return _first_passing(self.scores(logits), _threshold_array(self.thresholds))

    def to_dict(self):
        return {
            **self._header(),
            "rule": self.rule,
            "signals": list(rules.DECISION_SIGNALS),
            "thresholds": list(self.thresholds),
            "weights": self.weights.tolist(),
            "biases": self.biases.tolist(),
            **self._ensemble_dict(),
        }

    @classmethod
    def _from_dict(cls, data):
        if data.get("signals") != list(rules.DECISION_SIGNALS):
            raise ValueError(
                "tfee.policy.Policy.from_json: this decision policy reads the signals "
                f"{data.get('signals')!r}; this tfee computes "
                f"{list(rules.DECISION_SIGNALS)}. Calibrate it again."
            )
        return _saved(
            data,
            cls,
            data.get("thresholds", []),
            data.get("weights"),
            data.get("biases"),
        )

    def __repr__(self):
        shown = _thresholds_text(self.thresholds)
        return (
            f"DecisionPolicy([{shown}], weights of shape {self.weights.shape}"
            f"{self._ensemble_text()})"
        )


# How far an exit's MACs may differ from the fingerprint's and still be the
# same network (an input normalisation added later adds a few MACs to every
# exit; a different architecture moves them by far more).
_FINGERPRINT_TOLERANCE = 0.05


def fingerprint(exit_macs, classes):
    """What identifies the network a policy is calibrated on (`exit_macs`
    None where they counted non-zero weights only: the class count alone)."""
    return {
        "classes": int(classes),
        "exit_macs": None if exit_macs is None else [int(m) for m in exit_macs],
    }


def _check_fingerprint_form(value, api):
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("classes"), int)
        or not isinstance(value.get("exit_macs"), (list, type(None)))
    ):
        raise ValueError(
            f"{api}: a policy's fingerprint holds its network's class count and "
            f"exits' MACs. Received: fingerprint={value!r}"
        )
    return value


def check_fingerprint(policy, exit_macs, classes, api):
    """Raises where `policy` was calibrated on another network than the one
    with these exits' cumulative MACs and class count (a hand-written policy,
    with no fingerprint, passes)."""
    known = getattr(policy, "fingerprint", None)
    if known is None:
        return
    same = classes is None or known["classes"] == int(classes)
    theirs = None
    if known["exit_macs"] is not None and exit_macs is not None:
        if None not in list(exit_macs):
            theirs = [int(m) for m in exit_macs]
            same = same and len(known["exit_macs"]) == len(theirs)
            same = same and all(
                abs(a - b) <= _FINGERPRINT_TOLERANCE * max(a, b, 1)
                for a, b in zip(known["exit_macs"], theirs)
            )
    if not same:
        raise ValueError(
            f"{api}: the policy was calibrated on another network "
            f"({known['classes']} classes, exits at {known['exit_macs']} MACs); "
            f"this one has {'?' if classes is None else int(classes)} classes and "
            f"exits at {theirs} MACs, so "
            "its thresholds would mean nothing here. Calibrate a policy on this "
            "network's own outputs (tfee.calibrate)."
        )


def check_policy(policy, num_exits, learned, api, exit_macs=None, classes=None):
    """Raises unless `policy` is a tfee policy a network can run.

    Args:
      policy: the policy to check.
      num_exits: the network's (or file's) number of exits.
      learned: per exit, whether its head outputs a learned confidence.
      api: the public API asking, for messages.
      exit_macs, classes: the network's exits' cumulative MACs and class
        count, to check the policy's fingerprint against (where known).

    Returns:
      The policy.

    Raises:
      TypeError: not a tfee policy.
      ValueError: a policy for another number of exits, or the learned rule
        where an exit that may let samples leave has no learned confidence.
    """
    if not isinstance(policy, Policy):
        raise TypeError(
            f"{api}: `policy` must be a tfee policy (tfee.ThresholdPolicy, "
            "tfee.PatiencePolicy, tfee.DecisionPolicy, e.g. from tfee.calibrate). "
            "Received: "
            f"policy={type(policy).__name__}"
        )
    if policy.num_exits != num_exits:
        raise ValueError(
            f"{api}: the policy is for {policy.num_exits} exits but the network "
            f"has {num_exits}. Calibrate a policy for this network. Received: "
            f"policy.num_exits={policy.num_exits}"
        )
    missing = [
        k + 1
        for k, threshold in enumerate(getattr(policy, "thresholds", ()))
        if threshold is not None and not learned[k]
    ]
    if policy.rule == "learned" and missing:
        raise ValueError(
            f"{api}: the policy uses rule='learned' but exits {missing} have no "
            "learned confidence (attach_exits(..., with_confidence=True)). "
            f"Received: policy={policy!r}"
        )
    if exit_macs is not None or classes is not None:
        check_fingerprint(policy, exit_macs, classes, api)
    return policy


def check_ensemble_classes(policy, classes, api):
    """Raises unless `policy`'s ensemble (if any) answers over `classes`: a
    generated firmware would compile with the wrong count (C++ zero-fills the
    missing biases) and answer wrongly."""
    ensemble = getattr(policy, "ensemble", None)
    if ensemble is not None and ensemble.num_classes != classes:
        raise ValueError(
            f"{api}: `policy.ensemble` answers over {ensemble.num_classes} classes "
            f"but the network has {classes}; calibrate the policy on this "
            f"network's outputs. Received: policy.ensemble={ensemble!r}"
        )
    return policy


def load_policy(path):
    """Reads a policy written by `policy.save(path)` (or JSON text).

    Example:
      >>> policy.save("policy.json"); tfee.load_policy("policy.json") == policy
      True
    """
    return Policy.from_json(path)
