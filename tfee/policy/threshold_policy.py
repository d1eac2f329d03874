"""`ThresholdPolicy`: leave at the first exit whose confidence under a rule
reaches that exit's threshold."""

import numbers

import numpy as np

from tfee import rules
from tfee._checks import check_int
from tfee.policy import _thresholds
from tfee.policy.base_policy import Policy

__all__ = ["ThresholdPolicy"]


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
        clean = _thresholds.clean(thresholds, rule, api)
        super().__init__(len(clean) + 1, ensemble)
        self.thresholds = clean
        self.rule = rule

    @classmethod
    def shared(cls, threshold, num_exits, rule="max_softmax"):
        """One threshold for every exit but the deepest (SDN's setting)."""
        num_exits = check_int(num_exits, "num_exits", "tfee.ThresholdPolicy.shared")
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
        return _thresholds.first_passing(scores, _thresholds.as_array(self.thresholds))

    def to_dict(self):
        return {
            **self._header(),
            "rule": self.rule,
            "thresholds": list(self.thresholds),
            **self._ensemble_dict(),
        }

    @classmethod
    def _from_dict(cls, data):
        return cls._from_saved(data, data.get("thresholds", []), rule=data.get("rule"))

    def __repr__(self):
        shown = _thresholds.text(self.thresholds)
        return f"ThresholdPolicy([{shown}], rule={self.rule!r}{self._ensemble_text()})"
