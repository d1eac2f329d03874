"""tfmot internals that its public API does not export, in one place.

tfmot has no public way to ask which weights of a built-in layer it prunes or
clusters, nor a public class to recognise its wrappers; these imports run
after `tfee._keras` has set up tf_keras.
"""

import importlib

from tfee import _keras  # noqa: F401  (must configure Keras before tfmot loads)

__all__ = [
    "ClusterWeights",
    "ClusteringRegistry",
    "PruneLowMagnitude",
    "PruneRegistry",
    "QuantizeLayer",
]

_CORE = "tensorflow_model_optimization.python.core."

PruneRegistry = importlib.import_module(
    _CORE + "sparsity.keras.prune_registry"
).PruneRegistry
PruneLowMagnitude = importlib.import_module(
    _CORE + "sparsity.keras.pruning_wrapper"
).PruneLowMagnitude
ClusteringRegistry = importlib.import_module(
    _CORE + "clustering.keras.clustering_registry"
).ClusteringRegistry
ClusterWeights = importlib.import_module(
    _CORE + "clustering.keras.cluster_wrapper"
).ClusterWeights
# The input's fake quantization in a QAT model (the wrappers are public).
QuantizeLayer = importlib.import_module(
    _CORE + "quantization.keras.quantize_layer"
).QuantizeLayer
