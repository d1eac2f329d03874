"""Cost accounting: MACs per layer, per section and to each exit; parameters and bytes.

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
  - tfee exit heads: their own `macs()`; nested models: their own total.
Layers of other types with weights are counted as 0 with a warning; register
a counter for them with `register_macs`.
"""

import dataclasses
import math
import warnings

import numpy as np

from tfee import _graph
from tfee._keras import keras
from tfee._keras import tf
from tfee.layers.exit_head import ExitHead

__all__ = [
    "CostReport",
    "ExitCost",
    "SectionCost",
    "analyze",
    "layer_macs",
    "model_macs",
    "parameter_bytes",
    "register_macs",
    "unwrap",
]

_CUSTOM_COUNTERS = {}
_WARNED = set()


def register_macs(layer_class, counter):
    """Registers `counter(layer, input_shapes, output_shapes, sparse) -> int`."""
    if not (
        isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)
    ):
        raise TypeError(
            "register_macs: `layer_class` must be a tf_keras Layer subclass. "
            f"Received: layer_class={layer_class!r}"
        )
    _CUSTOM_COUNTERS[layer_class] = counter


def unwrap(layer):
    """The layer inside tfmot's pruning, clustering or quantization wrappers."""
    while isinstance(layer, keras.layers.Wrapper) and hasattr(layer, "layer"):
        if isinstance(
            layer, (keras.layers.Bidirectional, keras.layers.TimeDistributed)
        ):
            break
        layer = layer.layer
    return layer


def _elements(shape):
    return int(np.prod([d for d in tf.TensorShape(shape)[1:]]))


def _values(weight):
    return np.asarray(keras.backend.get_value(weight))


def _kernel_positions(weight, positions, sparse):
    """MACs of a kernel applied at `positions` places: every weight once per place."""
    values = _values(weight)
    used = np.count_nonzero(values) if sparse else values.size
    return int(used) * int(positions)


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
    layer = unwrap(layer)
    inputs = input_shapes if isinstance(input_shapes, list) else [input_shapes]
    outputs = output_shapes if isinstance(output_shapes, list) else [output_shapes]
    in_shape, out_shape = tf.TensorShape(inputs[0]), tf.TensorShape(outputs[0])
    layers = keras.layers

    for layer_class, counter in _CUSTOM_COUNTERS.items():
        if isinstance(layer, layer_class):
            return int(counter(layer, input_shapes, output_shapes, sparse))
    if isinstance(layer, ExitHead):
        return layer.macs(in_shape, sparse=sparse)
    if isinstance(layer, keras.Model):
        return model_macs(layer, sparse=sparse)
    if isinstance(layer, layers.SeparableConv2D):
        spatial = _elements(out_shape) // out_shape[-1]
        return _kernel_positions(layer.depthwise_kernel, spatial, sparse) + (
            _kernel_positions(layer.pointwise_kernel, spatial, sparse)
        )
    if isinstance(layer, layers.DepthwiseConv2D):
        spatial = _elements(out_shape) // out_shape[-1]
        return _kernel_positions(layer.depthwise_kernel, spatial, sparse)
    if isinstance(layer, (layers.Conv2DTranspose, layers.Conv1DTranspose)):
        spatial = _elements(in_shape) // in_shape[-1]
        return _kernel_positions(layer.kernel, spatial, sparse)
    if isinstance(layer, layers.Conv3DTranspose):
        spatial = _elements(in_shape) // in_shape[-1]
        return _kernel_positions(layer.kernel, spatial, sparse)
    if isinstance(layer, (layers.Conv1D, layers.Conv2D, layers.Conv3D)):
        spatial = _elements(out_shape) // out_shape[-1]
        return _kernel_positions(layer.kernel, spatial, sparse)
    if isinstance(layer, layers.Dense):
        leading = _elements(in_shape) // in_shape[-1]
        return _kernel_positions(layer.kernel, leading, sparse)
    if isinstance(layer, (layers.BatchNormalization, layers.LayerNormalization)):
        return _elements(out_shape)
    if isinstance(
        layer,
        (
            layers.GlobalAveragePooling1D,
            layers.GlobalAveragePooling2D,
            layers.GlobalMaxPooling1D,
            layers.GlobalMaxPooling2D,
        ),
    ):
        return _elements(in_shape)
    if isinstance(
        layer,
        (
            layers.MaxPooling1D,
            layers.MaxPooling2D,
            layers.AveragePooling1D,
            layers.AveragePooling2D,
        ),
    ):
        pool = layer.pool_size
        window = math.prod(pool) if isinstance(pool, (tuple, list)) else pool
        return _elements(out_shape) * int(window)
    if isinstance(
        layer,
        (
            layers.Add,
            layers.Subtract,
            layers.Multiply,
            layers.Average,
            layers.Maximum,
            layers.Minimum,
        ),
    ):
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


def model_macs(model, sparse=False):
    """Total MACs of one forward pass of any functional model, for one sample."""
    return sum(
        layer_macs(n.layer, n.input_shapes, n.output_shapes, sparse)
        for n in _graph.ordered_nodes(model)
        if not isinstance(n.layer, keras.layers.InputLayer)
    )


def parameter_bytes(layers):
    """(parameters, bytes) of the layers' own weights, wrappers' extras excluded."""
    count, size = 0, 0
    for layer in layers:
        for weight in unwrap(layer).weights:
            elements = int(np.prod(weight.shape))
            count += elements
            size += elements * weight.dtype.size
    return count, size


@dataclasses.dataclass(frozen=True)
class SectionCost:
    """Cost of section k: the backbone between exits k-1 and k, plus head k."""

    index: int
    backbone_macs: int
    head_macs: int
    parameters: int
    bytes: int


@dataclasses.dataclass(frozen=True)
class ExitCost:
    """Cost of a sample that leaves at this exit (every earlier head included)."""

    name: str
    head_macs: int
    cumulative_macs: int
    fraction_of_full: float


@dataclasses.dataclass(frozen=True)
class CostReport:
    """MACs and sizes of an early-exit network; see `analyze`."""

    full_macs: int
    exits: tuple
    sections: tuple
    sparse: bool

    def table(self):
        """A plain-text table, one row per exit."""
        lines = [
            f"{'exit':<8}{'head MACs':>12}{'cumulative MACs':>18}{'% of full':>11}"
            f"{'section params':>16}"
        ]
        for exit_cost, section in zip(self.exits, self.sections):
            lines.append(
                f"{exit_cost.name:<8}{exit_cost.head_macs:>12,}"
                f"{exit_cost.cumulative_macs:>18,}"
                f"{100 * exit_cost.fraction_of_full:>10.1f}%{section.parameters:>16,}"
            )
        lines.append(f"full network (backbone only): {self.full_macs:,} MACs")
        return "\n".join(lines)

    def to_dict(self):
        return dataclasses.asdict(self)


def analyze(network, sparse=False):
    """MACs, parameters and bytes of an early-exit network, per section and exit.

    Args:
      network: a model from `tfee.attach_exits` (or loaded from one).
      sparse: count non-zero weights only (sparsity-aware MACs).

    Returns:
      A `CostReport`. "Full" MACs are the backbone's alone (input to its
      classifier, no heads); exit k's cumulative MACs are the backbone up to
      exit k plus heads 1..k.
    """
    # Imported here: network.py builds on this module's per-layer counts.
    from tfee import network as network_lib

    sections = network_lib.sections(network)
    node_by_layer = {n.name: n for n in _graph.ordered_nodes(network)}

    def macs_of(names):
        return sum(
            layer_macs(
                node_by_layer[n].layer,
                node_by_layer[n].input_shapes,
                node_by_layer[n].output_shapes,
                sparse,
            )
            for n in names
        )

    section_costs, exit_costs = [], []
    full = sum(macs_of(s.backbone_layers) for s in sections)
    running = 0
    for section in sections:
        backbone = macs_of(section.backbone_layers)
        head = macs_of(section.head_layers)
        params, size = parameter_bytes(
            [
                node_by_layer[n].layer
                for n in section.backbone_layers + section.head_layers
            ]
        )
        section_costs.append(SectionCost(section.index, backbone, head, params, size))
        running += backbone + head
        exit_costs.append(
            ExitCost(section.exit_name, head, running, running / full if full else 0.0)
        )
    return CostReport(full, tuple(exit_costs), tuple(section_costs), sparse)
