"""Removing tfmot's pruning and clustering wrappers, the inverse of
`pruning_plan` and `cluster_weights` and the one strip in tfee
(`tfee.export` strips through it); and recognising a QAT network, which no
compression step may take again."""

from tfee import structure as structure_lib
from tfee._keras import require_functional_model
from tfee._keras import tfmot
from tfee._tfmot import ClusterWeights
from tfee._tfmot import PruneLowMagnitude
from tfee._tfmot import QuantizeLayer
from tfee.compress._copy import copy_network

__all__ = ["is_quantization_aware", "strip"]


def strip(network):
    """The inverse of `pruning_plan` / `cluster_weights`: a copy of
    `network` without tfmot pruning or clustering wrappers, ready to export.

    Args:
      network: a model, wrapped or not (left unchanged).

    Returns:
      A plain functional model with its own weights (pruned weights are zero,
      clustered weights hold their centroids).
    """
    require_functional_model(
        network, "tfee.compress.strip", argument="network", single_output=False
    )
    if not _wrapped_layers(network):
        # One clone instead of tfmot's two strips and the copy (an export of
        # a plain network spent most of a second here).
        return copy_network(network)
    stripped = tfmot.clustering.keras.strip_clustering(network)
    stripped = tfmot.sparsity.keras.strip_pruning(stripped)
    return copy_network(stripped)


def _wrapped_layers(network):
    """Names of the layers inside tfmot pruning or clustering wrappers."""
    kinds = (PruneLowMagnitude, ClusterWeights)
    return [layer.name for layer in network.layers if isinstance(layer, kinds)]


def is_quantization_aware(network):
    """Whether `network` holds tfmot quantization wrappers (a QAT model).

    Such a network converts to int8 with the ranges it learned; it cannot be
    cloned without tfmot's custom-object scope, so exports use it as it is.
    """
    kinds = (tfmot.quantization.keras.QuantizeWrapper, QuantizeLayer)
    return any(isinstance(layer, kinds) for layer in getattr(network, "layers", ()))


def refuse_quantization_aware(network, api):
    """QAT is the last step: tfmot cannot prune, cluster or quantize its
    wrappers again (it advises implementing PrunableLayer)."""
    if is_quantization_aware(network):
        raise ValueError(
            f"{api}: `network` is already quantization-aware (it holds tfmot "
            "quantize wrappers). Prune and cluster before QAT: pass the network "
            "quantization_aware_training started from, and run QAT once, last."
        )


def _check_network(network, api):
    require_functional_model(network, api, argument="network", single_output=False)
    structure_lib.require_network(network, api)
    refuse_quantization_aware(network, api)
    wrapped = _wrapped_layers(network)
    if wrapped:
        raise ValueError(
            f"{api}: `network` already has tfmot wrappers on {wrapped}; strip them "
            "first with tfee.compress.strip."
        )
