"""Quantization-aware training that keeps clusters and sparsity (tfmot PCQAT).

tfmot's collaborative optimisation fine-tunes a clustered (and pruned)
network with fake int8 quantization while every clustered kernel keeps its
centroids (`Default8BitClusterPreserveQuantizeScheme`) and, with
`preserve_sparsity`, its zeros. tfmot only knows built-in layers; tfee's exit
heads get `ExitHeadQuantizeConfig`, which quantizes their kernels with the
same cluster-preserving weight quantizer and their logits as an 8-bit output.
"""

from tfee import _checks
from tfee import structure as structure_lib
from tfee._keras import keras
from tfee._keras import require_functional_model
from tfee._keras import tfmot
from tfee.compress.stripping import is_quantization_aware
from tfee.compress.stripping import refuse_quantization_aware
from tfee.compress.stripping import strip
from tfee.layers.exit_head import ExitHead

__all__ = [
    "ExitHeadQuantizeConfig",
    "OutputQuantizeConfig",
    "is_quantization_aware",
    "quantization_aware_training",
    "quantize_preserving_clusters",
]

_quantizers = tfmot.quantization.keras.quantizers


def _weights_quantizer(preserve_sparsity):
    # Only reachable through tfmot's internal module: the cluster-preserving
    # quantizer that tfmot's own registry gives Dense and Conv2D kernels.
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (  # noqa: E501
        cluster_preserve_quantize_registry as registry,
    )

    return registry.ClusterPreserveDefault8BitWeightsQuantizer(preserve_sparsity)


@keras.saving.register_keras_serializable(package="tfee")
class ExitHeadQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
    """How tfmot quantizes a tfee exit head.

    Kernels (the classifier's, the learned confidence's and ConvHead's
    convolutions) get 8-bit symmetric per-tensor fake quantization that keeps
    their clusters (and zeros, with `preserve_sparsity`); the logits get an
    8-bit moving-average output quantizer. Heads with a learned confidence
    have two outputs, which are left to the converter.

    Args:
      preserve_sparsity: keep zero weights at zero during training.
      preserve_clusters: keep each kernel's clusters (tfmot's cluster-
        preserving quantizer); False: plain 8-bit symmetric per-tensor fake
        quantization, for networks that were never clustered.
    """

    def __init__(self, preserve_sparsity=True, preserve_clusters=True):
        self.preserve_sparsity = bool(preserve_sparsity)
        self.preserve_clusters = bool(preserve_clusters)

    def _quantizer(self):
        if self.preserve_clusters:
            return _weights_quantizer(self.preserve_sparsity)
        return _quantizers.LastValueQuantizer(
            num_bits=8, per_axis=False, symmetric=True, narrow_range=True
        )

    def _kernels(self, layer):
        return layer._owned_kernels()

    def get_weights_and_quantizers(self, layer):
        return [(weight, self._quantizer()) for _, weight in self._kernels(layer)]

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        for (name, _), weight in zip(self._kernels(layer), quantize_weights):
            setattr(layer, name, weight)

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        if layer.with_confidence:
            return []
        return [
            _quantizers.MovingAverageQuantizer(
                num_bits=8, per_axis=False, symmetric=False, narrow_range=False
            )
        ]

    def get_config(self):
        return {
            "preserve_sparsity": self.preserve_sparsity,
            "preserve_clusters": self.preserve_clusters,
        }


@keras.saving.register_keras_serializable(package="tfee")
class OutputQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
    """Quantizes only a layer's output (8-bit, moving-average range).

    For the input normalisation a network may carry
    (`tfee.include_normalisation`): it has no trainable weights, and
    tfmot's registries claim `Normalization` without a config for it.
    """

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [
            _quantizers.MovingAverageQuantizer(
                num_bits=8, per_axis=False, symmetric=False, narrow_range=False
            )
        ]

    def get_config(self):
        return {}


def quantize_preserving_clusters(
    network, *, preserve_sparsity=True, preserve_clusters=True
):
    """Wraps a clustered (and pruned) network for quantization-aware training.

    tfmot's PCQAT: built-in layers get `Default8BitClusterPreserveQuantizeScheme`,
    tfee exit heads `ExitHeadQuantizeConfig`; layers neither supports, and
    the exit_k output layers (so that outputs keep their names), stay float.
    Train the result with `fit` (or `tfee.Distiller`); the TFLite
    converter with `tf.lite.Optimize.DEFAULT` turns it into int8.

    Args:
      network: a tfee early-exit network, clustered and stripped (left
        unchanged).
      preserve_sparsity: keep pruned (zero) weights at zero.
      preserve_clusters: False for a network that was never clustered:
        tfmot's default 8-bit scheme (the cluster-preserving quantizer would
        treat every distinct weight as a cluster, which does not fit in
        memory for real kernels).

    Returns:
      A functional model with tfmot quantize wrappers.

    Raises:
      TypeError: `network` is not a functional tf_keras model.
      ValueError: `network` is not an early-exit network, or is already
        quantization-aware.

    Example:
      >>> qat = tfee.compress.quantize_preserving_clusters(clustered)
      >>> qat.compile("adam", loss=tfee.losses.joint(qat))
      >>> qat.fit(train_ds, epochs=1)
    """
    api = "tfee.compress.quantize_preserving_clusters"
    require_functional_model(network, api, argument="network", single_output=False)
    structure_lib.require_network(network, api)
    refuse_quantization_aware(network, api)
    _checks.check_bool(preserve_sparsity, "preserve_sparsity", api)
    _checks.check_bool(preserve_clusters, "preserve_clusters", api)
    if preserve_clusters:
        scheme = tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(
            preserve_sparsity=preserve_sparsity
        )
    else:
        scheme = tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme()
    registry = scheme.get_quantize_registry()
    head_config = ExitHeadQuantizeConfig(preserve_sparsity, preserve_clusters)
    annotate = tfmot.quantization.keras.quantize_annotate_layer

    plain = strip(network)
    # Output layers stay unwrapped so outputs keep their exit_k names.
    outputs = set(plain.output_names)

    def annotated(layer):
        if layer.name in outputs:
            return layer
        if isinstance(layer, ExitHead):
            return annotate(layer, quantize_config=head_config)
        if isinstance(layer, keras.layers.Normalization):
            return annotate(layer, quantize_config=OutputQuantizeConfig())
        if registry.supports(layer):
            return annotate(layer)
        return layer

    marked = keras.models.clone_model(plain, clone_function=annotated)
    marked.set_weights(plain.get_weights())
    with tfmot.quantization.keras.quantize_scope(
        {
            "ExitHeadQuantizeConfig": ExitHeadQuantizeConfig,
            "OutputQuantizeConfig": OutputQuantizeConfig,
        }
    ):
        return tfmot.quantization.keras.quantize_apply(marked, scheme)


def quantization_aware_training(
    network,
    train_data,
    *,
    epochs=1,
    preserve_sparsity=True,
    preserve_clusters=True,
    optimizer=None,
    verbose="auto",
):
    """Fine-tunes a clustered network with cluster-preserving fake int8 quantization.

    Args:
      network: a clustered (and possibly pruned), stripped tfee early-exit
        network (left unchanged).
      train_data: a tf.data.Dataset of (images, labels) batches.
      epochs: training epochs, a positive integer.
      preserve_sparsity: keep zero weights at zero.
      preserve_clusters: False for a network that was never clustered.
      optimizer: an optimizer (default Adam 1e-5: QAT only nudges weights).
      verbose: passed to `fit`.

    Returns:
      The trained QAT model; export it with `tfee.export.tflite(model, path,
      quantize="int8", representative=...)` for int8 exit_k and stage_k
      signatures with metadata.

    Raises:
      ValueError: `epochs` is not a positive integer; see
        `quantize_preserving_clusters`.
    """
    from tfee.training import losses

    api = "tfee.compress.quantization_aware_training"
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(
            f"{api}: `epochs` must be a positive integer. Received: epochs={epochs!r}"
        )
    model = quantize_preserving_clusters(
        network,
        preserve_sparsity=preserve_sparsity,
        preserve_clusters=preserve_clusters,
    )
    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(1e-5),
        loss=losses.joint(model),
    )
    model.fit(train_data, epochs=epochs, verbose=verbose)
    return model
