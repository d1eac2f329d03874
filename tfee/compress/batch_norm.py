"""Re-estimating BatchNormalization statistics after weights changed under them.

A BN layer normalises with moving averages of the batch statistics it saw
while training. Pruning changes the weights before it in one step; while the
layers train on, the averages catch up (momentum 0.99: hundreds of steps),
but a layer that is frozen right after (ordered pruning's second phase trains
the heads on a frozen backbone) keeps statistics of weights that no longer
exist, and the exits behind it can fall to chance. Re-estimating sets each
moving mean and variance to the statistics of the layer's inputs under the
current weights.
"""

import numpy as np

from tfee import _checks
from tfee import _graph
from tfee._keras import keras
from tfee._keras import require_functional_model

__all__ = ["batch_norm_layers", "reestimate_batch_norm"]

SAMPLES = 1024


def _is_batch_norm(layer):
    return isinstance(_graph.unwrap(layer), keras.layers.BatchNormalization)


def batch_norm_layers(model, nodes=None):
    """Names of the BatchNormalization layers of `model`, inputs first
    (`nodes`: its `ordered_nodes`, where the caller has them)."""
    nodes = _graph.ordered_nodes(model) if nodes is None else nodes
    return [n.layer.name for n in nodes if _is_batch_norm(n.layer)]


def reestimate_batch_norm(
    model, batch_norm_data, samples=SAMPLES, batch_size=128, keep=()
):
    """Sets every BatchNormalization layer's moving statistics from `batch_norm_data`.

    Layer by layer, from the input on, the moving mean and variance become
    the per-channel mean and variance of the layer's inputs over the images,
    computed in inference mode with the statistics already re-estimated
    upstream: the population statistics of the network as it now is.
    Nothing else changes (tfmot pruning wrappers do not advance their step).

    Args:
      model: a functional tf_keras model (a tfee network, pruned or not).
      batch_norm_data: images preprocessed as for the model: a tf.data.Dataset of
        images or (images, labels) tuples, batched or not, or an array.
      samples: how many images to use.
      batch_size: images per inference batch.
      keep: names of BatchNormalization layers left as they are (e.g. the
        ones a caller froze).

    Returns:
      The names of the layers re-estimated, inputs first.

    Raises:
      TypeError: `model` is not a functional model, or the images are not
        floating point.
      ValueError: images of the wrong shape, non-finite or missing; a BN layer
        called more than once or inside a nested model.
    """
    api = "tfee.compress.reestimate_batch_norm"
    require_functional_model(model, api, single_output=False)
    samples = _checks.check_int(samples, "samples", api)
    batch_size = _checks.check_int(batch_size, "batch_size", api)
    nested = [
        f"{layer.name}/{name}"
        for layer in model.layers
        if isinstance(layer, keras.Model)
        for name in batch_norm_layers(layer)
    ]
    if nested:
        raise ValueError(
            f"{api}: BatchNormalization layers inside nested models cannot be "
            "reached from the model's input; flatten the model first. "
            f"Received nested layers: {nested}"
        )
    keep = set(keep)
    nodes = [
        n
        for n in _graph.ordered_nodes(model)
        if _is_batch_norm(n.layer) and _graph.unwrap(n.layer).name not in keep
    ]
    calls = [n.layer.name for n in nodes]
    shared = sorted({name for name in calls if calls.count(name) > 1})
    if shared:
        raise ValueError(
            f"{api}: each BatchNormalization layer must be called once, so that "
            f"it has one input to estimate. Received layers called more than "
            f"once: {shared}"
        )
    if not nodes:
        return []
    images = _checks.check_images(
        batch_norm_data, model, samples, api, argument="batch_norm_data"
    )
    for node in nodes:
        layer = _graph.unwrap(node.layer)
        reader = keras.Model(model.inputs, node.node.keras_inputs[0])
        rank = len(reader.output_shape)
        kept = {a % rank for a in np.atleast_1d(layer.axis)}
        axes = tuple(i for i in range(rank) if i not in kept)
        total = total_squares = count = 0
        for start in range(0, len(images), batch_size):
            x = np.asarray(
                reader(images[start : start + batch_size], training=False), np.float64
            )
            total = total + x.sum(axis=axes)
            total_squares = total_squares + np.square(x).sum(axis=axes)
            count += int(np.prod([x.shape[a] for a in axes]))
        mean = total / count
        variance = np.maximum(total_squares / count - np.square(mean), 0.0)
        if count > 1:
            variance *= count / (count - 1)  # Unbiased, as Keras' moving variance.
        layer.moving_mean.assign(
            mean.astype(np.float32).reshape(layer.moving_mean.shape)
        )
        layer.moving_variance.assign(
            variance.astype(np.float32).reshape(layer.moving_variance.shape)
        )
    return calls
