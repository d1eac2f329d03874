"""Walking a functional model's graph: topological order, cut points, ancestry.

Everything here reads the graph Keras already records (nodes and their input
tensors); nothing is stored on the side.
"""

import dataclasses

from tfee._keras import keras
from tfee._keras import tf

__all__ = [
    "GraphNode",
    "ancestors",
    "dependencies",
    "cut_point_layers",
    "ordered_nodes",
    "preferred_cut_points",
    "unwrap",
]

# Layers that only rescale or gate their input: an exit is better attached
# after them than before them (after a block's ReLU, not its Add).
_PASS_THROUGH_LAYERS = (
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.PReLU,
    keras.layers.ELU,
    keras.layers.ThresholdedReLU,
    keras.layers.Dropout,
    keras.layers.SpatialDropout2D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
)


def unwrap(layer):
    """The layer inside tfmot's pruning, clustering or quantization wrappers."""
    while isinstance(layer, keras.layers.Wrapper) and hasattr(layer, "layer"):
        # These Keras wrappers are layers in their own right, not tfmot's.
        if isinstance(
            layer, (keras.layers.Bidirectional, keras.layers.TimeDistributed)
        ):
            break
        layer = layer.layer
    return layer


@dataclasses.dataclass(frozen=True)
class GraphNode:
    """One call of a layer inside a model, with the tensors it reads and writes."""

    layer: object
    node: object
    position: int  # topological position in the model

    @property
    def name(self):
        return self.layer.name

    @property
    def input_shapes(self):
        return self.node.input_shapes

    @property
    def output_shapes(self):
        return self.node.output_shapes


def _tensor_key(tensor):
    return id(tensor)


def ordered_nodes(model):
    """The model's layer calls in a topological order (inputs first)."""
    nodes = []
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            nodes.append(node)
    return [
        GraphNode(layer=node.layer, node=node, position=i)
        for i, node in enumerate(nodes)
    ]


def _node_inputs(node):
    return [t for t in tf.nest.flatten(node.node.keras_inputs)]


def _node_outputs(node):
    return [t for t in tf.nest.flatten(node.node.outputs)]


def cut_point_layers(model, nodes=None):
    """Names of the layers whose output alone separates the input from the outputs.

    An exit (and a stage boundary in staged inference) can only sit where one
    tensor carries everything the rest of the network needs; inside a
    residual block the skip connection also crosses, so block-internal layers
    are not cut points.

    `nodes` is the model's `ordered_nodes`, where the caller has them.

    Returns:
      Layer names in topological order, input layers excluded.
    """
    nodes = ordered_nodes(model) if nodes is None else nodes
    last_use = {}
    for node in nodes:
        for tensor in _node_inputs(node):
            last_use[_tensor_key(tensor)] = node.position
    for tensor in model.outputs:
        last_use[_tensor_key(tensor)] = len(nodes)

    live = {}
    cuts = []
    for node in nodes:
        for tensor in _node_inputs(node):
            key = _tensor_key(tensor)
            if last_use.get(key) == node.position:
                live.pop(key, None)
        outputs = _node_outputs(node)
        for tensor in outputs:
            if _tensor_key(tensor) in last_use:
                live[_tensor_key(tensor)] = tensor
        if isinstance(node.layer, keras.layers.InputLayer):
            continue
        if len(outputs) == 1 and set(live) == {_tensor_key(outputs[0])}:
            cuts.append(node.name)
    return cuts


def preferred_cut_points(model, nodes=None, cuts=None):
    """Cut points where an exit is worth placing: not right before a BN/activation.

    A cut point whose only consumer is a pass-through layer (BN, ReLU, dropout)
    that is itself a cut point is skipped: the exit goes after that layer.
    `nodes` and `cuts` are `ordered_nodes` and `cut_point_layers`, where the
    caller has them.
    """
    nodes = ordered_nodes(model) if nodes is None else nodes
    cuts = cut_point_layers(model, nodes) if cuts is None else cuts
    cut_set = set(cuts)
    consumers = {}
    for node in nodes:
        for tensor in _node_inputs(node):
            producer = tensor._keras_history.layer.name
            consumers.setdefault(producer, []).append(node.layer)
    preferred = []
    for name in cuts:
        users = consumers.get(name, [])
        if (
            len(users) == 1
            and isinstance(users[0], _PASS_THROUGH_LAYERS)
            and users[0].name in cut_set
        ):
            continue
        preferred.append(name)
    return preferred


def ancestors(tensor):
    """Names of every layer the tensor depends on, its own producer included."""
    seen = set()
    stack = [tensor]
    while stack:
        current = stack.pop()
        history = current._keras_history
        layer = history.layer
        if layer.name in seen:
            continue
        seen.add(layer.name)
        node = layer._inbound_nodes[history.node_index]
        stack.extend(tf.nest.flatten(node.keras_inputs))
    return seen


def dependencies(nodes):
    """`ancestors` for any tensor of `nodes` (from `ordered_nodes`), from one
    pass over them instead of one backward walk per tensor.

    Returns:
      A function: tensor -> frozenset of the names of every layer it depends
      on, its own producer included.
    """
    masks = {}
    for node in nodes:
        mask = 1 << node.position
        for tensor in _node_inputs(node):
            mask |= masks.get(_tensor_key(tensor), 0)
        for tensor in _node_outputs(node):
            masks[_tensor_key(tensor)] = mask
    names = [node.name for node in nodes]

    def depends_on(tensor):
        mask = masks[_tensor_key(tensor)]
        return frozenset(
            name for position, name in enumerate(names) if mask >> position & 1
        )

    return depends_on
