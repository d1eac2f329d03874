"""Attaching exits to a functional model, and taking them off again.

The network `attach_exits` returns is a plain functional tf_keras model whose
outputs are named `exit_1 ... exit_K`, then `confidence_k`; `tfee.structure`
reads everything else back from its graph.
"""

import warnings

from tfee import _graph
from tfee import _macs
from tfee import naming
from tfee import structure as structure_lib
from tfee._checks import check_bool
from tfee._keras import keras
from tfee._keras import require_functional_model
from tfee._keras import require_tf_keras
from tfee._keras import tf
from tfee.flatten import flatten_model
from tfee.flatten import has_nested_models
from tfee.flatten import unknown_input_dims
from tfee.layers.head_factory import make_head
from tfee.placement import Layers
from tfee.placement import Placement
from tfee.placement import PlacementContext

__all__ = ["attach_exits", "detach_exits"]


def _is_softmax(layer):
    return isinstance(layer, keras.layers.Softmax) or (
        getattr(layer, "activation", None) is keras.activations.softmax
    )


def _final_logits(backbone, api):
    """The backbone's classifier output as logits (softmax removed in our clone).

    Raises:
      ValueError: the output is not a (batch, classes >= 2) classifier ending
        in softmax or in no activation (logits).
    """
    output = backbone.outputs[0]
    layer = output._keras_history.layer
    if output.shape.rank != 2 or output.shape[-1] is None or output.shape[-1] < 2:
        raise ValueError(
            f"{api}: `model` must end in a (batch, classes) classifier with at "
            "least 2 classes (softmax or logits); exits predict a class each. "
            f"Received: output shape {tuple(output.shape.as_list())} from layer "
            f"{layer.name!r}. A binary classifier with one sigmoid unit becomes "
            "Dense(2) with softmax; regression models cannot take exits."
        )
    activation = getattr(layer, "activation", None)
    if isinstance(layer, (keras.layers.Softmax, keras.layers.Activation)):
        if _is_softmax(layer):
            node = layer._inbound_nodes[output._keras_history.node_index]
            return node.keras_inputs[0]
    elif activation is keras.activations.softmax:
        # The clone is ours: its classifier can emit logits instead.
        layer.activation = keras.activations.linear
        return output
    if activation not in (None, keras.activations.linear):
        name = getattr(activation, "__name__", repr(activation))
        raise ValueError(
            f"{api}: `model` must end in softmax or in logits (no activation); "
            f"exits are trained and calibrated as softmax classifiers. Received: "
            f"the output layer {layer.name!r} applies {name!r}. Use softmax "
            "(or no activation) on a layer with one unit per class."
        )
    _refuse_feature_extractor(layer, output, api)
    return output


# Layers that pass features on without a classifier's weights: a model ending
# in one (and fed by no 1x1 convolution to classes, as SqueezeNet's head is)
# is a feature extractor (e.g. keras.applications with include_top=False).
_FEATURE_LAYERS = (
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.Flatten,
    keras.layers.Dropout,
    keras.layers.BatchNormalization,
)


def _refuse_feature_extractor(layer, output, api):
    """Raises where the logits would be a feature extractor's channels."""
    channels, seen = output.shape[-1], []
    while isinstance(_graph.unwrap(layer), _FEATURE_LAYERS):
        seen.append(layer.name)
        output = layer._inbound_nodes[output._keras_history.node_index].keras_inputs[0]
        layer = output._keras_history.layer
    if not seen:
        return
    unwrapped = _graph.unwrap(layer)
    if isinstance(unwrapped, keras.layers.Dense) or (
        isinstance(unwrapped, keras.layers.Conv2D)
        and tuple(unwrapped.kernel_size) == (1, 1)
    ):
        return  # A classifier (Dense, or SqueezeNet's 1x1 conv) before them.
    raise ValueError(
        f"{api}: `model` must end in a classifier (e.g. Dense(classes)); its "
        f"output comes from {' <- '.join(seen)} after {layer.name!r} "
        f"({type(unwrapped).__name__}), so its {channels} feature channels would "
        "be taken for classes. Add the classifier first, e.g. outputs = "
        "keras.layers.Dense(num_classes)(model.output). Received: a feature "
        "extractor"
    )


def _clone(model):
    """A copy with its own variables (clone_model alone would share none, but
    Sequential input layers and weights need care)."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    if isinstance(clone, keras.Sequential):
        clone = keras.Model(clone.inputs, clone.outputs, name=clone.name)
    return clone


# Layers that only pad or crop: an exit there reads the border the next layer
# needs, never a feature the backbone computed.
_PADDING_LAYERS = (
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.ZeroPadding3D,
    keras.layers.Cropping1D,
    keras.layers.Cropping2D,
    keras.layers.Cropping3D,
)


def _placement_context(backbone, logits, head, with_confidence):
    nodes = _graph.ordered_nodes(backbone)
    macs_by_layer = {n.name: _macs.node_macs(n) for n in nodes}
    node_by_name = {n.name: n for n in nodes}
    depends_on = _graph.dependencies(nodes)
    logits_ancestors = depends_on(logits)
    cut_points = _graph.cut_point_layers(backbone, nodes)
    preferred = set(_graph.preferred_cut_points(backbone, nodes, cut_points))
    logits_layer = logits._keras_history.layer.name
    candidates, attachable, rejected = [], [], {}
    for name in cut_points:
        node = node_by_name[name]
        shape = tf.TensorShape(node.output_shapes)
        upstream = depends_on(tf.nest.flatten(node.node.outputs)[0])
        cumulative = sum(macs_by_layer.get(a, 0) for a in upstream)
        if name == logits_layer or name not in logits_ancestors:
            rejected[name] = "is the classifier or comes after it"
        elif shape.rank != 4 or None in shape[1:]:
            rejected[name] = (
                f"outputs shape {tuple(shape.as_list())}, not a 4-D feature map "
                "(exit heads need (batch, height, width, channels))"
            )
        elif isinstance(_graph.unwrap(node.layer), _PADDING_LAYERS):
            rejected[name] = (
                "only pads or crops its input (an exit belongs after the layer "
                "that computes on it)"
            )
        elif cumulative == 0:
            rejected[name] = (
                "comes before any computation (input preprocessing), so an exit "
                "there would see the raw input"
            )
        else:
            row = (name, cumulative, tuple(shape.as_list()))
            attachable.append(row)
            if name in preferred:
                candidates.append(row)
    total = sum(macs_by_layer.get(a, 0) for a in logits_ancestors)
    num_classes = logits.shape[-1]

    def head_macs(shape):
        layer = make_head(head, num_classes, with_confidence, name="_cost_probe")
        layer.build(shape)
        return layer.macs(shape)

    return PlacementContext(
        layer_names=tuple(n.name for n in nodes),
        cut_points=tuple(cut_points),
        candidates=tuple(candidates),
        attachable=tuple(attachable),
        rejected=rejected,
        total_macs=total,
        head_macs=head_macs,
    )


def attach_exits(
    model,
    placement,
    head="sdn",
    *,
    with_confidence=False,
    cascading=False,
    freeze_backbone=False,
    input_shape=None,
    name=None,
):
    """Adds exit heads to a functional model; returns a new early-exit network.

    The input model is left unchanged: the network gets its own copy of the
    backbone's weights. A classifier that ends in softmax is turned into
    logits in that copy.

    Args:
      model: a single-input, single-output functional (or Sequential) tf_keras
        model ending in a (batch, classes) classifier (softmax or logits).
        Nested functional models (a `keras.applications` base called as
        `base(inputs)`) are flattened first (`tfee.flatten_model`), so exits
        can attach to their inner layers.
      placement: a `tfee.Placement` (`Layers`, `FlopsFractions`, `PTEENet`) or
        a list of layer names.
      head: "linear", "sdn", "conv", an `ExitHead` subclass, or a callable
        `(num_classes, with_confidence, name) -> ExitHead`.
      with_confidence: give every added head a learned confidence output.
      cascading: ZTW's cascading connections (Wołczyk et al., NeurIPS 2021):
        every head after the first also reads the previous exit's logits
        (see `tfee.layers.ExitHead`). The stage chain then hands stage k+1
        both features_k and exit k's logits (`tfee.stage_models`, the
        `stage_k` signatures and the micro firmware carry both).
      freeze_backbone: make the backbone's layers non-trainable, so training
        updates only the heads (PTEENet's post-trained mode).
      input_shape: (height, width, channels) to build the network at, needed
        when the model's input has unknown dimensions (`(None, None, 3)`).
      name: the returned model's name (default: "<model>_early_exit").

    Returns:
      A functional model with outputs `exit_1..exit_K` (logits, shallowest
      first) followed by `confidence_k` for heads with learned confidence.

    Raises:
      TypeError: `model` is a Keras 3, subclassed or non-model object.
      ValueError: the model has several inputs/outputs, already has exits,
        has an input of unknown size and no `input_shape`, does not end in a
        softmax or logits classifier, or the placement names layers that
        cannot hold an exit.

    Example:
      >>> backbone = tfee.backbones.resnet_cifar(depth=20)
      >>> net = tfee.attach_exits(backbone, tfee.FlopsFractions([0.3, 0.6]))
      >>> net.output_names
      ['exit_1', 'exit_2', 'exit_3']
    """
    api = "tfee.attach_exits"
    require_tf_keras(model, "model", api, expected="functional model")
    if isinstance(model, keras.Model) and structure_lib.is_early_exit(model):
        raise ValueError(
            f"{api}: `model` already has exits ({model.output_names}); attach to "
            "its backbone instead (tfee.detach_exits returns it)."
        )
    require_functional_model(model, api)
    if isinstance(placement, (list, tuple)):
        placement = Layers(placement)
    if not isinstance(placement, Placement):
        raise TypeError(
            f"{api}: `placement` must be a tfee.Placement (Layers, FlopsFractions, "
            f"PTEENet) or a list of layer names. Received: placement={placement!r}"
        )
    # Checked before cloning so that a bad head costs nothing.
    make_head(head, 2, with_confidence, name="_validation_probe")
    check_bool(cascading, "cascading", api)

    if has_nested_models(model) or input_shape is not None:
        backbone = flatten_model(model, input_shape)
    else:
        backbone = _clone(model)
    if unknown_input_dims(backbone):
        raise ValueError(
            f"{api}: `model`'s input has unknown dimensions "
            f"{tuple(backbone.inputs[0].shape)[1:]}; placing exits and counting "
            "MACs needs a fixed size. Pass the size the network will run at, "
            "for example input_shape=(224, 224, 3)."
        )
    clashing = [
        layer.name for layer in backbone.layers if naming.parse_output(layer.name)
    ]
    if clashing:
        raise ValueError(
            f"{api}: the model's layer names {clashing} collide with the exit "
            "output names tfee creates (exit_k, confidence_k); rename them."
        )
    logits = _final_logits(backbone, api)
    context = _placement_context(backbone, logits, head, with_confidence)
    attach_names = placement.resolve(context)
    if cascading and len(attach_names) < 2:
        raise ValueError(
            f"{api}: `cascading=True` connects each head to the previous one, "
            "so it needs at least two heads; the placement gives "
            f"{len(attach_names)} ({list(attach_names)}). Received: cascading=True"
        )
    _warn_about_crowded_exits(context, attach_names)
    num_classes = logits.shape[-1]

    if freeze_backbone:
        for layer in backbone.layers:
            layer.trainable = False

    exit_outputs, confidence_outputs = [], []
    for k, attach in enumerate(attach_names, start=1):
        features = backbone.get_layer(attach).output
        head_layer = make_head(
            head, num_classes, with_confidence, name=f"{naming.exit_name(k)}_head"
        )
        if cascading and exit_outputs:
            # The previous exit's output: stage k+1 receives exactly it.
            features = [features, exit_outputs[-1]]
        result = head_layer(features)
        logits_k = result[0] if with_confidence else result
        exit_outputs.append(
            keras.layers.Activation("linear", name=naming.exit_name(k))(logits_k)
        )
        if with_confidence:
            confidence_outputs.append(
                keras.layers.Activation("linear", name=naming.confidence_name(k))(
                    result[1]
                )
            )
    final_name = naming.exit_name(len(attach_names) + 1)
    exit_outputs.append(keras.layers.Activation("linear", name=final_name)(logits))
    network = keras.Model(
        backbone.inputs,
        exit_outputs + confidence_outputs,
        name=name or f"{model.name}_early_exit",
    )
    _warn_about_costly_exits(network, context.total_macs)
    return network


# Consecutive exits closer than this share of the full network's MACs.
CROWDED_SHARE = 0.01


def _warn_about_crowded_exits(context, attach_names):
    """Warns when two consecutive exits sit almost at the same depth: the
    deeper one costs its head but can hardly be more accurate."""
    position = {name: macs for name, macs, _ in context.attachable}
    depths = [position.get(name) for name in attach_names]
    crowded = [
        f"{first} and {second} ({100 * (b - a) / context.total_macs:.2f}%)"
        for first, second, a, b in zip(
            attach_names, attach_names[1:], depths, depths[1:]
        )
        if a is not None
        and b is not None
        and b - a < CROWDED_SHARE * context.total_macs
    ]
    if crowded and context.total_macs > 0:
        warnings.warn(
            "tfee.attach_exits: consecutive exits after "
            + ", ".join(crowded)
            + f" are less than {CROWDED_SHARE:.0%} of the full network's MACs apart: "
            "the deeper one pays its head for almost no extra depth. Place fewer "
            "exits or spread them out.",
            stacklevel=3,
        )


def _warn_about_costly_exits(network, backbone_macs):
    """Warns when leaving at an internal exit costs at least the backbone alone.

    Heavy heads (conv heads on wide early features, PTEENet-style placement)
    can make a sample that leaves early pay more than the whole backbone:
    such an exit never saves compute.
    """
    infos = structure_lib.read_structure(network, "tfee.attach_exits").exits
    costly = [
        f"{info.name} ({info.cumulative_macs / backbone_macs:.2f}x)"
        for info in infos[:-1]
        if info.cumulative_macs >= backbone_macs
    ]
    if costly and backbone_macs > 0:
        warnings.warn(
            "tfee.attach_exits: leaving at "
            + ", ".join(costly)
            + " costs at least the backbone alone (MACs, heads on the way "
            "included), so those exits can never save compute. Choose a lighter "
            "head (e.g. head='linear' or 'sdn'), fewer exits, or earlier placement.",
            stacklevel=3,
        )


def detach_exits(network):
    """The inverse of `attach_exits`: the backbone alone, as a new model.

    The returned model has its own copy of the weights and outputs the deepest
    exit's logits.
    """
    logits = structure_lib.exit_tensors(network, "tfee.detach_exits")[-1].features
    view = keras.Model(
        network.inputs, logits, name=network.name.replace("_early_exit", "")
    )
    return _clone(view)
