"""Rebuilding a functional model as one flat graph, optionally at a new input size.

The everyday transfer-learning model nests a whole pre-trained network as one
layer (`x = base(inputs)`): its stage outputs are not layers of the outer
model, so no exit can attach there. `flatten_model` replays every nested
functional model's layers in the outer graph, so each inner layer becomes a
layer of the result, with the same weights and the same call arguments
(`base(inputs, training=False)` keeps its BatchNormalization in inference).
"""

from tfee import _graph
from tfee._keras import keras
from tfee._keras import require_functional_model
from tfee._keras import tf

__all__ = ["flatten_model", "has_nested_models", "unknown_input_dims"]


def _is_nested_graph(layer):
    return isinstance(layer, keras.Model) and getattr(layer, "_is_graph_network", False)


def has_nested_models(model):
    """True if any layer of `model` is itself a functional or Sequential model."""
    return any(_is_nested_graph(layer) for layer in model.layers)


def unknown_input_dims(model):
    """True if the model's input has an unknown dimension besides the batch."""
    return any(None in tuple(t.shape)[1:] for t in model.inputs)


def _replay(model, inputs, mapping, training):
    """Calls `model`'s layers on `inputs`, recursing into nested models.

    `mapping` maps id(keras tensor of the source graph) -> tensor of the new
    graph; `training` is the `training` argument the enclosing call fixed.
    Returns the new tensors for `model.outputs`.
    """
    for source, target in zip(model.inputs, tf.nest.flatten(inputs)):
        mapping[str(id(source))] = target
    for graph_node in _graph.ordered_nodes(model):
        layer, node = graph_node.layer, graph_node.node
        if isinstance(layer, keras.layers.InputLayer):
            continue
        tensor_dict = {}
        for kt_id, _ in node._keras_inputs_ids_and_indices:
            tensor_dict.setdefault(kt_id, []).append(mapping[kt_id])
        args, kwargs = node.map_arguments(tensor_dict)
        if training is not None and "training" not in kwargs:
            if getattr(layer, "_expects_training_arg", False):
                kwargs["training"] = training
        if _is_nested_graph(layer):
            inner_training = kwargs.get("training", training)
            outputs = _replay(layer, args[0], mapping, inner_training)
            outputs = tf.nest.pack_sequence_as(layer.outputs, outputs)
        else:
            outputs = layer(*args, **kwargs)
        for source, target in zip(
            tf.nest.flatten(node.outputs), tf.nest.flatten(outputs)
        ):
            mapping[str(id(source))] = target
    return [mapping[str(id(t))] for t in model.outputs]


def _all_layer_names(model):
    names = []
    for layer in model.layers:
        if _is_nested_graph(layer):
            names.extend(_all_layer_names(layer))
        elif not isinstance(layer, keras.layers.InputLayer):
            names.append(layer.name)
    return names


def flatten_model(model, input_shape=None):
    """A copy of `model` with nested models replaced by their layers.

    Args:
      model: a single-input functional or Sequential tf_keras model; its
        layers may be functional or Sequential models themselves (for example
        a `keras.applications` base called as `base(inputs)`).
      input_shape: optional (height, width, channels) to rebuild the model
        at, for a model whose input has unknown dimensions (`(None, None, 3)`).
        tfee needs fixed sizes to place exits and count MACs.

    Returns:
      A new functional model with its own copy of the weights, whose layers
      are the nested models' layers under their own names. Layers keep their
      `trainable` flag, and a nested call's `training=False` stays on every
      layer inside it.

    Raises:
      ValueError: two layers would share a name once flattened, or
        `input_shape` is not a tuple of positive integers.

    Example:
      >>> base = keras.applications.MobileNetV2(include_top=False, weights=None,
      ...                                       input_shape=(96, 96, 3))
      >>> inputs = keras.Input((96, 96, 3))
      >>> x = keras.layers.GlobalAveragePooling2D()(base(inputs, training=False))
      >>> model = keras.Model(inputs, keras.layers.Dense(10)(x))
      >>> flat = tfee.flatten_model(model)
      >>> "block_6_expand" in [layer.name for layer in flat.layers]
      True
    """
    api = "tfee.flatten_model"
    require_functional_model(model, api, single_output=False)
    if input_shape is not None:
        input_shape = tuple(input_shape) if not isinstance(input_shape, str) else ()
        if len(input_shape) != len(model.inputs[0].shape) - 1 or any(
            isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in input_shape
        ):
            raise ValueError(
                f"{api}: `input_shape` must be {len(model.inputs[0].shape) - 1} "
                "positive integers (the input without its batch dimension). "
                f"Received: input_shape={input_shape!r}"
            )
    names = _all_layer_names(model)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(
            f"{api}: flattening `model` would give several layers the name(s) "
            f"{repeated}: a nested model and the outer model (or two nested "
            "models) use the same layer names. Give the layers unique names "
            "(`name=` when building them) before flattening."
        )
    # Replay a private copy: calling the layers again adds nodes to them, and
    # the caller's model must stay as it was.
    source = keras.models.clone_model(model)
    source.set_weights(model.get_weights())
    spec = source.inputs[0]
    new_input = keras.Input(
        shape=input_shape or tuple(spec.shape)[1:],
        dtype=spec.dtype,
        name=source.input_names[0],
    )
    outputs = _replay(source, new_input, {}, None)
    replayed = keras.Model(new_input, outputs, name=model.name)
    # A second copy gives every layer a single node, so `layer.output` works.
    flat = keras.models.clone_model(replayed)
    flat.set_weights(replayed.get_weights())
    return flat
