"""Removing tfmot's pruning and clustering wrappers: the inverse of
`prune_low_magnitude` and `cluster_weights`, and the one strip in tfee
(`tfee.export` strips through it)."""

from tfee import network as network_lib
from tfee._keras import require_functional_model
from tfee._keras import tfmot
from tfee.compress._copy import copy_network
from tfee.compress._tfmot import ClusterWeights
from tfee.compress._tfmot import PruneLowMagnitude

__all__ = ["strip"]


def strip(network):
    """The inverse of `prune_low_magnitude` / `cluster_weights`: a copy of
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
    stripped = tfmot.clustering.keras.strip_clustering(network)
    stripped = tfmot.sparsity.keras.strip_pruning(stripped)
    return copy_network(stripped)


def _check_network(network, api):
    require_functional_model(network, api, argument="network", single_output=False)
    network_lib.sections(network)  # Raises unless it is an early-exit network.
    wrapped = [
        layer.name
        for layer in network.layers
        if isinstance(
            layer,
            (PruneLowMagnitude, ClusterWeights),
        )
    ]
    if wrapped:
        raise ValueError(
            f"{api}: `network` already has tfmot wrappers on {wrapped}; strip them "
            "first with tfee.compress.strip."
        )
