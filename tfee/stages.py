"""An early-exit network cut into stages that share its layers (and weights).

Stage 1 maps the input to (features_1, exit_1 outputs); stage k maps
features_(k-1) (and exit k-1's logits, where head k is cascading) to
(features_k, exit_k outputs); the last stage maps features_(K-1) to exit_K's
logits. Running them in order recomputes nothing,
so a runtime can stop after any stage: this is what staged inference in
TensorFlow and the TFLite stage signatures are built from.
"""

from tfee import naming
from tfee import structure as structure_lib
from tfee._keras import keras
from tfee._keras import tf

__all__ = ["next_stage_input", "stage_models"]


def _rebuild(nodes, inputs_map):
    """Calls `nodes`' layers again on new tensors; returns the id -> tensor map."""
    tensors = dict(inputs_map)
    for node in nodes:
        call_args = node.node.call_args
        call_kwargs = node.node.call_kwargs

        def substitute(value):
            if id(value) in tensors:
                return tensors[id(value)]
            return value

        args = tf.nest.map_structure(substitute, call_args)
        kwargs = tf.nest.map_structure(substitute, call_kwargs)
        outputs = node.layer(*args, **kwargs)
        for old, new in zip(
            tf.nest.flatten(node.node.outputs), tf.nest.flatten(outputs)
        ):
            tensors[id(old)] = new
    return tensors


def stage_models(network):
    """One Keras model per exit, chaining feature maps from stage to stage.

    Args:
      network: a tfee early-exit network, or its `tfee.Structure` (whose
        stage models are then built once and shared by every caller).

    Returns:
      A list of K functional models sharing the network's layers. Each takes
      one tensor (the image for stage 1, features_(k-1) after) and returns a
      dict with "logits", "confidence" (only where the head learns one) and,
      except for the last stage, "features" (the input of stage k+1). Where
      head k is cascading (`attach_exits(cascading=True)`), stage k takes the
      list [features_(k-1), logits of stage k-1].

    Example:
      >>> stages = tfee.stage_models(net)
      >>> out = stages[0](images)
      >>> out2 = stages[1](tfee.stages.next_stage_input(stages[1], out))
    """
    structure = structure_lib.structure_of(network, "tfee.stage_models")
    return list(structure.derived("stage_models", _build))


def _build(structure):
    models = []
    previous, previous_exit = structure.network.inputs[0], None
    for k, (info, exit_k, section) in enumerate(
        zip(structure.exits, structure.tensors, structure.sections), start=1
    ):
        stage_input = keras.Input(
            shape=previous.shape[1:],
            dtype=previous.dtype,
            name=naming.stage_input_name(k),
        )
        inputs_map = {id(previous): stage_input}
        if info.cascading:
            logits_input = keras.Input(
                shape=previous_exit.shape[1:],
                dtype=previous_exit.dtype,
                name=naming.previous_logits_name(k),
            )
            inputs_map[id(previous_exit)] = logits_input
            stage_input = [stage_input, logits_input]
        names = set(section.layers)
        stage_nodes = [n for n in structure.nodes if n.name in names]
        tensors = _rebuild(stage_nodes, inputs_map)
        result = {naming.LOGITS: tensors[id(exit_k.logits)]}
        if exit_k.confidence is not None:
            result[naming.CONFIDENCE] = tensors[id(exit_k.confidence)]
        if k < structure.num_exits:
            result[naming.FEATURES] = tensors[id(exit_k.features)]
        models.append(keras.Model(stage_input, result, name=naming.stage_name(k)))
        previous, previous_exit = exit_k.features, exit_k.logits
    return tuple(models)


def next_stage_input(next_stage, outputs):
    """What stage k+1 reads from stage k's `outputs` dict: features_k, or
    [features_k, logits_k] where `next_stage` is cascading (two inputs).
    Every runtime hands stages on through this one rule (LiteRT and the
    firmware by the same names: `naming.stage_input_name`,
    `naming.previous_logits_name`)."""
    features = outputs[naming.FEATURES]
    if len(next_stage.inputs) == 1:
        return features
    return [features, outputs[naming.LOGITS]]
