"""EENet's cost-aware loss with learned confidences (Demir, 2019; PTEENet, 2022).

Every exit i has class probabilities y_i and a learned confidence h_i in
(0, 1); the deepest exit has h = 1. Combining from the deepest exit back,

    Y_i = h_i * y_i + (1 - h_i) * Y_{i+1}
    C_i = h_i * c_i + (1 - h_i) * C_{i+1}

is the prediction and expected cost of a sample that may leave at exit i or
later, where c_i is exit i's cost. Version "v1" minimises
NLL(Y_1) + lambda * mean(C_1); version "v2" sums that over every starting
exit (deepest included), as the authors' code does.
"""

import numpy as np

from tfee import cost
from tfee import naming
from tfee._keras import require_tf_keras
from tfee._keras import tf
from tfee.training._wrapper import ExitLossModel
from tfee.training._wrapper import exit_names

__all__ = ["EENet", "eenet_loss", "exit_costs"]

_EPSILON = 1e-7
_COSTS = ("fraction_of_full", "normalized")


def _confidence_of(exit_name):
    return naming.confidence_name(naming.exit_number(exit_name))


def exit_costs(network, costs="fraction_of_full"):
    """Per-exit cost fractions c_i for the EENet loss, shallowest first.

    Args:
      network: a tfee early-exit network.
      costs: "fraction_of_full": `tfee.cost.analyze(network).exits[i]
        .fraction_of_full`, the MACs of a sample leaving at exit i (backbone
        up to it plus every head evaluated on the way) over the backbone's
        MACs, so the deepest exit is slightly above 1; "normalized": the same
        cumulative MACs divided by the deepest exit's, so the deepest is
        exactly 1 (EENet's convention); or a list of one non-negative number
        per exit.

    Returns:
      A tuple of floats, one per exit.
    """
    api = "tfee.training.exit_costs"
    names = exit_names(network)
    if isinstance(costs, str):
        if costs not in _COSTS:
            raise ValueError(
                f"{api}: `costs` must be one of {_COSTS} or a list of {len(names)} "
                f"non-negative numbers. Received: costs={costs!r}"
            )
        fractions = [e.fraction_of_full for e in cost.analyze(network).exits]
        if costs == "normalized":
            fractions = [f / fractions[-1] for f in fractions]
        return tuple(float(f) for f in fractions)
    values = list(costs)
    if len(values) != len(names) or any(
        isinstance(v, bool)
        or not isinstance(v, (int, float, np.integer, np.floating))
        or not np.isfinite(v)
        or v < 0
        for v in values
    ):
        raise ValueError(
            f"{api}: `costs` needs one finite non-negative number per exit "
            f"({len(names)} for {names}). Received: costs={values!r}"
        )
    return tuple(float(v) for v in values)


def eenet_loss(targets, logits, confidences, costs, lam, version="v1"):
    """The EENet loss per sample, from every exit's logits and confidence.

    Args:
      targets: int labels (batch,).
      logits: list of K (batch, classes) logits tensors, shallowest first.
      confidences: list of K-1 (batch, 1) confidences in (0, 1) for exits
        1..K-1 (the deepest exit's confidence is 1).
      costs: K cost fractions, shallowest first.
      lam: the cost penalty lambda >= 0.
      version: "v1" or "v2".

    Returns:
      (per-sample loss, per-sample NLL term, per-sample expected cost C_1),
      each of shape (batch,).
    """
    if len(confidences) != len(logits) - 1 or len(costs) != len(logits):
        raise ValueError(
            "tfee.training.eenet_loss: needs K logits, K-1 confidences and K costs. "
            f"Received: {len(logits)} logits, {len(confidences)} confidences, "
            f"{len(costs)} costs"
        )
    depth = tf.one_hot(targets, tf.shape(logits[-1])[-1], dtype=logits[-1].dtype)
    probabilities = tf.nn.softmax(logits[-1])
    expected = tf.fill(tf.shape(targets), tf.cast(costs[-1], logits[-1].dtype))

    def nll(p):
        return -tf.math.log(
            tf.clip_by_value(tf.reduce_sum(p * depth, -1), _EPSILON, 1.0)
        )

    prediction = nll(probabilities)
    total = prediction + lam * expected
    for i in range(len(logits) - 2, -1, -1):
        h = tf.reshape(tf.cast(confidences[i], probabilities.dtype), [-1, 1])
        probabilities = h * tf.nn.softmax(logits[i]) + (1.0 - h) * probabilities
        expected = h[:, 0] * costs[i] + (1.0 - h[:, 0]) * expected
        prediction = nll(probabilities)
        if version == "v2":
            total += prediction + lam * expected
    if version == "v1":
        total = prediction + lam * expected
    return total, prediction, expected


class EENet(ExitLossModel):
    """Trains an early-exit network with EENet's cost-aware loss, via `fit`.

    Wraps the functional network (its variables are trained in place: after
    `fit`, use or save `network` itself). Every exit but the deepest needs a
    learned confidence (`attach_exits(..., with_confidence=True)`); for
    PTEENet's post-trained mode attach with `freeze_backbone=True` too.
    Logs `loss`, `prediction_loss` (the NLL part), `expected_cost` (mean
    C_1, the cost fraction the confidences would spend) and every exit's
    accuracy against the labels as `exit_k_accuracy`.

    Args:
      network: a tfee early-exit network with confidence outputs.
      lam: the cost penalty lambda >= 0 (PTEENet uses 0.9 on CIFAR-10).
      version: "v1" (loss from the first exit) or "v2" (summed over every
        starting exit).
      costs: per-exit costs, see `tfee.training.exit_costs` (default
        "fraction_of_full": cumulative MACs including heads / backbone MACs).
      targets: "labels"; "backbone" (the network's deepest exit's argmax,
        gradient stopped: agreement with the backbone, as in PTEENet); or a
        tf_keras model whose (single or last) output's argmax is the target.

    Example:
      >>> net = tfee.attach_exits(backbone, placement, head="conv",
      ...                         with_confidence=True, freeze_backbone=True)
      >>> trainer = tfee.EENet(net, lam=0.9, targets="backbone")
      >>> trainer.compile(optimizer=keras.optimizers.Adam(5e-4))
      >>> trainer.fit(train, validation_data=val, epochs=30)
      >>> net.save("pteenet.keras")

    The wrapper itself is not saved as a model: save `network`, or use
    `keras.callbacks.ModelCheckpoint(..., save_weights_only=True)` on it.
    """

    def __init__(
        self,
        network,
        lam=1.0,
        version="v1",
        costs="fraction_of_full",
        targets="labels",
        **kwargs,
    ):
        api = "tfee.EENet"
        super().__init__(
            network,
            api,
            extra_metrics=("prediction_loss", "expected_cost"),
            name=kwargs.pop("name", "eenet"),
            **kwargs,
        )
        if (
            isinstance(lam, bool)
            or not isinstance(lam, (int, float, np.integer, np.floating))
            or not np.isfinite(lam)
            or lam < 0
        ):
            raise ValueError(
                f"{api}: `lam` (the cost penalty lambda) must be a finite number "
                f">= 0. Received: lam={lam!r}"
            )
        if version not in ("v1", "v2"):
            raise ValueError(
                f"{api}: `version` must be 'v1' or 'v2'. Received: version={version!r}"
            )
        missing = [
            n
            for n in self._exit_names[:-1]
            if _confidence_of(n) not in self._output_index
        ]
        if missing:
            raise ValueError(
                f"{api}: every exit but the deepest needs a learned confidence "
                "output; attach the heads with `with_confidence=True`. Exits "
                f"without one: {missing}"
            )
        if isinstance(targets, str):
            if targets not in ("labels", "backbone"):
                raise ValueError(
                    f"{api}: `targets` must be 'labels', 'backbone' or a tf_keras "
                    f"model. Received: targets={targets!r}"
                )
        else:
            require_tf_keras(targets, "targets", api, expected="model")
        self.network = network
        self.lam = float(lam)
        self.version = version
        self.costs = exit_costs(network, costs)
        self.targets = targets

    def _network(self):
        return self.network

    def _per_sample_losses(self, x, y, outputs, training):
        logits = self._exit_logits(outputs)
        confidences = [
            self._output(outputs, _confidence_of(n)) for n in self._exit_names[:-1]
        ]
        if self.targets == "labels":
            targets = y
        elif self.targets == "backbone":
            targets = tf.argmax(tf.stop_gradient(logits[-1]), -1, output_type=tf.int32)
        else:
            reference = self.targets(x, training=False)
            if isinstance(reference, (list, tuple)):
                reference = reference[-1]
            targets = tf.argmax(tf.stop_gradient(reference), -1, output_type=tf.int32)
        total, prediction, expected = eenet_loss(
            targets, logits, confidences, self.costs, self.lam, self.version
        )
        return {
            "loss": total,
            "prediction_loss": prediction,
            "expected_cost": expected,
        }
