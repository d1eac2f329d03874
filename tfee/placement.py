"""Where exits go: named layers, MAC fractions (SDN) and PTEENet's rules."""

import dataclasses
import math
from collections.abc import Callable

__all__ = ["FlopsFractions", "Layers", "PTEENet", "Placement", "PlacementContext"]

_PTEENET_RULES = ("fine", "pareto", "linear", "golden")
_GOLDEN_RATIO = (1 + math.sqrt(5)) / 2
_MATCHES = ("nearest", "reach")


@dataclasses.dataclass(frozen=True)
class PlacementContext:
    """What a placement rule may look at; built by `attach_exits`.

    Attributes:
      layer_names: every layer of the backbone, in topological order.
      cut_points: layers whose output alone carries the network forward.
      candidates: (name, cumulative backbone MACs, output shape) of the cut
        points where a rule places heads, in depth order: every attachable
        one except those right before a BN/activation that is itself one.
      attachable: the same rows for every cut point a head can read (what
        `Layers` accepts by name).
      rejected: maps each other cut point to why no head can read it.
      total_macs: the backbone's MACs (input to classifier).
      head_macs: maps a feature-map shape to the MACs of one head on it.
    """

    layer_names: tuple
    cut_points: tuple
    candidates: tuple
    attachable: tuple
    rejected: dict
    total_macs: int
    head_macs: Callable


class Placement:
    """A rule that picks the layers exit heads attach to."""

    def resolve(self, context):
        """Returns the attach layers' names, shallowest first."""
        raise NotImplementedError


class Layers(Placement):
    """Exits after these named layers (any order; sorted by depth).

    Args:
      names: layer names; each must be a cut point with a 4-D output.

    Example:
      >>> tfee.attach_exits(model, tfee.Layers(["stage1_out", "stage2_out"]))
    """

    def __init__(self, names):
        if isinstance(names, str) or not names:
            raise ValueError(
                "Layers: `names` must be a non-empty list of layer names. "
                f"Received: names={names!r}"
            )
        bad = [n for n in names if not isinstance(n, str)]
        if bad:
            raise TypeError(
                f"Layers: every entry of `names` must be a str. Received: {bad!r}"
            )
        if len(set(names)) != len(names):
            raise ValueError(
                f"Layers: `names` lists a layer twice. Received: names={list(names)!r}"
            )
        self.names = tuple(names)

    def resolve(self, context):
        position = {name: i for i, name in enumerate(context.layer_names)}
        attachable = [name for name, _, _ in context.attachable]
        for name in self.names:
            if name not in position:
                raise ValueError(
                    f"tfee.attach_exits: unknown layer {name!r} in `placement`; the "
                    "model has no layer of that name. Layers an exit can attach to: "
                    f"{_preview(attachable)}"
                )
            before = [c for c in attachable if position[c] < position[name]]
            after = [c for c in attachable if position[c] > position[name]]
            nearest = (
                f"Nearest layers an exit can attach to: "
                f"{before[-1] if before else None!r} before it, "
                f"{after[0] if after else None!r} after it"
            )
            if name not in context.cut_points:
                raise ValueError(
                    f"tfee.attach_exits: layer {name!r} in `placement` is not on the "
                    "single path from input to output: other tensors bypass it (a "
                    "skip connection or a parallel branch), so an exit there could "
                    f"not end a stage of the network. {nearest}"
                )
            if name in context.rejected:
                raise ValueError(
                    f"tfee.attach_exits: layer {name!r} in `placement` "
                    f"{context.rejected[name]}. {nearest}"
                )
        return sorted(self.names, key=position.__getitem__)

    def __repr__(self):
        return f"Layers({list(self.names)!r})"


class FlopsFractions(Placement):
    """Exits where the cumulative MACs first reach given fractions of the total.

    Shallow-Deep Networks put internal classifiers at about 15, 30, 45, 60, 75
    and 90% of the backbone's cost (Kaya et al., ICML 2019).

    Args:
      fractions: strictly increasing numbers in (0, 1).
      include_heads: count the heads placed so far, and the new one, in the
        cumulative cost (PTEENet's convention); otherwise the backbone alone.
      match: "nearest" takes the layer whose cost is closest to each target
        (SDN's "about 15%, 30%, ..."); "reach" the first layer that reaches it
        (PTEENet). Either way every exit gets its own layer.

    Example:
      >>> tfee.FlopsFractions([0.15, 0.3, 0.45, 0.6, 0.75, 0.9])
    """

    def __init__(self, fractions, include_heads=False, match="nearest"):
        fractions = list(fractions) if not isinstance(fractions, str) else fractions
        if not isinstance(fractions, list) or not fractions:
            raise ValueError(
                "FlopsFractions: `fractions` must be a non-empty list of numbers "
                f"in (0, 1). Received: fractions={fractions!r}"
            )
        for f in fractions:
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < 1:
                raise ValueError(
                    "FlopsFractions: every entry of `fractions` must be a number "
                    f"in (0, 1). Received: {f!r} in fractions={fractions!r}"
                )
        if any(b <= a for a, b in zip(fractions, fractions[1:])):
            raise ValueError(
                "FlopsFractions: `fractions` must be strictly increasing. "
                f"Received: fractions={fractions!r}"
            )
        if match not in _MATCHES:
            raise ValueError(
                f"FlopsFractions: `match` must be one of {_MATCHES}. "
                f"Received: match={match!r}"
            )
        self.fractions = tuple(float(f) for f in fractions)
        self.include_heads = bool(include_heads)
        self.match = match

    def resolve(self, context):
        chosen, head_total, start = [], 0, 0
        candidates = context.candidates
        if len(candidates) < len(self.fractions):
            raise ValueError(
                f"tfee.attach_exits: `placement` asks for {len(self.fractions)} exits "
                f"but the model has only {len(candidates)} layers an exit can attach "
                f"to: {_preview([c for c, _, _ in candidates])}"
            )

        def cost(i):
            _, macs, shape = candidates[i]
            if self.include_heads:
                return macs + head_total + context.head_macs(shape)
            return macs

        for exit_number, fraction in enumerate(self.fractions, start=1):
            target = fraction * context.total_macs
            # Leave one candidate for every exit still to place.
            stop = len(candidates) - (len(self.fractions) - exit_number)
            window = range(start, stop)
            if self.match == "nearest":
                pick = min(window, key=lambda i: abs(cost(i) - target))
            else:
                pick = next((i for i in window if cost(i) >= target), None)
                if pick is None:
                    last = candidates[stop - 1]
                    raise ValueError(
                        f"tfee.attach_exits: `placement` asks for exit {exit_number} "
                        f"at {100 * fraction:.1f}% of the full network's MACs, but "
                        "no free layer reaches it (the deepest one left, "
                        f"{last[0]!r}, is at "
                        f"{100 * cost(stop - 1) / context.total_macs:.1f}%). Use "
                        "smaller or fewer fractions."
                    )
            if self.include_heads:
                head_total += context.head_macs(candidates[pick][2])
            chosen.append(candidates[pick][0])
            start = pick + 1
        return chosen

    def __repr__(self):
        return (
            f"FlopsFractions({list(self.fractions)!r}, "
            f"include_heads={self.include_heads}, match={self.match!r})"
        )


class PTEENet(FlopsFractions):
    """PTEENet's placement rules (Lahiany & Aperstein, IEEE Access 2022).

    Branch i (0-based, of N) goes where the cumulative cost, branches included,
    first reaches: fine 1 - 0.95^(i+1); pareto 1 - 0.8^(i+1); linear
    (i+1)/(N+1); golden phi^(i-N).

    Args:
      rule: "fine", "pareto", "linear" or "golden".
      num_exits: number of branches N (the backbone's classifier not counted).
    """

    def __init__(self, rule, num_exits):
        if rule not in _PTEENET_RULES:
            raise ValueError(
                f"PTEENet: unknown `rule`, expected one of {_PTEENET_RULES}. "
                f"Received: rule={rule!r}"
            )
        if (
            isinstance(num_exits, bool)
            or not isinstance(num_exits, int)
            or num_exits < 1
        ):
            raise ValueError(
                "PTEENet: `num_exits` must be a positive integer. "
                f"Received: num_exits={num_exits!r}"
            )
        n = num_exits
        fraction = {
            "fine": lambda i: 1 - 0.95 ** (i + 1),
            "pareto": lambda i: 1 - 0.8 ** (i + 1),
            "linear": lambda i: (i + 1) / (n + 1),
            "golden": lambda i: _GOLDEN_RATIO ** (i - n),
        }[rule]
        super().__init__(
            [fraction(i) for i in range(n)], include_heads=True, match="reach"
        )
        self.rule = rule
        self.num_exits = num_exits

    def __repr__(self):
        return f"PTEENet({self.rule!r}, num_exits={self.num_exits})"


def _preview(names, limit=12):
    shown = ", ".join(repr(n) for n in names[:limit])
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return f"[{shown}{more}]"
