"""Per-exit and ensemble top-1 accuracy of an early-exit network.

The one per-exit accuracy API: `exit_accuracy(network, dataset)` for a Keras
network (also one wrapped by tfmot), `ExitAccuracy.from_logits` for logits
computed elsewhere, such as by a .tflite file.
"""

import dataclasses

import numpy as np

from tfee import naming
from tfee import rules

__all__ = ["ExitAccuracy", "exit_accuracy"]


@dataclasses.dataclass(frozen=True)
class ExitAccuracy:
    """Top-1 accuracy of every exit, and of their ensemble.

    Attributes:
      exits: {"exit_k": accuracy}, shallowest first.
      ensemble: accuracy of the mean of the exits' softmax probabilities
        (ESCEPE's "ensemble" accuracy).
    """

    exits: dict
    ensemble: float

    @classmethod
    def from_logits(cls, logits, labels):
        """`ExitAccuracy` of per-exit logits computed elsewhere, e.g. by a .tflite.

        Args:
          logits: a sequence of K arrays (n, classes), exit_1 first.
          labels: integer labels, n of them (shape (n,) or (n, 1)).

        Returns:
          An `ExitAccuracy` with exits named exit_1..exit_K.

        Raises:
          ValueError: no logits, or their sample counts differ from the labels'.

        Example:
          >>> ExitAccuracy.from_logits([[[2.0, 0.0]], [[0.0, 1.0]]], [0]).exits
          {'exit_1': 1.0, 'exit_2': 0.0}
        """
        counts = _Counts(len(logits), "tfee.policy.ExitAccuracy.from_logits")
        counts.add(logits, labels)
        return counts.result()

    def per_exit(self):
        """The exits' accuracies as a (K,) array, exit_1 first."""
        return np.array(list(self.exits.values()))

    def to_dict(self):
        """{"exits": {...}, "ensemble": ...}, ready for JSON."""
        return {"exits": dict(self.exits), "ensemble": self.ensemble}


def exit_accuracy(network, dataset):
    """Per-exit and ensemble accuracy of an early-exit network.

    The dataset is iterated once and each batch's images and labels are used
    together, so a dataset that reshuffles on every iteration scores the same
    as the same samples in a fixed order.

    Args:
      network: a Keras early-exit network with `exit_k` logits outputs, also
        one wrapped by tfmot (`prune_low_magnitude_exit_1`, `quant_exit_1`...).
      dataset: a `tf.data.Dataset` (or any iterable) of (images, labels)
        batches.

    Returns:
      An `ExitAccuracy` with exits named exit_1..exit_K.

    Raises:
      ValueError: `network` has no exit outputs, a batch is not (images,
        labels), or `dataset` is empty.

    Example:
      >>> accuracy = tfee.exit_accuracy(network, test)
      >>> accuracy.exits["exit_1"], accuracy.ensemble
    """
    api = "tfee.exit_accuracy"
    positions = _exit_positions(network, api)
    counts = _Counts(len(positions), api)
    for batch in dataset:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise ValueError(
                f"{api}: `dataset` must yield (images, labels) batches. "
                f"Received a batch: {_describe(batch)}"
            )
        images, labels = batch
        outputs = network(images, training=False)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        counts.add([np.asarray(outputs[i]) for i in positions], labels)
    return counts.result()


def _exit_positions(network, api):
    """Indices of the exit outputs in `network.outputs`, exit_1 first."""
    numbered = []
    for position, name in enumerate(network.output_names):
        parsed = naming.parse_output(name)
        if parsed is not None and parsed[0] == naming.EXIT:
            numbered.append((parsed[1], position))
    if not numbered:
        raise ValueError(
            f"{api}: `network` must have outputs named exit_1..exit_K (tfmot "
            f"prefixes allowed). Received outputs: {list(network.output_names)}"
        )
    numbers = [k for k, _ in sorted(numbered)]
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(
            f"{api}: `network`'s exits must be numbered 1..K once each. "
            f"Received exit numbers: {numbers}"
        )
    return [position for _, position in sorted(numbered)]


class _Counts:
    """Correct predictions per exit and of the ensemble, summed over batches."""

    def __init__(self, num_exits, api):
        if num_exits < 1:
            raise ValueError(
                f"{api}: `logits` must hold at least one exit's logits. "
                f"Received {num_exits}"
            )
        self.api = api
        self.correct = np.zeros(num_exits, dtype=np.int64)
        self.ensemble = 0
        self.samples = 0

    def add(self, logits, labels):
        logits = [np.asarray(x, dtype=np.float64) for x in logits]
        labels = np.asarray(labels).reshape(-1)
        for k, x in enumerate(logits, 1):
            if x.ndim != 2 or len(x) != len(labels):
                raise ValueError(
                    f"{self.api}: exit {k}'s logits must have shape (n, classes) "
                    f"with n = {len(labels)} labels. Received shape {x.shape}"
                )
        # Non-finite logits answer no class (tfee.rules.predictions).
        self.correct += [np.sum(rules.predictions(x) == labels) for x in logits]
        ensemble = np.mean([_softmax(x) for x in logits], axis=0)
        self.ensemble += int(np.sum(rules.predictions(ensemble) == labels))
        self.samples += len(labels)

    def result(self):
        if not self.samples:
            raise ValueError(f"{self.api}: no samples to score (the data is empty)")
        return ExitAccuracy(
            exits={
                naming.exit_name(k): float(c / self.samples)
                for k, c in enumerate(self.correct, 1)
            },
            ensemble=float(self.ensemble / self.samples),
        )


def _describe(batch):
    if isinstance(batch, (tuple, list)):
        return f"a {type(batch).__name__} of {len(batch)} elements"
    return f"a {type(batch).__name__}"


def _softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)
