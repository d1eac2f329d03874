"""Per-exit and ensemble accuracy, before and after compression."""

import dataclasses
import re

import numpy as np

__all__ = ["ExitAccuracy", "exit_accuracy", "logits_accuracy"]


@dataclasses.dataclass(frozen=True)
class ExitAccuracy:
    """Top-1 accuracy of every exit, and of their ensemble.

    Attributes:
      exits: {exit name: accuracy}, shallowest first.
      ensemble: accuracy of the mean of the exits' softmax probabilities
        (ESCEPE's "ensemble" accuracy).
    """

    exits: dict
    ensemble: float


def _softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def exit_accuracy(network, dataset):
    """Per-exit and ensemble accuracy of an early-exit network on (images, labels).

    Args:
      network: a tfee early-exit network (outputs exit_1..exit_K), also one
        wrapped by tfmot for quantization-aware training.
      dataset: a tf.data.Dataset of (images, labels) batches.

    Returns:
      An `ExitAccuracy`.

    Raises:
      ValueError: `network` has no exit_k outputs.
    """
    names = sorted(
        (n for n in network.output_names if re.fullmatch(r"exit_\d+", n)),
        key=lambda n: int(n.split("_")[1]),
    )
    if not names:
        raise ValueError(
            "tfee.compress.exit_accuracy: `network` must have outputs named "
            f"exit_1..exit_K. Received outputs: {list(network.output_names)}"
        )
    labels = np.concatenate([np.asarray(y) for _, y in dataset]).reshape(-1)
    outputs = network.predict(dataset, verbose=0)
    outputs = dict(zip(network.output_names, outputs))
    return logits_accuracy([np.asarray(outputs[name]) for name in names], labels)


def logits_accuracy(logits, labels):
    """`ExitAccuracy` of per-exit logits computed elsewhere, e.g. by a .tflite.

    Args:
      logits: a list of K arrays (n, classes), exit_1 first (such as
        `tfee.export.Cascade(path).exit_logits(images)`).
      labels: integer labels (n,).

    Returns:
      An `ExitAccuracy` with exits named exit_1..exit_K.
    """
    labels = np.asarray(labels).reshape(-1)
    exits = {
        f"exit_{k}": float(np.mean(np.argmax(x, -1) == labels))
        for k, x in enumerate(logits, 1)
    }
    ensemble = np.mean([_softmax(np.asarray(x)) for x in logits], axis=0)
    return ExitAccuracy(exits, float(np.mean(np.argmax(ensemble, -1) == labels)))
