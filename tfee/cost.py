"""Cost accounting: MACs per section and to each exit; parameters and bytes.

Per-layer MACs follow the conventions of `layer_macs` (one multiply-accumulate
= one MAC; FLOPs = 2 x MACs; convolutions and dense layers count one MAC per
kernel weight per output position, `sparse=True` only the non-zero ones).
Layers tfee has no counter for are counted as 0 with a warning; register a
counter for them with `register_macs`.
"""

import dataclasses

import numpy as np

from tfee import structure as structure_lib
from tfee._graph import unwrap
from tfee._macs import layer_macs
from tfee._macs import model_macs
from tfee._macs import node_macs
from tfee._macs import register_macs

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
    """Cost of a sample that leaves at this exit (every earlier head included).

    `fraction_of_full` is `cumulative_macs / CostReport.full_macs`: reports
    print it as "% of the full network's MACs" (the backbone alone, no heads),
    so the deepest exit is above 100%.
    """

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
            f"{'exit':<8}{'head MACs':>12}{'cumulative MACs':>18}{'% full MACs':>13}"
            f"{'section params':>16}"
        ]
        for exit_cost, section in zip(self.exits, self.sections):
            lines.append(
                f"{exit_cost.name:<8}{exit_cost.head_macs:>12,}"
                f"{exit_cost.cumulative_macs:>18,}"
                f"{100 * exit_cost.fraction_of_full:>12.1f}%{section.parameters:>16,}"
            )
        lines.append(f"full network (backbone only): {self.full_macs:,} MACs")
        return "\n".join(lines)

    def to_dict(self):
        return dataclasses.asdict(self)


def analyze(network, sparse=False):
    """MACs, parameters and bytes of an early-exit network, per section and exit.

    Args:
      network: a model from `tfee.attach_exits` (or loaded from one), or
        its `tfee.Structure`.
      sparse: count non-zero weights only (sparsity-aware MACs).

    Returns:
      A `CostReport`. "Full" MACs are the backbone's alone (input to its
      classifier, no heads); exit k's cumulative MACs are the backbone up to
      exit k plus heads 1..k.
    """
    structure = structure_lib.structure_of(network, "tfee.cost.analyze")
    sections = structure.sections
    node_by_layer = {n.name: n for n in structure.nodes}

    def macs_of(names):
        if not sparse:
            return sum(structure.layer_macs[n] for n in names)
        return sum(node_macs(node_by_layer[n], sparse) for n in names)

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
