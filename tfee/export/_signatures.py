"""The tf.functions behind the exported signatures, and the checks before them.

Every export starts here: tfmot wrappers are stripped, the network is checked,
and one `tf.function` with a fixed input signature is traced per signature.
`exit_k` maps the image to exit k's logits (recomputing the prefix);
`stage_k` maps the image (k=1) or features_(k-1) to features_k plus exit k's
outputs, built from `tfee.stage_models`, so that stages share weights and an
app can stop after any of them.
"""

import gc
import shutil
import tempfile
import warnings

from tfee import compress
from tfee import naming
from tfee import stages as stages_lib
from tfee import structure as structure_lib
from tfee._keras import keras
from tfee._keras import require_functional_model
from tfee._keras import tf

__all__ = []


def stripped_network(network, api):
    """`tfee.compress.strip(network)`, checked to be an early-exit network.

    Sparsity and clusters stay in the weights; only tfmot's pruning and
    clustering wrappers go. A quantization-aware network is used as it is.

    Raises:
      TypeError: `network` is not a functional tf_keras model.
      ValueError: `network` is not an early-exit network.
    """
    require_functional_model(network, api, argument="network", single_output=False)
    # A QAT network keeps its quantize wrappers: they carry the int8 ranges
    # it learned (and it holds no pruning or clustering wrappers to strip).
    # Otherwise a copy, even without wrappers: the stage models call the
    # layers again, and an export must not add nodes to the caller's network.
    if compress.is_quantization_aware(network):
        stripped = network
    else:
        stripped = compress.strip(network)
    if not structure_lib.is_early_exit(stripped):
        raise ValueError(
            f"{api} expects a tfee early-exit network (outputs exit_1..exit_K, "
            "see tfee.attach_exits). Received: network with outputs "
            f"{list(stripped.output_names)}"
        )
    return stripped


def stripped_structure(network, api):
    """The `Structure` of `stripped_network(network)`, read once: every step
    of an export reads the network from it."""
    return structure_lib.read_structure(stripped_network(network, api), api)


def signature_names(num_exits):
    """All signature names of a K-exit network, exits first."""
    return [naming.exit_name(k) for k in range(1, num_exits + 1)] + [
        naming.stage_name(k) for k in range(1, num_exits + 1)
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


def _exit_outputs(logits, learned):
    """A signature's exit outputs: the logits every runtime decides from
    (`tfee.rules`), and the learned confidence where the head has one."""
    outputs = {naming.LOGITS: logits}
    if learned is not None:
        outputs[naming.CONFIDENCE] = tf.reshape(learned, [-1])
    return outputs


def functions(structure, names, batch=None, input_ranges=None):
    """{signature name: concrete function} for a stripped network.

    Args:
      structure: the stripped early-exit network's `Structure`.
      names: signature names, from `select_signatures`.
      batch: the fixed batch size of the inputs, or None for any.
      input_ranges: {k: {input name: (min, max)}}: stage_k's input passes a
        fake int8 quantization with this range first, so that the converter
        gives it exactly these parameters (a QAT network's stage inputs must
        read what the previous stage writes, in the range it writes it).
    """
    input_ranges = input_ranges or {}
    network = structure.network
    result = {}
    for name in names:
        kind, k = naming.parse_signature(name)
        info, exit_k = structure.exits[k - 1], structure.tensors[k - 1]
        if kind == naming.EXIT:
            wanted = [exit_k.logits]
            if info.confidence:
                wanted.append(exit_k.confidence)
            model = keras.Model(network.inputs, wanted, name=f"{name}_model")
            spec = tf.TensorSpec(
                [batch] + network.inputs[0].shape[1:].as_list(),
                tf.float32,
                name=naming.IMAGE,
            )

            def call(image, model=model, learned=bool(info.confidence)):
                result = model(image, training=False)
                if not isinstance(result, (list, tuple)):
                    result = [result]
                return _exit_outputs(result[0], result[1] if learned else None)

            specs = [spec]
        else:
            model = stages_lib.stage_models(structure)[k - 1]
            # The stage model's inputs are named as the signature's are.
            input_names = list(model.input_names)
            specs = [
                tf.TensorSpec(
                    [batch] + tensor.shape[1:].as_list(), tf.float32, name=input_name
                )
                for tensor, input_name in zip(model.inputs, input_names)
            ]
            limits = input_ranges.get(k, {})

            def call(*inputs, model=model, k=k, limits=limits, names=input_names):
                inputs = [
                    (
                        value
                        if input_name not in limits
                        else tf.quantization.fake_quant_with_min_max_args(
                            value,
                            min=limits[input_name][0],
                            max=limits[input_name][1],
                            num_bits=8,
                        )
                    )
                    for value, input_name in zip(inputs, names)
                ]
                staged = model(inputs if len(inputs) > 1 else inputs[0], training=False)
                result = _exit_outputs(staged["logits"], staged.get("confidence"))
                if "features" in staged:
                    result[naming.features_name(k)] = staged["features"]
                return result

        result[name] = tf.function(call, input_signature=specs).get_concrete_function()
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


def converter(network, concrete_functions, per_channel=True):
    """A TFLiteConverter over a SavedModel holding the signatures by name.

    `from_concrete_functions` names multi-function signatures after the traced
    graphs, so the functions are saved once under their own keys instead.
    `per_channel=False` gives quantized weights one scale per kernel: a kernel
    clustered per tensor (BN folded first) keeps its cluster count of int8
    values, instead of a different set per channel.

    Returns:
      (converter, temporary directory to remove once converted).
    """
    directory = tempfile.mkdtemp(prefix="tfee-export-")
    # Track the variables only: saving the Keras network itself makes
    # tf.saved_model trace every layer's call again (most of the export time).
    module = tf.Module()
    module.variables_ = list(network.variables)
    try:
        tf.saved_model.save(module, directory, signatures=concrete_functions)
    except AssertionError:
        # A resource outside network.variables (a lookup table in a
        # preprocessing layer): save the network itself, which tracks it.
        module = tf.Module()
        module.network = network
        tf.saved_model.save(module, directory, signatures=concrete_functions)
    result = _from_saved_model(directory, list(concrete_functions))
    if not per_channel:
        result._experimental_disable_per_channel = True
    return result, directory


def _from_saved_model(directory, keys):
    """`tf.lite.TFLiteConverter.from_saved_model(directory, signature_keys=
    keys)`, without loading the SavedModel a first time only to check that
    the keys are in it (tfee has just saved them; the conversion loads it
    again anyway): the same converter, as `from_saved_model` makes it, from
    TensorFlow's internal classes where they are as expected, else the
    public call."""
    try:
        from tensorflow.lite.python import conversion_metadata_schema_py_generated
        from tensorflow.lite.python import lite

        model_types = conversion_metadata_schema_py_generated.ModelType
        lite.TFLiteConverterBase._set_original_model_type(model_types.TF_SAVED_MODEL)
        return lite.TFLiteSavedModelConverterV2(
            directory, {tf.saved_model.SERVING}, keys
        )
    except (ImportError, AttributeError, TypeError):
        # Another TensorFlow than the 2.21 these internals were read from.
        return tf.lite.TFLiteConverter.from_saved_model(directory, signature_keys=keys)


def run(converter):
    """`converter.convert()`, without the deprecation warning TensorFlow's
    int8 calibrator raises for the tf.lite.Interpreter it makes itself: tfee
    runs every file on LiteRT, so the warning would point users at nothing
    they wrote.

    The objects alive before the conversion are frozen out of the garbage
    collector meanwhile: the converter runs a full `gc.collect()` to free
    the SavedModel it loaded, which would otherwise walk every object of the
    process (TensorFlow, Keras, the network), a third of a small stage's
    conversion time. What the conversion leaves behind is still collected;
    anything older waits for the next collection. A caller who froze
    objects already keeps them frozen."""
    freezing = gc.get_freeze_count() == 0
    if freezing:
        gc.freeze()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=r".*tf\.lite\.Interpreter is deprecated"
            )
            return converter.convert()
    finally:
        if freezing:
            gc.unfreeze()


def remove(directory):
    shutil.rmtree(directory, ignore_errors=True)
