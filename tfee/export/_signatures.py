"""The tf.functions behind the exported signatures, and the checks before them.

Every export starts here: tfmot wrappers are stripped, the network is checked,
and one `tf.function` with a fixed input signature is traced per signature.
`exit_k` maps the image to exit k's outputs (recomputing the prefix);
`stage_k` maps the image (k=1) or features_(k-1) to features_k plus exit k's
outputs, built from `tfee.stage_models`, so that stages share weights and an
app can stop after any of them.
"""

import re
import shutil
import tempfile

from tfee import network as network_lib
from tfee import stages as stages_lib
from tfee._keras import keras
from tfee._keras import require_functional_model
from tfee._keras import tf
from tfee.compress.prune import strip as strip_wrappers
from tfee.layers.confidence import CONFIDENCE_RULES

__all__ = []

_PRUNE_WRAPPERS = ("PruneLowMagnitude",)
_CLUSTER_WRAPPERS = ("ClusterWeights", "ClusterWeightsMHA", "ClusterWeightsRNN")
_SIGNATURE = re.compile(r"(exit|stage)_(\d+)$")


def _wrapper_names(model):
    return {type(layer).__name__ for layer in model.layers}


def strip(network, api="tfee.export.strip"):
    """A copy of `network` without tfmot pruning or clustering wrappers.

    Sparsity and clusters stay in the weights; only the wrappers (and their
    masks and cluster indices) go. A network without wrappers is returned as
    is, since nothing would change.

    Args:
      network: a tfee early-exit network, possibly pruned or clustered.
      api: the public function calling, for messages.

    Returns:
      A functional model ready for conversion.

    Raises:
      TypeError: `network` is not a functional tf_keras model.
      ValueError: `network` is not an early-exit network.
    """
    require_functional_model(network, api, argument="network", single_output=False)
    stripped = network
    if _wrapper_names(network) & set(_PRUNE_WRAPPERS + _CLUSTER_WRAPPERS):
        stripped = strip_wrappers(network)
    if not network_lib.is_early_exit(stripped):
        raise ValueError(
            f"{api} expects a tfee early-exit network (outputs exit_1..exit_K, "
            "see tfee.attach_exits). Received: network with outputs "
            f"{list(stripped.output_names)}"
        )
    return stripped


def signature_names(num_exits):
    """All signature names of a K-exit network, exits first."""
    return [f"exit_{k}" for k in range(1, num_exits + 1)] + [
        f"stage_{k}" for k in range(1, num_exits + 1)
    ]


def select_signatures(signatures, num_exits, api):
    """Validates a user's signature selection; returns the names, in order."""
    every = signature_names(num_exits)
    if signatures is None:
        return every
    if isinstance(signatures, str) or not all(isinstance(s, str) for s in signatures):
        raise TypeError(
            f"{api}: `signatures` must be None or a list of signature names "
            f"such as ['exit_1', 'stage_1']. Received: signatures={signatures!r}"
        )
    unknown = [s for s in signatures if s not in every]
    if unknown or not signatures:
        raise ValueError(
            f"{api}: unknown signature name(s) {unknown}; this network has "
            f"{every}. Received: signatures={list(signatures)!r}"
        )
    return [s for s in every if s in signatures]


def rule_confidence(logits, rule):
    """A (batch,) confidence from logits, with ops every TFLite target runs."""
    probabilities = tf.nn.softmax(logits, axis=-1)
    if rule == "max_softmax":
        return tf.reduce_max(probabilities, axis=-1)
    if rule == "entropy":
        classes = float(max(int(logits.shape[-1]), 2))
        log_p = tf.nn.log_softmax(logits, axis=-1)
        entropy = -tf.reduce_sum(probabilities * log_p, axis=-1)
        return 1.0 - entropy / float(tf.math.log(classes))
    top2 = tf.math.top_k(probabilities, k=2).values
    return top2[:, 0] - top2[:, 1]


def check_rule(rule, api):
    if rule not in CONFIDENCE_RULES:
        raise ValueError(
            f"{api}: unknown `confidence_rule`, expected one of "
            f"{CONFIDENCE_RULES}. Received: confidence_rule={rule!r}"
        )


def _exit_outputs(logits, learned, rule, with_confidence=True):
    outputs = {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1)}
    if learned is not None:
        outputs["confidence"] = tf.reshape(learned, [-1])
    elif with_confidence:
        outputs["confidence"] = rule_confidence(logits, rule)
    return outputs


def learned_confidence(network):
    """Per exit, whether its head learns a confidence."""
    return [info.confidence is not None for info in network_lib.exits(network)]


def functions(network, names, rule, batch=None, rule_confidence_output=True):
    """{signature name: concrete function} for the stripped `network`.

    Args:
      network: a stripped early-exit network.
      names: signature names, from `select_signatures`.
      rule: confidence rule for heads without a learned confidence.
      batch: the fixed batch size of the inputs, or None for any.
      rule_confidence_output: add a rule-based "confidence" output where the
        head learns none (TFLite Micro exports leave it to the C++ loop).
    """
    infos = network_lib.exits(network)
    outputs = dict(zip(network.output_names, network.outputs))
    stage_models = stages_lib.stage_models(network)
    result = {}
    for name in names:
        kind, k = _SIGNATURE.match(name).groups()
        k = int(k)
        info = infos[k - 1]
        if kind == "exit":
            wanted = [outputs[info.name]]
            if info.confidence:
                wanted.append(outputs[info.confidence])
            model = keras.Model(network.inputs, wanted, name=f"{name}_model")
            spec = tf.TensorSpec(
                [batch] + network.inputs[0].shape[1:].as_list(),
                tf.float32,
                name="image",
            )

            def call(image, model=model, learned=bool(info.confidence)):
                result = model(image, training=False)
                if not learned:
                    result = [result] if not isinstance(result, list) else result
                logits = result[0]
                return _exit_outputs(
                    logits, result[1] if learned else None, rule, rule_confidence_output
                )

        else:
            model = stage_models[k - 1]
            input_name = "image" if k == 1 else f"features_{k - 1}"
            spec = tf.TensorSpec(
                [batch] + model.inputs[0].shape[1:].as_list(),
                tf.float32,
                name=input_name,
            )

            def call(inputs, model=model, k=k):
                staged = model(inputs, training=False)
                result = _exit_outputs(
                    staged["logits"],
                    staged.get("confidence"),
                    rule,
                    rule_confidence_output,
                )
                if "features" in staged:
                    result[f"features_{k}"] = staged["features"]
                return result

        result[name] = tf.function(call, input_signature=[spec]).get_concrete_function()
    return result


# Ops that run Python: no TFLite target can execute them.
_PYTHON_OPS = ("PyFunc", "PyFuncStateless", "EagerPyFunc")


def check_ops(concrete_functions, api):
    """Raises before conversion if a traced signature calls back into Python."""
    found = set()
    for name, function in concrete_functions.items():
        graphs = [function.graph] + [
            f.graph
            for f in getattr(function.graph, "_functions", {}).values()
            if hasattr(f, "graph")
        ]
        for graph in graphs:
            for op in graph.get_operations():
                if op.type in _PYTHON_OPS:
                    found.add(f"{name}: {op.type} ({op.name})")
    if found:
        raise ValueError(
            f"{api}: the network calls Python code (tf.py_function / "
            f"tf.numpy_function), which no TFLite target can run: {sorted(found)}. "
            "Replace those layers with TensorFlow ops."
        )


def converter(network, concrete_functions):
    """A TFLiteConverter over a SavedModel holding the signatures by name.

    `from_concrete_functions` names multi-function signatures after the traced
    graphs, so the functions are saved once under their own keys instead.

    Returns:
      (converter, temporary directory to remove once converted).
    """
    directory = tempfile.mkdtemp(prefix="tfee-export-")
    module = tf.Module()
    module.network = network
    tf.saved_model.save(module, directory, signatures=concrete_functions)
    return (
        tf.lite.TFLiteConverter.from_saved_model(
            directory, signature_keys=list(concrete_functions)
        ),
        directory,
    )


def remove(directory):
    shutil.rmtree(directory, ignore_errors=True)
