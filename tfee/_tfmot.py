"""tfmot internals that its public API does not export, in one place.

tfmot has no public way to ask which weights of a built-in layer it prunes or
clusters, nor a public class to recognise its wrappers; these imports run
after `tfee._keras` has set up tf_keras.
"""

import importlib

from tfee import _keras  # noqa: F401  (must configure Keras before tfmot loads)
from tfee._keras import tf

__all__ = [
    "ClusterWeights",
    "ClusteringRegistry",
    "PruneLowMagnitude",
    "PruneRegistry",
    "QuantizeLayer",
    "NamedOnLoad",
    "named_on_load_wrappers",
]

_CORE = "tensorflow_model_optimization.python.core."


def _internal(module, name):
    return getattr(importlib.import_module(_CORE + module), name)


PruneRegistry = _internal("sparsity.keras.prune_registry", "PruneRegistry")
PruneLowMagnitude = _internal("sparsity.keras.pruning_wrapper", "PruneLowMagnitude")
ClusteringRegistry = _internal(
    "clustering.keras.clustering_registry", "ClusteringRegistry"
)
ClusterWeights = _internal("clustering.keras.cluster_wrapper", "ClusterWeights")
# The input's fake quantization in a QAT model (the wrappers are public).
QuantizeLayer = _internal("quantization.keras.quantize_layer", "QuantizeLayer")


class NamedOnLoad:
    """Builds a wrapper loaded from a file under its own name scope.

    Keras builds a loaded layer with `build_from_config`, outside any name
    scope: a tfmot wrapper's weights then come back as plain `kernel`,
    `mask`, ... in every layer, and the optimizer's slots as `m/kernel`, so
    saving the network as .h5 (which keys weights by name) fails with
    "name already exists". Built in its scope, every name is unique again;
    files load weights by position, so nothing else changes.
    """

    def build_from_config(self, config):
        with tf.name_scope(self.name):
            super().build_from_config(config)


def named_on_load_wrappers():
    """{serialised name: class}: tfmot's pruning and clustering wrappers,
    each built as `NamedOnLoad` (the subclass keeps the name, so files it
    saves load anywhere)."""
    return {
        cls.__name__: type(cls.__name__, (NamedOnLoad, cls), {})
        for cls in (PruneLowMagnitude, ClusterWeights)
    }
