"""`DecisionPolicy`: the learned exit decision, a logistic model over the
signals seen so far, thresholded per exit (fitted by `tfee.policy.decision`)."""

import numpy as np

from tfee import rules
from tfee._checks import check_finite_array
from tfee.policy import _thresholds
from tfee.policy.base_policy import Policy

__all__ = ["DecisionPolicy"]


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
        clean = _thresholds.clean(thresholds, rules.DECISION, api)
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
        return _thresholds.first_passing(
            self.scores(logits), _thresholds.as_array(self.thresholds)
        )

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
        return cls._from_saved(
            data,
            data.get("thresholds", []),
            data.get("weights"),
            data.get("biases"),
        )

    def __repr__(self):
        shown = _thresholds.text(self.thresholds)
        return (
            f"DecisionPolicy([{shown}], weights of shape {self.weights.shape}"
            f"{self._ensemble_text()})"
        )
