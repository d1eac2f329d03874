"""Copies of networks with their own variables (never shared with the input)."""

from tfee._keras import keras

__all__ = ["copy_network", "steps_per_epoch"]


def copy_network(network):
    """A functional copy of `network` with its own weights and trainable flags.

    `clone_model` alone would give fresh weights, and a `clone_function` that
    returns the original layer would share them (pruning the copy would prune
    the original), so the weights are copied explicitly.
    """
    clone = keras.models.clone_model(network)
    clone.set_weights(network.get_weights())
    for source, target in zip(network.layers, clone.layers):
        target.trainable = source.trainable
    return clone


def steps_per_epoch(dataset, steps, api):
    """Batches per epoch of a finite tf.data dataset (or the caller's `steps`)."""
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(
                f"{api}: `steps_per_epoch` must be a positive integer or None. "
                f"Received: steps_per_epoch={steps!r}"
            )
        return steps
    if not hasattr(dataset, "cardinality"):
        raise TypeError(
            f"{api}: `train_data` must be a tf.data.Dataset of (images, labels) "
            f"batches. Received: train_data={type(dataset).__name__}"
        )
    count = int(dataset.cardinality())
    if count < 1:
        raise ValueError(
            f"{api}: the number of batches in `train_data` is unknown or infinite "
            f"(cardinality {count}); pass `steps_per_epoch`."
        )
    return count
