"""Cached per-exit outputs: one pass over a dataset, reused by every policy.

Evaluating or calibrating a policy never reruns the network: it needs each
exit's logits, the learned confidences, the labels and each exit's cost, all
collected once by `collect_outputs`.
"""

import dataclasses

import numpy as np

from tfee import cost
from tfee import rules
from tfee import structure as structure_lib
from tfee._files import write_atomically
from tfee._keras import keras
from tfee._keras import tf
from tfee.policy.accuracy import ExitAccuracy

__all__ = ["ExitOutputs", "collect_outputs"]


@dataclasses.dataclass(frozen=True, eq=False)
class ExitOutputs:
    """Every exit's outputs over a dataset, with labels and per-exit cost.

    Attributes:
      logits: float array (K, samples, classes), shallowest exit first.
      confidences: float array (K, samples) of learned confidences, NaN where
        an exit has no confidence head; None if no head learns one.
      labels: int array (samples,).
      exit_macs: int array (K,): MACs of a sample that leaves at exit k
        (backbone up to exit k plus every head on the way).
      full_macs: MACs of the backbone alone (the "full network").
      sparse_macs: whether the MACs count non-zero weights only
        (`collect_outputs(..., sparse=True)`): they then say nothing of the
        architecture, and calibrated policies leave them out of their
        fingerprint.
    """

    logits: np.ndarray
    confidences: np.ndarray
    labels: np.ndarray
    exit_macs: np.ndarray
    full_macs: int
    sparse_macs: bool = False

    def __post_init__(self):
        api = "tfee.policy.ExitOutputs"
        logits = np.asarray(self.logits)
        labels = np.asarray(self.labels).reshape(-1)
        exit_macs = np.asarray(self.exit_macs, dtype=np.int64).reshape(-1)
        if logits.ndim != 3:
            raise ValueError(
                f"{api}: `logits` must have shape (exits, samples, classes). "
                f"Received: logits.shape={logits.shape}"
            )
        if logits.shape[1] == 0:
            raise ValueError(
                f"{api}: the dataset is empty (0 samples); evaluation and "
                "calibration need at least one labelled sample."
            )
        if len(labels) != logits.shape[1]:
            raise ValueError(
                f"{api}: {logits.shape[1]} samples of logits but {len(labels)} "
                "labels."
            )
        classes = logits.shape[2]
        if labels.dtype.kind == "f" and np.all(np.isfinite(labels)):
            if np.array_equal(labels, np.round(labels)):  # 3.0 means class 3.
                labels = labels.astype(np.int64)
        if labels.dtype.kind not in "iu" or (
            len(labels) and (labels.min() < 0 or labels.max() >= classes)
        ):
            raise ValueError(
                f"{api}: `labels` must be integer class indices in [0, {classes}) "
                "(one-hot labels: take their argmax); the exits answer "
                f"{classes} classes. Received: labels of dtype {labels.dtype} in "
                f"[{labels.min()}, {labels.max()}]"
            )
        if len(exit_macs) != logits.shape[0]:
            raise ValueError(
                f"{api}: `exit_macs` needs one value per exit ({logits.shape[0]}). "
                f"Received: {len(exit_macs)} values"
            )
        if not int(self.full_macs) > 0:
            raise ValueError(
                f"{api}: `full_macs` must be positive. Received: {self.full_macs!r}"
            )
        confidences = self.confidences
        if confidences is not None:
            confidences = np.asarray(confidences, dtype=np.float64)
            if confidences.shape != logits.shape[:2]:
                raise ValueError(
                    f"{api}: `confidences` must have shape {logits.shape[:2]}. "
                    f"Received: {confidences.shape}"
                )
        object.__setattr__(self, "logits", logits)
        object.__setattr__(self, "labels", labels.astype(np.int64))
        object.__setattr__(self, "exit_macs", exit_macs)
        object.__setattr__(self, "full_macs", int(self.full_macs))
        object.__setattr__(self, "confidences", confidences)

    @property
    def num_exits(self):
        return self.logits.shape[0]

    @property
    def num_samples(self):
        return self.logits.shape[1]

    def correct(self):
        """Bool array (K, samples): exit k's arg-max equals the label."""
        return rules.predictions(self.logits) == self.labels[None]

    def exit_accuracy(self):
        """Each exit's accuracy over every sample, and the ensemble's: the
        `ExitAccuracy` that `tfee.exit_accuracy(network, dataset)` returns."""
        return ExitAccuracy.from_logits(list(self.logits), self.labels)

    def save(self, path):
        """Writes an .npz atomically; read back with `ExitOutputs.load`."""
        arrays = dict(
            logits=self.logits,
            labels=self.labels,
            exit_macs=self.exit_macs,
            full_macs=np.int64(self.full_macs),
            sparse_macs=np.bool_(self.sparse_macs),
        )
        if self.confidences is not None:
            arrays["confidences"] = self.confidences

        def write(partial):
            with open(partial, "wb") as f:  # A file object: savez adds no suffix.
                np.savez(f, **arrays)

        write_atomically(path, write)

    @classmethod
    def load(cls, path):
        with np.load(path) as stored:
            return cls(
                logits=stored["logits"],
                confidences=stored["confidences"] if "confidences" in stored else None,
                labels=stored["labels"],
                exit_macs=stored["exit_macs"],
                full_macs=int(stored["full_macs"]),
                sparse_macs=(
                    bool(stored["sparse_macs"]) if "sparse_macs" in stored else False
                ),
            )


def collect_outputs(network, dataset, sparse=False):
    """Runs `network` once over `dataset` and caches every exit's outputs.

    Args:
      network: a tfee early-exit network (outputs exit_1..exit_K, then
        confidence_k where heads learn one).
      dataset: a `tf.data.Dataset` of (images, labels) batches, or an
        (images, labels) pair of arrays.
      sparse: count MACs of non-zero weights only (after pruning).

    Returns:
      An `ExitOutputs`.

    Raises:
      ValueError: `network` is not an early-exit network, or the dataset is
        empty or has no labels.

    Example:
      >>> outputs = tfee.collect_outputs(net, val_ds)
      >>> tfee.evaluate(outputs, policy=policy).accuracy
    """
    api = "tfee.collect_outputs"
    structure = structure_lib.read_structure(network, api)
    images, labels = _split_dataset(dataset, api, network.inputs[0].shape.rank)
    exits = structure.exits
    report = cost.analyze(structure, sparse=sparse)
    names = network.output_names
    if images is not None:
        predicted = network.predict(images, verbose=0)
    else:
        # One pass that keeps images and labels together, even if the dataset
        # reshuffles each iteration.
        forward = tf.function(
            lambda x: network(x, training=False), reduce_retracing=True
        )
        batches, labels = [], []
        for batch_images, batch_labels in dataset:
            batches.append(forward(batch_images))
            labels.append(np.asarray(batch_labels).reshape(-1))
        if not batches:
            raise ValueError(f"{api}: the dataset is empty (0 batches).")
        predicted = [
            np.concatenate([np.asarray(b[i]) for b in batches])
            for i in range(len(names))
        ]
        labels = np.concatenate(labels)
    if not isinstance(predicted, list):
        predicted = [predicted]
    by_name = dict(zip(names, predicted))
    logits = np.stack([np.asarray(by_name[e.name]) for e in exits])
    confidences = None
    if any(e.confidence for e in exits):
        confidences = np.full(logits.shape[:2], np.nan)
        for k, e in enumerate(exits):
            if e.confidence:
                confidences[k] = np.asarray(by_name[e.confidence]).reshape(-1)
    return ExitOutputs(
        logits=logits,
        confidences=confidences,
        labels=labels,
        exit_macs=[e.cumulative_macs for e in report.exits],
        full_macs=report.full_macs,
        sparse_macs=bool(sparse),
    )


def _split_dataset(dataset, api, rank):
    """(images, labels) arrays, or (None, None) for a tf.data dataset; `rank`
    is the network input's, batch axis included."""
    if isinstance(dataset, tf.data.Dataset):
        spec = dataset.element_spec
        if not (isinstance(spec, tuple) and len(spec) >= 2):
            raise ValueError(
                f"{api}: `dataset` must yield (images, labels) batches. "
                f"Received element_spec={spec}"
            )
        if getattr(spec[0], "shape", None) is not None and spec[0].shape.rank == (
            rank - 1
        ):
            raise ValueError(
                f"{api}: `dataset` yields single images; batch it first, e.g. "
                f"dataset.batch(64). Received: images of shape {spec[0].shape}"
            )
        return None, None
    if isinstance(dataset, (tuple, list)) and len(dataset) == 2:
        images, labels = (np.asarray(a) for a in dataset)
        if len(images) == 0:
            raise ValueError(f"{api}: the dataset is empty (0 samples).")
        if len(images) != len(labels):
            raise ValueError(f"{api}: {len(images)} images but {len(labels)} labels.")
        return images, labels.reshape(-1)
    if isinstance(dataset, keras.utils.Sequence):
        raise TypeError(f"{api}: keras Sequences are not supported; use tf.data.")
    raise TypeError(
        f"{api}: `dataset` must be a tf.data.Dataset of (images, labels) batches "
        f"or an (images, labels) pair of arrays. Received: {type(dataset).__name__}"
    )
