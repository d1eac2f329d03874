"""Which layers get which compression target: globally, per layer, per section.

A target (a sparsity for pruning, a number of clusters for clustering) is
given for a *scope*:

  - "global": one value for every compressible layer, reached with ONE
    magnitude threshold across all of them (Görmez & Koyuncu 2022 prune this
    way; tfmot itself only prunes layer by layer).
  - "layer": one value per layer (a number for all, or {layer name: value}).
  - "section": {k: value} for section k (the backbone between exits k-1 and
    k plus exit k's head, see `tfee.sections`), and/or {"backbone": value,
    "heads": value}; a section number wins over "backbone"/"heads" for the
    layers it covers. A single number gives every section the same target.

Layers the caller froze (`trainable=False`) are never compressed.
"""

import dataclasses
import numbers
import warnings

import numpy as np

from tfee import structure as structure_lib
from tfee._keras import tfmot
from tfee._tfmot import ClusteringRegistry
from tfee._tfmot import PruneRegistry

__all__ = [
    "Group",
    "ROLES",
    "SCOPES",
    "clusterable_weights",
    "layer_roles",
    "prunable_weights",
    "resolve",
    "split_by_role",
]

SCOPES = ("global", "layer", "section")
ROLES = ("backbone", "heads")


@dataclasses.dataclass(frozen=True)
class Group:
    """Layers that share one target (and, for pruning, one magnitude threshold).

    Attributes:
      name: "global", a layer name, "section_k", "backbone", "heads", or
        "section_k/backbone" when an ordered run splits a section by role.
      layers: the layer names, in graph order.
      target: the sparsity (or cluster count) the group reaches.
      role: "backbone", "heads", or None when the group spans both.
    """

    name: str
    layers: tuple
    target: object
    role: object = None


def prunable_weights(layer):
    """The variables tfmot would prune in `layer`; None if it cannot prune it.

    Args:
      layer: a built tf_keras layer.

    Returns:
      A list of variables (empty for supported layers without prunable weights,
      such as BatchNormalization), or None for layers tfmot does not support.
    """
    if isinstance(layer, tfmot.sparsity.keras.PrunableLayer):
        return list(layer.get_prunable_weights())
    if PruneRegistry.supports(layer):
        return [getattr(layer, name) for name in PruneRegistry._weight_names(layer)]
    return None


def clusterable_weights(layer, frozen_too=False):
    """The (name, variable) pairs tfmot would cluster in `layer`; None if unsupported.

    tfmot sees no weights in a frozen built-in layer; `frozen_too` names the
    kernels it would cluster once the layer is trainable again.
    """
    if isinstance(layer, tfmot.clustering.keras.ClusterableLayer):
        return list(layer.get_clusterable_weights())
    if frozen_too and type(layer) in ClusteringRegistry._LAYERS_WEIGHTS_MAP:
        names = ClusteringRegistry._LAYERS_WEIGHTS_MAP[type(layer)]
        return [(name, getattr(layer, name)) for name in names]
    if ClusteringRegistry.supports(layer):
        return [
            (name, getattr(layer, name))
            for name in ClusteringRegistry._weight_names(layer)
        ]
    return None


def warn_frozen(frozen, api, layers):
    """Warns that the frozen layers among `frozen` keep their weights."""
    if not frozen:
        return
    shown = ", ".join(frozen[:5]) + (", ..." if len(frozen) > 5 else "")
    weights = sum(int(np.prod(w.shape)) for n in frozen for w in layers[n].weights)
    warnings.warn(
        f"{api}: {len(frozen)} frozen layers (trainable=False; {weights} weights: "
        f"{shown}) are left uncompressed. To compress them too, make them "
        "trainable first (e.g. `network.trainable = True`).",
        stacklevel=3,
    )


def layer_roles(network):
    """{layer name: (section index, "backbone" or "heads")} for every layer
    of a network or its `Structure`."""
    roles = {}
    for section in structure_lib.structure_of(network, "tfee.compress.scopes").sections:
        for name in section.backbone_layers:
            roles[name] = (section.index, "backbone")
        for name in section.head_layers:
            roles[name] = (section.index, "heads")
    return roles


def _check_value(value, argument, api, check):
    message = check(value)
    if message:
        raise ValueError(
            f"{api}: `{argument}` must be {message}. Received: {argument}={value!r}"
        )


def resolve(network, targets, scope, *, api, argument, check, weights_of):
    """Turns a scope and its targets into groups of compressible layers.

    Args:
      network: a tfee early-exit network, or its `tfee.Structure`.
      targets: a number, or a dict as the module docstring describes.
      scope: "global", "layer" or "section".
      api: the public function, for messages.
      argument: the targets' argument name, for messages.
      check: `value -> None or a description of what is accepted`.
      weights_of: `prunable_weights` or `clusterable_weights`.

    Returns:
      (groups, frozen): a list of `Group` (each with at least one layer) and
      the names of frozen layers that were left alone.

    Raises:
      ValueError: unknown scope, section or layer keys, bad values, a group
        with nothing to compress, or layers tfmot cannot handle.
    """
    if scope not in SCOPES:
        raise ValueError(
            f"{api}: `scope` must be one of {list(SCOPES)}. Received: scope={scope!r}"
        )
    structure = structure_lib.structure_of(network, api)
    network = structure.network
    roles = layer_roles(structure)
    order = [layer.name for layer in network.layers if layer.name in roles]
    layers = {layer.name: layer for layer in network.layers}
    frozen = [
        name for name in order if not layers[name].trainable and layers[name].weights
    ]

    unsupported = [
        name
        for name in order
        if layers[name].trainable_weights and weights_of(layers[name]) is None
    ]

    def compressible(name):
        return layers[name].trainable and bool(weights_of(layers[name]) or [])

    def need_support(names):
        bad = [n for n in names if n in unsupported]
        if bad:
            kind = "prune" if weights_of is prunable_weights else "cluster"
            raise ValueError(
                f"{api}: tfmot cannot {kind} the layers {bad} (types "
                f"{sorted({type(layers[n]).__name__ for n in bad})}). Make them "
                f"implement tfmot's {'PrunableLayer' if kind == 'prune' else 'ClusterableLayer'}, "
                "freeze them (trainable=False), or choose a scope that leaves them out."
            )

    if isinstance(targets, dict):
        if scope == "global":
            raise ValueError(
                f"{api}: scope='global' takes one number for `{argument}`, not a "
                f"dict. Received: {argument}={targets!r}"
            )
        for key, value in targets.items():
            _check_value(value, f"{argument}[{key!r}]", api, check)
    else:
        _check_value(targets, argument, api, check)

    groups = []
    if scope == "global":
        names = [n for n in order if n not in frozen]
        need_support(names)
        groups.append(
            Group("global", tuple(n for n in names if compressible(n)), targets)
        )
    elif scope == "layer":
        if isinstance(targets, dict):
            unknown = [k for k in targets if k not in layers]
            digits = [k for k in unknown if isinstance(k, str) and k.isdigit()]
            if digits:
                # {"1": 8}: meant as section 1 (JSON keys are strings).
                raise ValueError(
                    f"{api}: `{argument}` keys {digits} are strings; sections are "
                    f"numbered with ints ({{{int(digits[0])}: ...}}), and strings "
                    "name layers. Received: "
                    f"{argument}={targets!r}"
                )
            if unknown:
                raise ValueError(
                    f"{api}: unknown layer names {unknown} in `{argument}`; the "
                    f"network's compressible layers are "
                    f"{[n for n in order if compressible(n)]}."
                )
            need_support(list(targets))
            chosen = [(n, targets[n]) for n in order if n in targets]
        else:
            need_support([n for n in order if n not in frozen])
            chosen = [(n, targets) for n in order]
        groups = [Group(n, (n,), v) for n, v in chosen if compressible(n)]
    else:
        sections = sorted({index for index, _ in roles.values()})
        spec = (
            targets if isinstance(targets, dict) else dict.fromkeys(sections, targets)
        )
        bad = [
            k
            for k in spec
            if not (
                k in ROLES
                or (
                    isinstance(k, numbers.Integral)
                    and not isinstance(k, bool)
                    and k in sections
                )
            )
        ]
        if bad:
            raise ValueError(
                f"{api}: unknown section keys {bad} in `{argument}`; accepted: the "
                f"section numbers {sections} and {list(ROLES)}."
            )
        # A role key ("heads", "backbone") takes its layers in every section;
        # a section number takes the rest of its section, so that
        # {1: .5, 2: .7, "heads": .6} prunes every head at .6.
        named_roles = [role for role in ROLES if role in spec]
        for key in sorted(k for k in spec if k not in ROLES):
            names = [
                n
                for n in order
                if roles[n][0] == key and roles[n][1] not in named_roles
            ]
            groups.append(Group(f"section_{key}", tuple(names), spec[key]))
        for role in named_roles:
            names = [n for n in order if roles[n][1] == role]
            groups.append(Group(role, tuple(names), spec[role], role))
        for group in groups:
            need_support([n for n in group.layers if n not in frozen])
        groups = [
            dataclasses.replace(
                group, layers=tuple(n for n in group.layers if compressible(n))
            )
            for group in groups
        ]
    empty = [g.name for g in groups if not g.layers]
    if empty or not groups:
        raise ValueError(
            f"{api}: nothing to compress in {empty or [scope]}: no trainable layer "
            f"there has weights tfmot can compress (frozen layers: {frozen})."
        )
    return groups, frozen


def split_by_role(network, groups):
    """Splits every group into its backbone part and its heads part (ordered
    runs); `network` may be its `tfee.Structure`."""
    roles = layer_roles(network)
    result = []
    for group in groups:
        for role in ROLES:
            names = tuple(n for n in group.layers if roles[n][1] == role)
            if names and group.role in (None, role):
                name = group.name if group.role == role else f"{group.name}/{role}"
                result.append(Group(name, names, group.target, role))
    return result
