"""What pruning achieved: sparsity per layer, section and head; MACs; gzip size."""

import dataclasses
import gzip

import numpy as np

from tfee import cost
from tfee import structure as structure_lib
from tfee._keras import keras
from tfee.compress import scopes

__all__ = ["SparsityReport", "gzip_bytes", "sparsity_report"]


@dataclasses.dataclass(frozen=True)
class SparsityReport:
    """Sparsity and cost of a (pruned) early-exit network.

    Attributes:
      overall: zero fraction over every prunable weight.
      layers: {layer name: zero fraction of its prunable weights}.
      sections: one dict per section: index, backbone, heads, total sparsity.
      heads: {exit name: sparsity of its head} (the deepest exit's classifier
        is part of the backbone).
      exits: one dict per exit: name, dense_macs, sparse_macs (non-zero
        weights only) and fraction_of_full (sparse_macs over the full
        network's dense MACs, the backbone alone: reports print it as "% of
        the full network's MACs").
      gzip_bytes: bytes of all weights (fp32) after gzip -9.
      frozen: layers left dense because they are frozen (not trainable).
    """

    overall: float
    layers: dict
    sections: tuple
    heads: dict
    exits: tuple
    gzip_bytes: int
    frozen: tuple = ()

    def table(self):
        """A plain-text summary."""
        lines = [
            f"{'exit':<8}{'dense MACs':>14}{'sparse MACs':>14}{'head sparsity':>15}"
        ]
        for row in self.exits:
            head = self.heads.get(row["name"])
            head_text = "-" if head is None else f"{100 * head:.1f}%"
            lines.append(
                f"{row['name']:<8}{row['dense_macs']:>14,}{row['sparse_macs']:>14,}"
                f"{head_text:>15}"
            )
        lines.append(
            f"overall sparsity {100 * self.overall:.1f}%, weights after gzip "
            f"{self.gzip_bytes:,} bytes"
        )
        return "\n".join(lines)

    def to_dict(self):
        return dataclasses.asdict(self)


def gzip_bytes(model):
    """Bytes of all of `model`'s weights, as fp32, after gzip -9."""
    payload = b"".join(
        np.asarray(w, dtype=np.float32).tobytes() for w in model.get_weights()
    )
    return len(gzip.compress(payload, compresslevel=9))


def _zeros(weights):
    values = [np.asarray(keras.backend.get_value(w)) for w in weights]
    return sum(int(np.count_nonzero(v == 0)) for v in values), sum(
        v.size for v in values
    )


def sparsity_report(network):
    """Measures the sparsity a pruned network reached, and what it saves.

    The report of `tfee.compress.prune`: `sparsity_report(prune(net, ...))`.

    Args:
      network: a tfee early-exit network, stripped or still wrapped.

    Returns:
      A `SparsityReport`.
    """
    structure = structure_lib.read_structure(network, "tfee.compress.sparsity_report")
    roles = scopes.layer_roles(structure)
    frozen = [
        layer.name
        for layer in network.layers
        if layer.name in roles and not layer.trainable and layer.weights
    ]
    counts = {}
    for layer in network.layers:
        if layer.name not in roles:
            continue
        weights = scopes.prunable_weights(cost.unwrap(layer))
        if weights:
            counts[layer.name] = _zeros(weights)

    def fraction(names):
        zeros = sum(counts[n][0] for n in names if n in counts)
        total = sum(counts[n][1] for n in names if n in counts)
        return zeros / total if total else 0.0

    sections = []
    heads = {}
    for section in structure.sections:
        sections.append(
            dict(
                index=section.index,
                backbone=fraction(section.backbone_layers),
                heads=fraction(section.head_layers),
                total=fraction(section.layers),
            )
        )
        if any(n in counts for n in section.head_layers):
            heads[section.exit_name] = fraction(section.head_layers)
    dense = cost.analyze(structure)
    sparse = cost.analyze(structure, sparse=True)
    exits = tuple(
        dict(
            name=d.name,
            dense_macs=d.cumulative_macs,
            sparse_macs=s.cumulative_macs,
            fraction_of_full=(
                s.cumulative_macs / dense.full_macs if dense.full_macs else 0.0
            ),
        )
        for d, s in zip(dense.exits, sparse.exits)
    )
    return SparsityReport(
        overall=fraction(list(counts)),
        layers={n: c[0] / c[1] for n, c in counts.items()},
        sections=tuple(sections),
        heads=heads,
        exits=exits,
        gzip_bytes=gzip_bytes(network),
        frozen=tuple(frozen),
    )
