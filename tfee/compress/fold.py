"""Folding BatchNormalization into the layer before it, ahead of clustering.

The TFLite converter folds every inference-mode BatchNormalization into the
convolution before it, multiplying each output channel of the kernel by its
own factor gamma / sqrt(variance + epsilon). A kernel clustered to 8 values
then holds up to 8 values per channel, and the gzipped file loses most of
what clustering bought. Folding first and clustering the folded kernel
keeps the cluster count in the deployed file (ESCEPE clusters the weights
that are deployed, too).

`fold_batch_norm` returns a copy in which each foldable Conv2D / Dense
gains the BN's scale and shift in its kernel and bias, and the BN becomes an
identity `Activation("linear")` under the same name, so layer names,
sections and exits read the same as before.
"""

import collections

import numpy as np

from tfee import _graph
from tfee._keras import keras
from tfee._keras import require_functional_model
from tfee._keras import tf
from tfee._tfmot import ClusterWeights
from tfee._tfmot import PruneLowMagnitude

__all__ = ["fold_batch_norm", "foldable_pairs"]

_FOLDABLE = (keras.layers.Conv2D, keras.layers.Dense)


def _normalises_last_axis(bn):
    axis = bn.axis if isinstance(bn.axis, (list, tuple)) else [bn.axis]
    rank = len(bn.get_input_shape_at(0))
    return len(axis) == 1 and axis[0] % rank == rank - 1


def foldable_pairs(network):
    """{BN layer name: name of the Conv2D / Dense it folds into}.

    A BN folds when, inside `network`, it is called once, on the output of a
    Conv2D (not depthwise or transposed) or Dense with a linear activation
    that is called once and feeds nothing else, and it normalises the last
    axis. Calls of the same layers in other models (stage models, exports)
    do not count.
    """
    nodes = _graph.ordered_nodes(network)
    calls = collections.Counter(n.layer.name for n in nodes)
    readers = collections.Counter(
        t._keras_history.layer.name for t in tf.nest.flatten(network.outputs)
    )
    producers = {}
    for n in nodes:
        inputs = tf.nest.flatten(n.node.keras_inputs)
        for tensor in inputs:
            readers[tensor._keras_history.layer.name] += 1
        if len(inputs) == 1:
            producers[n.layer.name] = inputs[0]._keras_history.layer
    pairs = {}
    for n in nodes:
        bn = n.layer
        if not isinstance(bn, keras.layers.BatchNormalization):
            continue
        producer = producers.get(bn.name)
        if (
            producer is None
            or calls[bn.name] != 1
            or not _normalises_last_axis(bn)
            or type(producer) not in _FOLDABLE
            or calls[producer.name] != 1
            or readers[producer.name] != 1
            or keras.activations.serialize(producer.activation) != "linear"
        ):
            continue
        pairs[bn.name] = producer.name
    return pairs


def _folded(kernel, bias, bn):
    gamma = bn.gamma.numpy() if bn.scale else 1.0
    beta = bn.beta.numpy() if bn.center else 0.0
    mean = bn.moving_mean.numpy()
    variance = bn.moving_variance.numpy()
    factor = gamma / np.sqrt(variance + bn.epsilon)
    return kernel * factor, (bias - mean) * factor + beta


def fold_batch_norm(network):
    """A copy of `network` with BatchNormalization folded into the layer before.

    Args:
      network: a tf_keras functional model (e.g. a tfee early-exit network)
        without tfmot wrappers; left unchanged.

    Returns:
      A functional model computing the same outputs in inference mode: each
      foldable BN (see `foldable_pairs`) is an identity `Activation` named
      as before, its Conv2D / Dense carries the folded kernel and a bias.
      BNs that cannot fold are kept as they are.

    Raises:
      TypeError: `network` is not a tf_keras functional model.
      ValueError: `network` still has tfmot wrappers (strip it first).

    Example:
      >>> folded = tfee.compress.fold_batch_norm(network)
      >>> clustered = tfee.compress.cluster(folded, train, 8)
    """
    api = "tfee.compress.fold_batch_norm"
    require_functional_model(network, api, "network", single_output=False)
    wrapped = [
        layer.name
        for layer in network.layers
        if isinstance(layer, (PruneLowMagnitude, ClusterWeights))
    ]
    if wrapped:
        raise ValueError(
            f"{api}: strip tfmot wrappers first (tfee.compress.strip). "
            f"Received wrapped layers: {wrapped[:5]}"
        )
    pairs = foldable_pairs(network)
    producers = {conv: bn for bn, conv in pairs.items()}

    def clone(layer):
        if layer.name in pairs:
            return keras.layers.Activation("linear", name=layer.name)
        config = layer.get_config()
        if layer.name in producers:
            config["use_bias"] = True
        return type(layer).from_config(config)

    folded = keras.models.clone_model(network, clone_function=clone)
    layers = {layer.name: layer for layer in network.layers}
    for target in folded.layers:
        source = layers[target.name]
        if target.name in pairs:
            continue
        if target.name in producers:
            weights = source.get_weights()
            bias = weights[1] if source.use_bias else 0.0
            kernel, bias = _folded(weights[0], bias, layers[producers[target.name]])
            target.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
        else:
            target.set_weights(source.get_weights())
        target.trainable = source.trainable
    return folded
