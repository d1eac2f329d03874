"""The learned exit ensemble (Zero Time Waste): each exit answers with a
weighted combination of the log-softmax of the exits so far.

Wołczyk et al. (NeurIPS 2021) let exit k answer with a learned geometric
ensemble of exits 1..k, so an exit does not waste what the earlier ones
computed. Here the combination is a property of the policy, not of the
graph: every runtime already sees each exit's logits in order, so the
answer is C multiply-adds per exit in the decision loop (`tfee.rules`'
`ensemble_answer`, and `tfee_ensemble` in the firmware), and the stage
signatures gain no input for it. A policy with an ensemble decides on, and
answers with, the ensemble's logits.
"""

import numpy as np

from tfee import rules
from tfee._checks import check_finite_array

__all__ = ["ExitEnsemble"]


def _array(value, argument, api):
    """`value` as a float64 array; ragged or non-numeric input named."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{api}: `{argument}` must be a rectangular array of numbers. "
            f"Received: {argument}={value!r:.80}"
        ) from error


def _loss(history, labels, weights, bias):
    """Mean cross-entropy of the answers bias + weights . history."""
    answer = bias + np.tensordot(weights, history, axes=1)
    return -np.mean(rules.log_softmax(answer)[np.arange(len(labels)), labels])


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
        weights = _array(weights, "weights", api)
        count = weights.shape[0] if weights.ndim == 2 else -1
        weights = check_finite_array(weights, (count, count), "weights", api)
        biases = _array(biases, "biases", api)
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

    def _check_classes(self, logits):
        if np.shape(logits)[-1] != self.num_classes:
            raise ValueError(
                f"policy.ensemble: this ExitEnsemble answers over {self.num_classes} "
                f"classes but the network's exits have {np.shape(logits)[-1]}; fit "
                "it on this network's outputs (tfee.calibrate(..., ensemble=True))."
            )

    def step(self, exit_index, logits, history):
        """Exit `exit_index`'s answers; writes its log-softmax into
        `history[exit_index]` ((K, n, classes) float64, the caller's)."""
        self._check_classes(logits)
        history[exit_index] = rules.log_softmax(logits)
        k = exit_index
        return rules.ensemble_answer(
            history[: k + 1], self.weights[k, : k + 1], self.biases[k]
        )

    def answers(self, logits):
        """Every exit's answers, float32 (K, n, classes), from its logits."""
        self._check_classes(logits)
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

        Every step backtracks (halves its size) until the loss does not
        rise, so confident exits, whose log-softmax values are large, cannot
        make it diverge; an exit whose fit is no better than answering alone
        keeps the identity.

        Args:
          outputs: `ExitOutputs` of validation data.
          steps, learning_rate: gradient descent settings (the first size
            tried per step).
        """
        history = rules.log_softmax(outputs.logits)
        usable = np.isfinite(history).all(axis=(0, 2))
        history, labels = history[:, usable], outputs.labels[usable]
        count, samples, classes = history.shape
        weights = np.eye(count)
        biases = np.zeros((count, classes))
        rows = np.arange(samples)
        for k in range(count if samples else 0):
            mine = history[: k + 1]
            w, b = weights[k, : k + 1].copy(), biases[k].copy()
            start = loss = _loss(mine, labels, w, b)
            size = learning_rate
            for _ in range(steps):
                error = np.exp(rules.log_softmax(b + np.tensordot(w, mine, axes=1)))
                error[rows, labels] -= 1.0
                error /= samples
                grad_w = np.einsum("jnc,nc->j", mine, error)
                grad_b = error.sum(axis=0)
                while size > 1e-8:
                    trial_w, trial_b = w - size * grad_w, b - size * grad_b
                    trial = _loss(mine, labels, trial_w, trial_b)
                    if trial <= loss:
                        w, b, loss = trial_w, trial_b, trial
                        size = min(2 * size, learning_rate)
                        break
                    size /= 2
                else:
                    break  # No step lowers the loss: converged.
            if loss < start:
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
