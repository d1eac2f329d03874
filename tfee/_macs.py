"""Multiply-accumulates of one layer call, and of a whole model.

Conventions (one multiply-accumulate = one MAC; FLOPs = 2 x MACs):
  - Convolutions and dense layers: one MAC per kernel weight per output
    position; biases are not counted. `sparse=True` counts non-zero kernel
    weights only (the compute a sparse kernel needs after pruning).
  - BatchNormalization / LayerNormalization: one MAC per element (folded to a
    scale and shift at inference).
  - Pooling: one per input element read (window x outputs); global pooling
    reads every input element once.
  - Add / Subtract / Multiply / Average / Maximum / Minimum: (inputs - 1) per
    output element.
  - Activations, Concatenate, reshapes, padding, dropout: 0.
  - Layers with a registered counter (tfee's exit heads register theirs):
    that counter; nested models: their own total.
Layers of other types with weights are counted as 0 with a warning.

This sits below `tfee.network` (which places exits by MACs) and is published
as `tfee.cost`, which reads whole networks.
"""

import math
import warnings

import numpy as np

from tfee import _graph
from tfee._keras import keras
from tfee._keras import tf

__all__ = ["layer_macs", "model_macs", "node_macs", "register_macs"]

_COUNTERS = {}
_WARNED = set()


def register_macs(layer_class, counter):
    """Registers `counter(layer, input_shapes, output_shapes, sparse) -> int`.

    The most specific registered class of a layer wins, so a counter for a
    subclass overrides its base class's.
    """
    if not (
        isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)
    ):
        raise TypeError(
            "tfee.cost.register_macs: `layer_class` must be a tf_keras Layer "
            f"subclass. Received: layer_class={layer_class!r}"
        )
    _COUNTERS[layer_class] = counter


def _registered_counter(layer):
    for layer_class in type(layer).__mro__:
        if layer_class in _COUNTERS:
            return _COUNTERS[layer_class]
    return None


def _elements(shape):
    return int(np.prod([d for d in tf.TensorShape(shape)[1:]]))


def _kernel_positions(layer, attribute, positions, sparse):
    """MACs of a kernel applied at `positions` places: every weight once per place."""
    weight = getattr(layer, attribute)
    if isinstance(weight, tf.Variable):
        if sparse:
            used = np.count_nonzero(np.asarray(keras.backend.get_value(weight)))
        else:
            # Dense MACs need the shape only: no copy of the values (every
            # structure read counts every layer).
            used = int(np.prod(weight.shape))
    elif sparse:
        # Inside tfmot's quantize wrapper the attribute holds the symbolic
        # fake-quantized tensor of the wrapper's last trace: no values to
        # count zeros in, only the shape.
        raise TypeError(
            f"tfee.cost: layer {layer.name!r} is wrapped for quantization-aware "
            "training, which hides its kernel's values; count sparse MACs on "
            "the network before tfee.compress.quantize_preserving_clusters."
        )
    else:
        used = int(np.prod(weight.shape))
    return int(used) * int(positions)


_GLOBAL_POOLING = (
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
)
_POOLING = (
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
)
_MERGING = (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
)


def layer_macs(layer, input_shapes, output_shapes, sparse=False):
    """MACs of one call of `layer` for one sample (see the module's conventions).

    Args:
      layer: a tf_keras layer (tfmot wrappers are looked through).
      input_shapes: the call's input shape, or a list of shapes.
      output_shapes: the call's output shape, or a list of shapes.
      sparse: count non-zero weights only.

    Returns:
      An int.
    """
    layer = _graph.unwrap(layer)
    inputs = input_shapes if isinstance(input_shapes, list) else [input_shapes]
    outputs = output_shapes if isinstance(output_shapes, list) else [output_shapes]
    in_shape, out_shape = tf.TensorShape(inputs[0]), tf.TensorShape(outputs[0])
    layers = keras.layers

    counter = _registered_counter(layer)
    if counter is not None:
        return int(counter(layer, input_shapes, output_shapes, sparse))
    if isinstance(layer, keras.Model):
        return model_macs(layer, sparse=sparse)
    if isinstance(layer, layers.SeparableConv2D):
        spatial = _elements(out_shape) // out_shape[-1]
        return _kernel_positions(layer, "depthwise_kernel", spatial, sparse) + (
            _kernel_positions(layer, "pointwise_kernel", spatial, sparse)
        )
    if isinstance(layer, layers.DepthwiseConv2D):
        spatial = _elements(out_shape) // out_shape[-1]
        return _kernel_positions(layer, "depthwise_kernel", spatial, sparse)
    if isinstance(
        layer,
        (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose),
    ):
        spatial = _elements(in_shape) // in_shape[-1]
        return _kernel_positions(layer, "kernel", spatial, sparse)
    if isinstance(layer, (layers.Conv1D, layers.Conv2D, layers.Conv3D)):
        spatial = _elements(out_shape) // out_shape[-1]
        return _kernel_positions(layer, "kernel", spatial, sparse)
    if isinstance(layer, layers.Dense):
        leading = _elements(in_shape) // in_shape[-1]
        return _kernel_positions(layer, "kernel", leading, sparse)
    if isinstance(layer, (layers.BatchNormalization, layers.LayerNormalization)):
        return _elements(out_shape)
    if isinstance(layer, _GLOBAL_POOLING):
        return _elements(in_shape)
    if isinstance(layer, _POOLING):
        pool = layer.pool_size
        window = math.prod(pool) if isinstance(pool, (tuple, list)) else pool
        return _elements(out_shape) * int(window)
    if isinstance(layer, _MERGING):
        return (len(inputs) - 1) * _elements(out_shape)
    if layer.weights and type(layer) not in _WARNED:
        _WARNED.add(type(layer))
        warnings.warn(
            f"tfee.cost: no MAC counter for layer type {type(layer).__name__} "
            f"(layer '{layer.name}'); counted as 0. Register one with "
            "tfee.cost.register_macs.",
            stacklevel=2,
        )
    return 0


def _is_fake_quantization(layer):
    # tfmot's QuantizeLayer (the input's fake quantization in a QAT model):
    # it rounds values, multiplies none. Matched by name to keep tfmot out
    # of this base module.
    return type(
        layer
    ).__name__ == "QuantizeLayer" and "tensorflow_model_optimization" in (
        type(layer).__module__
    )


def node_macs(node, sparse=False):
    """MACs of one `_graph.GraphNode` (a layer call inside a model); inputs cost 0."""
    if isinstance(node.layer, keras.layers.InputLayer) or _is_fake_quantization(
        node.layer
    ):
        return 0
    return layer_macs(node.layer, node.input_shapes, node.output_shapes, sparse)


def model_macs(model, sparse=False):
    """Total MACs of one forward pass of any functional model, for one sample.

    Raises:
      ValueError: the model's input has an unknown size besides the batch.
    """
    unknown = [tuple(t.shape)[1:] for t in model.inputs if None in tuple(t.shape)[1:]]
    if unknown:
        raise ValueError(
            "tfee.cost.model_macs: MACs need a fixed input size; `model`'s input "
            f"has unknown dimensions {unknown[0]}. Rebuild it at the size it will "
            "run at: tfee.flatten_model(model, input_shape=(224, 224, 3))."
        )
    return sum(node_macs(n, sparse) for n in _graph.ordered_nodes(model))
