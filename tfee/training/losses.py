"""Per-exit losses for `model.compile`: weighted joint cross-entropy (BranchyNet, SDN)."""

import warnings

import numpy as np

from tfee import naming
from tfee._keras import keras
from tfee._keras import tf
from tfee.training._wrapper import class_indices
from tfee.training._wrapper import output_roles
from tfee.training._wrapper import require_trainable

__all__ = ["ExitCrossEntropy", "SDN_MAX_WEIGHTS", "exit_weights", "joint"]

# SDN's final weights for internal classifiers 1..6 (Kaya et al., ICML 2019).
SDN_MAX_WEIGHTS = (0.15, 0.3, 0.45, 0.6, 0.75, 0.9)


@keras.saving.register_keras_serializable(package="tfee")
class ExitCrossEntropy(keras.losses.Loss):
    """Sparse categorical cross-entropy on one exit's logits, times a weight.

    The weight lives in a non-trainable variable so that a callback (such as
    `tfee.training.callbacks.SDNRamp`) can change it during `fit`.

    Args:
      weight: a non-negative float.
      name: the loss name.
    """

    def __init__(self, weight=1.0, name="exit_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        _check_weight(weight, "weight", "ExitCrossEntropy")
        self.weight = tf.Variable(float(weight), trainable=False, dtype=tf.float32)

    def call(self, y_true, y_pred):
        per_sample = keras.losses.sparse_categorical_crossentropy(
            class_indices(y_true, y_pred.shape[-1]), y_pred, from_logits=True
        )
        return self.weight * per_sample

    def get_config(self):
        config = super().get_config()
        config.update(weight=float(self.weight.numpy()))
        return config


def _check_weight(value, argument, api):
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.floating, np.integer))
        or not np.isfinite(value)
        or value < 0
    ):
        raise ValueError(
            f"{api}: `{argument}` must be a finite number >= 0. "
            f"Received: {argument}={value!r}"
        )


def _exit_outputs(network):
    """(output name, tfee exit name) pairs; tfmot-wrapped names count too."""
    return [
        (name, role)
        for name, role in zip(network.output_names, output_roles(network))
        if role and naming.exit_number(role)
    ]


def exit_weights(names, weights, api):
    """Per-exit loss weights, shallowest first, from a joint-loss `weights`.

    "uniform": 1.0 each; "sdn": internal exits start at 0.01 (the `SDNRamp`
    callback ramps them to SDN's 0.15, 0.30, ...), the deepest exit 1.0; or a
    list of one non-negative number per exit (BranchyNet's fixed weights).
    """
    if isinstance(weights, str):
        if weights == "uniform":
            return [1.0] * len(names)
        if weights == "sdn":
            return [0.01] * (len(names) - 1) + [1.0]
        raise ValueError(
            f"{api}: `weights` must be 'uniform', 'sdn' or a list of "
            f"{len(names)} non-negative numbers. Received: weights={weights!r}"
        )
    try:
        values = list(weights)
    except TypeError:
        raise ValueError(
            f"{api}: `weights` must be 'uniform', 'sdn' or a list of "
            f"{len(names)} non-negative numbers. Received: weights={weights!r}"
        ) from None
    if len(values) != len(names):
        raise ValueError(
            f"{api}: `weights` needs one weight per exit ({len(names)} "
            f"for {names}). Received: {len(values)} weights {values!r}"
        )
    for value in values:
        _check_weight(value, "weights", api)
    return [float(v) for v in values]


def joint(network, weights="uniform"):
    """The joint training loss as a `compile(loss=...)` dict, one entry per exit.

    Args:
      network: a tfee early-exit network.
      weights: "uniform" (every exit 1.0), "sdn" (internal exits start near 0
        and are ramped to SDN's 0.15, 0.30, ... by the `SDNRamp` callback; the
        deepest exit stays 1.0), or a list of one non-negative weight per exit
        (BranchyNet's fixed weights).

    Returns:
      {exit name: ExitCrossEntropy}. Learned-confidence outputs get no loss here.

    Raises:
      ValueError: `weights` is unknown, of the wrong length or negative, or
        the network has no trainable weights left.

    Example:
      >>> net.compile("adam", loss=tfee.losses.joint(net, "sdn"), metrics=["accuracy"])
      >>> net.fit(train, epochs=30, callbacks=[tfee.callbacks.SDNRamp()])
    """
    outputs = _exit_outputs(network)
    names = [role for _, role in outputs]
    require_trainable(network, "tfee.losses.joint")
    values = exit_weights(names, weights, "tfee.losses.joint")
    learned = [
        name
        for name, role in zip(network.output_names, output_roles(network))
        if role
        and naming.parse_output(role)
        and naming.parse_output(role)[0] == naming.CONFIDENCE
    ]
    if learned and any(layer.trainable for layer in network.layers):
        # Keras gives an output's loss only that output: the joint loss cannot
        # tell a confidence whether its exit was right, so it gets no gradient.
        warnings.warn(
            f"tfee.losses.joint: the learned confidences {learned} get no loss "
            "here and stay at their initial weights (Keras warns 'Gradients do "
            "not exist'); a policy with rule='learned' would then decide on "
            "noise. Train them with tfee.EENet, or attach the exits "
            "with with_confidence=False.",
            stacklevel=2,
        )
    return {
        name: ExitCrossEntropy(value, name=f"{role}_cross_entropy")
        for (name, role), value in zip(outputs, values)
    }
