"""The learned exit ensemble (Zero Time Waste): each exit answers with a
weighted combination of the log-softmax of the exits so far.

Wołczyk et al. (NeurIPS 2021) let exit k answer with a learned geometric
ensemble of exits 1..k, so an exit does not waste what the earlier ones
computed. Here the combination is a property of the policy, not of the
graph: every runtime already sees each exit's logits in order, so the
answer is C multiply-adds per exit in the decision loop (`tfee.rules`'
`ensemble_answer`, and `tfee_ensemble` in the firmware), and the stage
signatures keep one input. A policy with an ensemble decides on, and
answers with, the ensemble's logits.
"""

import numpy as np

from tfee import rules
from tfee._checks import check_finite_array

__all__ = ["ExitEnsemble"]


class ExitEnsemble:
    """Per exit k, answer_k = biases[k] + sum_(j <= k) weights[k, j] *
    log_softmax(logits_j).

    Args:
      weights: (K, K) finite numbers, zero above the diagonal (an exit reads
        only itself and the exits before it).
      biases: (K, classes) finite numbers.

    Raises:
      ValueError: other shapes, non-finite values, or weights on later exits.
    """

    def __init__(self, weights, biases):
        api = "tfee.policy.ExitEnsemble"
        weights = np.asarray(weights, dtype=np.float64)
        count = weights.shape[0] if weights.ndim == 2 else -1
        weights = check_finite_array(weights, (count, count), "weights", api)
        biases = np.asarray(biases, dtype=np.float64)
        classes = biases.shape[-1] if biases.ndim == 2 and biases.shape[-1] >= 2 else -1
        biases = check_finite_array(biases, (count, classes), "biases", api)
        if np.any(np.triu(weights, 1)):
            raise ValueError(
                f"{api}: `weights[k, j]` must be 0 for j > k: exit k can only read "
                "the exits before it. Received: non-zero weights above the diagonal"
            )
        self.weights = weights
        self.biases = biases

    @property
    def num_exits(self):
        return len(self.weights)

    @property
    def num_classes(self):
        return self.biases.shape[-1]

    @classmethod
    def identity(cls, num_exits, num_classes):
        """Every exit answers with its own log-softmax (the same classes)."""
        return cls(np.eye(num_exits), np.zeros((num_exits, num_classes)))

    def step(self, exit_index, logits, history):
        """Exit `exit_index`'s answers; writes its log-softmax into
        `history[exit_index]` ((K, n, classes) float64, the caller's)."""
        history[exit_index] = rules.log_softmax(logits)
        k = exit_index
        return rules.ensemble_answer(
            history[: k + 1], self.weights[k, : k + 1], self.biases[k]
        )

    def answers(self, logits):
        """Every exit's answers, float32 (K, n, classes), from its logits."""
        history = rules.log_softmax(logits)
        return np.stack(
            [
                rules.ensemble_answer(
                    history[: k + 1], self.weights[k, : k + 1], self.biases[k]
                )
                for k in range(self.num_exits)
            ]
        )

    def outputs(self, outputs):
        """`ExitOutputs` whose logits are these answers (same labels, costs
        and learned confidences): what a policy with this ensemble sees."""
        import dataclasses

        return dataclasses.replace(outputs, logits=self.answers(outputs.logits))

    @classmethod
    def fit(cls, outputs, steps=300, learning_rate=0.5):
        """Fits each exit's weights and biases on validation outputs by
        gradient descent on the answer's cross-entropy, from the identity.

        Args:
          outputs: `ExitOutputs` of validation data.
          steps, learning_rate: full-batch gradient descent settings.
        """
        history = rules.log_softmax(outputs.logits)
        usable = np.isfinite(history).all(axis=(0, 2))
        history, labels = history[:, usable], outputs.labels[usable]
        count, samples, classes = history.shape
        weights = np.eye(count)
        biases = np.zeros((count, classes))
        rows = np.arange(samples)
        for k in range(count):
            w, b = weights[k, : k + 1].copy(), biases[k].copy()
            for _ in range(steps):
                answer = b + np.tensordot(w, history[: k + 1], axes=1)
                error = np.exp(rules.log_softmax(answer))
                error[rows, labels] -= 1.0
                error /= max(samples, 1)
                w -= learning_rate * np.einsum("jnc,nc->j", history[: k + 1], error)
                b -= learning_rate * error.sum(axis=0)
            weights[k, : k + 1], biases[k] = w, b
        return cls(weights, biases)

    def to_dict(self):
        return {"weights": self.weights.tolist(), "biases": self.biases.tolist()}

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict):
            raise ValueError(
                "tfee.policy.ExitEnsemble: expected {'weights': ..., 'biases': ...}. "
                f"Received: {type(data).__name__}"
            )
        return cls(data.get("weights"), data.get("biases"))

    def __eq__(self, other):
        return isinstance(other, ExitEnsemble) and self.to_dict() == other.to_dict()

    def __hash__(self):
        return hash(str(self.to_dict()))

    def __repr__(self):
        return f"ExitEnsemble({self.num_exits} exits, {self.num_classes} classes)"
