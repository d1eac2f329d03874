"""The `Policy` base class: streaming and vectorised decisions, and its JSON
form (`to_json` / `from_json`, `save` / `load_policy`).

The kinds of policy (threshold, patience, the learned decision) are
described in `tfee.policy.policies`.
"""

import json
import numbers
import os

import numpy as np

from tfee._checks import check_int
from tfee._files import write_bytes_atomically
from tfee.policy.ensemble import ExitEnsemble

__all__ = ["Policy", "load_policy"]

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


def _ensemble_from(data):
    """The `ExitEnsemble` a policy's dict holds, or None."""
    if data.get("ensemble") is None:
        return None
    return ExitEnsemble.from_dict(data["ensemble"])


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


class Policy:
    """Base class of exit policies; see `tfee.policy.policies` for the kinds.

    Subclasses implement `_decide(state, rows, exit_index, logits, confidence)`
    returning the leave mask of the given rows and a dict of the state fields
    it changed (whole-batch arrays), `exit_indices`, and `to_dict` /
    `_from_dict` (which may build the policy with `_from_saved`).
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
        # The kinds subclass Policy, so their table is read once they exist.
        from tfee.policy import policies

        kinds = {c.kind: c for c in policies.KINDS}
        if data.get("type") not in kinds:
            raise ValueError(
                f"{api}: unknown policy type, expected one of {sorted(kinds)}. "
                f"Received: type={data.get('type')!r}"
            )
        policy = kinds[data["type"]]._from_dict(data)
        if data.get("fingerprint") is not None:
            policy.fingerprint = _check_fingerprint_form(data["fingerprint"], api)
        return policy

    @classmethod
    def _from_saved(cls, data, *args, **kwargs):
        """`cls(*args, **kwargs)` with the ensemble a saved policy holds,
        checked against the exit count the file states."""
        policy = cls(*args, ensemble=_ensemble_from(data), **kwargs)
        if "num_exits" in data and data["num_exits"] != policy.num_exits:
            raise ValueError(
                "tfee.policy.Policy.from_json: the file says num_exits="
                f"{data['num_exits']} but holds settings for {policy.num_exits} "
                "exits."
            )
        return policy

    def __eq__(self, other):
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    def __hash__(self):
        return hash(self.to_json())


def load_policy(path):
    """Reads a policy written by `policy.save(path)` (or JSON text).

    Example:
      >>> policy.save("policy.json"); tfee.load_policy("policy.json") == policy
      True
    """
    return Policy.from_json(path)
