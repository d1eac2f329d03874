"""One call per training mode: joint, EENet cost-aware, distillation.

Each mode is plain Keras underneath (`compile` + `fit` on the network or on
a wrapper that trains it in place); these functions only pick the pieces, so
users can copy the few lines when they need something else.
"""

import numpy as np

from tfee import data
from tfee import network as network_lib
from tfee._keras import keras
from tfee._keras import tf
from tfee.backbones.small_cnn import small_cnn
from tfee.training import callbacks as callbacks_lib
from tfee.training import losses
from tfee.training._wrapper import exit_names
from tfee.training._wrapper import output_roles
from tfee.training.distillation import Distiller
from tfee.training.eenet import EENet

__all__ = ["MODES", "exit_accuracies", "fit", "train_digits_network"]

MODES = ("joint", "eenet", "distill")


def fit(
    network,
    train,
    validation=None,
    *,
    mode="joint",
    epochs=1,
    optimizer="adam",
    weights="sdn",
    lam=0.9,
    version="v1",
    costs="fraction_of_full",
    targets="labels",
    teacher=None,
    temperature=3.0,
    kd_weight=0.3,
    callbacks=(),
    verbose="auto",
):
    """Trains `network` in place with one of tfee's losses; returns the History.

    For a post-trained (PTEENet) network, attach the exits with
    `freeze_backbone=True` and use mode "joint" (or "eenet"): only the heads
    train.

    Args:
      network: a tfee early-exit network.
      train: a `tf.data.Dataset` of (images, labels) batches.
      validation: optional validation dataset (logs `val_*`).
      mode: "joint" (`tfee.losses.joint(network, weights)`, plus `SDNRamp`
        when weights="sdn"), "eenet" (`tfee.training.EENet`) or "distill"
        (`tfee.training.Distiller`).
      epochs: training epochs.
      optimizer: a Keras optimizer or its name.
      weights: joint mode's per-exit weights ("uniform", "sdn" or a list).
      lam, version, costs, targets: EENet mode's settings.
      teacher, temperature, kd_weight: distill mode's settings.
      callbacks: extra Keras callbacks.
      verbose: passed to `fit`.

    Returns:
      The `keras.callbacks.History`; its keys include `exit_k_accuracy`.
    """
    if mode not in MODES:
        raise ValueError(
            f"tfee.training.fit: `mode` must be one of {MODES}. Received: mode={mode!r}"
        )
    callbacks = list(callbacks)
    if mode == "joint":
        model = network
        loss = losses.joint(network, weights)
        model.compile(
            optimizer=optimizer,
            loss=loss,
            metrics={name: ["accuracy"] for name in loss},
        )
        if isinstance(weights, str) and weights == "sdn":
            callbacks.insert(0, callbacks_lib.SDNRamp())
    elif mode == "eenet":
        model = EENet(network, lam=lam, version=version, costs=costs, targets=targets)
        model.compile(optimizer=optimizer)
    else:
        model = Distiller(
            network, teacher=teacher, temperature=temperature, kd_weight=kd_weight
        )
        model.compile(optimizer=optimizer)
    return model.fit(
        train,
        validation_data=validation,
        epochs=epochs,
        callbacks=callbacks,
        verbose=verbose,
    )


def exit_accuracies(network, dataset):
    """Top-1 accuracy of every exit on a dataset of (images, labels) batches.

    Returns:
      {exit name: accuracy}, shallowest first.
    """
    names = exit_names(network)
    index = {role: i for i, role in enumerate(output_roles(network)) if role}
    correct = np.zeros(len(names))
    count = 0
    for images, labels in dataset:
        outputs = network(images, training=False)
        labels = tf.reshape(tf.cast(labels, tf.int64), [-1])
        for i, name in enumerate(names):
            logits = outputs[index[name]]
            correct[i] += float(
                tf.reduce_sum(tf.cast(tf.argmax(logits, -1) == labels, tf.float32))
            )
        count += int(labels.shape[0])
    if not count:
        raise ValueError("tfee.training.exit_accuracies: `dataset` is empty")
    return {name: float(correct[i] / count) for i, name in enumerate(names)}


def train_digits_network(epochs=10, head="sdn", seed=0, verbose=2):
    """A small CNN with exits after its first two blocks, trained on the digits.

    The network the examples and the demo start from when no model is given:
    `tfee.backbones.small_cnn` on scikit-learn's embedded 8x8 digits (the
    training split of `tfee.data.digits(seed=seed)`), joint uniform loss,
    Adam 3e-3, per-exit accuracy in the logs.

    Args:
      epochs: training epochs.
      head: exit head type for both exits.
      seed: weights and data-split seed.
      verbose: Keras `fit` verbosity.

    Returns:
      The trained early-exit network (3 exits).
    """
    keras.utils.set_random_seed(seed)
    train, validation, _ = data.digits(seed=seed)
    backbone = small_cnn(num_classes=10, input_shape=(8, 8, 1))
    network = network_lib.attach_exits(
        backbone, ["block1_out", "block2_out"], head=head
    )
    network.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=losses.joint(network),
        metrics={name: ["accuracy"] for name in network.output_names},
    )
    network.fit(train, validation_data=validation, epochs=epochs, verbose=verbose)
    return network
