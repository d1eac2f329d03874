"""What an early-exit network is made of, read from its graph once per call.

An early-exit network is a plain functional tf_keras model whose outputs are
the logits of each exit, named `exit_1 ... exit_K` shallowest first (the
deepest is the backbone's own classifier), followed by `confidence_k` for the
heads that learn a confidence. Everything else (which layers are heads, where
they attach, which layers form section k, what each costs) is read from the
graph: `read_structure` walks it once and returns a frozen `Structure` that a
public call hands down to everything it runs (exporters, calibration inputs,
costs, stage models), instead of each step walking the graph again. It is
never stored on the model, so it cannot go stale across calls.
"""

import dataclasses
import types

from tfee import _graph
from tfee import _macs
from tfee import naming
from tfee._keras import keras
from tfee._keras import require_functional_model
from tfee.layers.exit_head import ExitHead

__all__ = [
    "ExitInfo",
    "ExitTensors",
    "Section",
    "Structure",
    "exits",
    "is_early_exit",
    "read_structure",
    "require_network",
    "sections",
]


@dataclasses.dataclass(frozen=True)
class ExitInfo:
    """One exit of an early-exit network.

    Attributes:
      name: the output's name, "exit_k".
      index: k, 1-based, shallowest first.
      attach_layer: the backbone layer whose output the head reads (for the
        deepest exit: the backbone's classifier).
      head: the head layer's name (None for the deepest exit).
      head_type: "linear", "sdn", "conv", a custom head's type, or "backbone".
      confidence: the learned confidence output's name, or None.
      cumulative_macs: MACs of a sample that leaves here (earlier heads included).
      cascading: whether the head also reads exit k-1's logits (ZTW's
        cascading connection; `attach_exits(cascading=True)`).
    """

    name: str
    index: int
    attach_layer: str
    head: str
    head_type: str
    confidence: str
    cumulative_macs: int
    cascading: bool = False


@dataclasses.dataclass(frozen=True)
class Section:
    """Section k: the backbone layers between exit k-1 and exit k, plus head k."""

    index: int
    exit_name: str
    backbone_layers: tuple
    head_layers: tuple

    @property
    def layers(self):
        return self.backbone_layers + self.head_layers


@dataclasses.dataclass(frozen=True)
class ExitTensors:
    """Where exit k sits in the network's graph (the network's own tensors).

    Attributes:
      logits: the `exit_k` output.
      features: what head k reads from the backbone (for the deepest exit:
        the classifier's logits); stage k hands it on to stage k+1.
      confidence: the `confidence_k` output, or None.
      head: head k's layer (tfmot-wrapped where the network is), or None
        for the deepest exit.
    """

    logits: object
    features: object
    confidence: object
    head: object


@dataclasses.dataclass(frozen=True, eq=False)
class Structure:
    """An early-exit network's structure, from one walk of its graph.

    Built by `read_structure`; a snapshot of the graph (not of the weights),
    meant to live for one call. Values derived from it (the stage models)
    are built once, on first use, and shared by everything the call runs.

    Attributes:
      network: the network it was read from.
      nodes: the network's layer calls in topological order (`GraphNode`s).
      exits: one `ExitInfo` per exit, shallowest first.
      sections: one `Section` per exit.
      tensors: one `ExitTensors` per exit.
      layer_macs: {layer name: MACs} (dense) for every layer.
      num_classes: the exits' class count.
    """

    network: object
    nodes: tuple
    exits: tuple
    sections: tuple
    tensors: tuple
    layer_macs: types.MappingProxyType
    num_classes: int
    _derived: dict = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def num_exits(self):
        return len(self.exits)

    @property
    def learned(self):
        """Per exit, whether its head learns a confidence."""
        return tuple(info.confidence is not None for info in self.exits)

    @property
    def exit_macs(self):
        """Per exit, the MACs of a sample that leaves there."""
        return tuple(info.cumulative_macs for info in self.exits)

    def derived(self, key, build):
        """`build(self)`, built once per structure and kept (the stage models:
        building them again would add more calls to the shared layers)."""
        if key not in self._derived:
            self._derived[key] = build(self)
        return self._derived[key]


def is_early_exit(model):
    """True if the model's outputs are named like a tfee early-exit network."""
    numbers = map(naming.exit_number, output_names(model))
    exit_numbers = sorted(k for k in numbers if k is not None)
    return len(exit_numbers) >= 2 and exit_numbers == list(
        range(1, len(exit_numbers) + 1)
    )


def output_names(model):
    """Output names as tfee gave them, also under tfmot wrappers.

    tfmot wraps the `exit_k` identity layers too, which renames the outputs
    (`prune_low_magnitude_exit_k`); the wrapped layer keeps the name.
    """
    outputs = getattr(model, "outputs", None) or []
    return [_graph.unwrap(t._keras_history.layer).name for t in outputs]


def require_network(network, api):
    """Raises unless `network` is a functional tfee early-exit network."""
    require_functional_model(network, api, argument="network", single_output=False)
    if not is_early_exit(network):
        raise ValueError(
            f"{api}: `network` is not a tfee early-exit network (outputs named "
            "exit_1..exit_K); build one with tfee.attach_exits. Received outputs: "
            f"{output_names(network) if isinstance(network, keras.Model) else None}"
        )


def _input_of(tensor):
    history = tensor._keras_history
    return history.layer._inbound_nodes[history.node_index].keras_inputs[0]


def exit_tensors(network, api):
    """Per exit, its `ExitTensors`: one step back from each output, no walk."""
    require_network(network, api)
    outputs = dict(zip(output_names(network), network.outputs))
    num_exits = sum(1 for n in outputs if naming.exit_number(n) is not None)
    result = []
    for k in range(1, num_exits + 1):
        logits = outputs[naming.exit_name(k)]
        head_output = _input_of(logits)
        head = head_output._keras_history.layer
        if isinstance(_graph.unwrap(head), ExitHead):
            features = _input_of(head_output)
        else:
            head, features = None, head_output
        confidence = outputs.get(naming.confidence_name(k))
        result.append(ExitTensors(logits, features, confidence, head))
    return tuple(result)


def _sections(network, nodes, tensors, depends_on):
    position = {n.name: n.position for n in nodes}
    inputs = {
        layer.name
        for layer in network.layers
        if isinstance(layer, keras.layers.InputLayer)
    }
    result, previous, earlier_heads = [], set(inputs), set()
    for k, exit_k in enumerate(tensors, start=1):
        upstream = depends_on(exit_k.features) - inputs
        head_tensors = [exit_k.logits]
        if exit_k.confidence is not None:
            head_tensors.append(exit_k.confidence)
        # A cascading head reads the previous exit: its layers stay in theirs.
        head = (
            set().union(*(depends_on(t) for t in head_tensors))
            - upstream
            - inputs
            - earlier_heads
        )
        earlier_heads |= head
        order = position.__getitem__
        result.append(
            Section(
                index=k,
                exit_name=naming.exit_name(k),
                backbone_layers=tuple(sorted(upstream - previous, key=order)),
                head_layers=tuple(sorted(head, key=order)),
            )
        )
        previous = upstream | inputs
    return tuple(result)


def _exits(tensors, sections, layer_macs):
    result, cumulative = [], 0
    for k, (exit_k, section) in enumerate(zip(tensors, sections), start=1):
        # A sample leaving here paid for every section on the way, heads included
        # (the same sum tfee.cost.analyze reports, dense).
        cumulative += sum(layer_macs[layer] for layer in section.layers)
        head = _graph.unwrap(exit_k.head) if exit_k.head is not None else None
        result.append(
            ExitInfo(
                name=naming.exit_name(k),
                index=k,
                attach_layer=exit_k.features._keras_history.layer.name,
                head=None if head is None else exit_k.head.name,
                head_type=head.head_type if head else "backbone",
                confidence=(
                    naming.confidence_name(k) if exit_k.confidence is not None else None
                ),
                cumulative_macs=cumulative,
                cascading=bool(head and head.cascading),
            )
        )
    return tuple(result)


def read_structure(network, api="tfee.read_structure"):
    """Reads an early-exit network's structure from its graph, in one walk.

    Args:
      network: a tfee early-exit network (from `tfee.attach_exits`, loaded,
        pruned or clustered).
      api: the public call to name in errors.

    Returns:
      A `Structure`. Pass it where a call takes a network or its structure
      (`tfee.stage_models`, `tfee.cost.analyze`) to skip reading it again.

    Raises:
      TypeError: `network` is not a functional tf_keras model.
      ValueError: `network` is not an early-exit network.

    Example:
      >>> structure = tfee.read_structure(net)
      >>> [info.cumulative_macs for info in structure.exits]
    """
    tensors = exit_tensors(network, api)
    nodes = tuple(_graph.ordered_nodes(network))
    layer_macs = {n.name: _macs.node_macs(n) for n in nodes}
    sections = _sections(network, nodes, tensors, _graph.dependencies(nodes))
    return Structure(
        network=network,
        nodes=nodes,
        exits=_exits(tensors, sections, layer_macs),
        sections=sections,
        tensors=tensors,
        layer_macs=types.MappingProxyType(layer_macs),
        num_classes=int(tensors[0].logits.shape[-1]),
    )


def structure_of(network_or_structure, api):
    """The `Structure` a call was given, or the one read from its network."""
    if isinstance(network_or_structure, Structure):
        return network_or_structure
    return read_structure(network_or_structure, api)


def sections(network):
    """The network cut at its exits: section k = backbone after exit k-1 up to
    exit k, plus exit k's head layers.

    Args:
      network: a tfee early-exit network.

    Returns:
      A tuple of `Section`, one per exit, layer names in topological order.
      The deepest section's backbone part ends with the classifier.
    """
    return read_structure(network, "tfee.sections").sections


def exits(network):
    """The exits of an early-exit network, read from its graph.

    Returns:
      A tuple of `ExitInfo`, shallowest first.
    """
    return read_structure(network, "tfee.exits").exits
