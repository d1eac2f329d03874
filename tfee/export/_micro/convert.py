"""The stage models converted to int8 flatbuffers that TFLite Micro runs.

TFLite Micro runs subgraph 0 only (no signatures) and reads no sparse
tensors, so each stage becomes its own full-integer model. What stage k
hands on leaves it with the scale and zero point stage k+1 reads.
"""

import dataclasses

from tfee import _flatbuffer
from tfee import naming
from tfee._keras import keras
from tfee._keras import tf
from tfee.export import _calibration
from tfee.export import _signatures
from tfee.layers.exit_head import ExitHead

__all__ = [
    "MICRO_OPS",
    "ConvertedStage",
    "check_layers",
    "convert_all",
    "convert_stages",
]

# Builtin ops with int8 kernels in TFLite Micro that these exports can use.
MICRO_OPS = frozenset(
    {
        "ADD",
        "AVERAGE_POOL_2D",
        "CONCATENATION",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "DEQUANTIZE",
        "FULLY_CONNECTED",
        "HARD_SWISH",
        "LOGISTIC",
        "MAX_POOL_2D",
        "MEAN",
        "MUL",
        "PAD",
        "QUANTIZE",
        "REDUCE_MAX",
        "RELU",
        "RELU6",
        "RESHAPE",
        "SOFTMAX",
        "SUB",
        "TANH",
    }
)
_MICRO_LAYERS = (
    keras.layers.InputLayer,
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.Dense,
    keras.layers.BatchNormalization,
    keras.layers.ReLU,
    keras.layers.Softmax,
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.Add,
    keras.layers.Concatenate,
    keras.layers.Flatten,
    keras.layers.Reshape,
    keras.layers.ZeroPadding2D,
    keras.layers.Dropout,
    keras.layers.Normalization,  # tfee.include_normalisation: SUB and MUL
    keras.layers.Activation,
    ExitHead,
)
_MICRO_ACTIVATIONS = {"linear", "relu", "relu6", "sigmoid", "tanh", "softmax"}


@dataclasses.dataclass(frozen=True)
class ConvertedStage:
    """Stage k as the converter wrote it (names kept, weights plain int8).

    Attributes:
      model: the flatbuffer's bytes.
      ops: the builtin op names of subgraph 0.
      inputs, outputs: {signature name: (LiteRT's tensor details, position in
        the subgraph's inputs or outputs)}: firmware addresses tensors by
        position.
    """

    model: bytes
    ops: tuple
    inputs: dict
    outputs: dict

    @property
    def input_positions(self):
        return {n: position for n, (_, position) in self.inputs.items()}

    @property
    def output_positions(self):
        return {n: position for n, (_, position) in self.outputs.items()}


def check_layers(network, api):
    unsupported = []
    for layer in network.layers:
        inner = getattr(layer, "layer", layer)
        if not isinstance(inner, _MICRO_LAYERS):
            unsupported.append(f"{layer.name} ({type(inner).__name__})")
            continue
        activation = getattr(inner, "activation", None)
        name = getattr(activation, "__name__", activation)
        if activation is not None and name not in _MICRO_ACTIVATIONS:
            unsupported.append(f"{layer.name} (activation {name})")
    if unsupported:
        raise ValueError(
            f"{api}: TFLite Micro cannot run these layers in int8: "
            f"{unsupported}. Supported: convolutions, dense, batch norm, pooling, "
            f"add, concatenate, reshape, padding, input normalisation, activations "
            f"{sorted(_MICRO_ACTIVATIONS)} and tfee exit heads."
        )


def convert_all(structure, calibration, per_channel):
    """{stage_k: its int8 flatbuffer} for a network (its `Structure`), from
    one converter call: one SavedModel holding the K `stage_k` signatures,
    one calibration pass, then the file split into one model per signature
    (`_flatbuffer.signature_models`). Each signature is calibrated on its own
    inputs (`calibration`, from `_calibration.stage_inputs`), so a stage
    quantizes as it would converted alone; the fixed cost of a conversion
    (writing and loading the SavedModel, TensorFlow's clean-up) is paid once
    instead of K times. `per_channel`: int8 weights with one scale per
    output channel."""
    names = [naming.stage_name(k) for k in range(1, structure.num_exits + 1)]
    functions = _signatures.functions(structure, names, batch=1)
    _signatures.check_ops(functions, "tfee.export.micro")
    converter, directory = _signatures.converter(
        structure.network, functions, per_channel
    )
    try:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _calibration.generator(names, calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        return _flatbuffer.signature_models(_signatures.run(converter))
    finally:
        _signatures.remove(directory)


def _described(model, ops):
    """A `ConvertedStage` of `model`, its inputs and outputs read in LiteRT."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=bytes(model))
    runner = interpreter.get_signature_runner()

    def by_name(details, subgraph_details):
        positions = [d["index"] for d in subgraph_details]
        return {n: (d, positions.index(d["index"])) for n, d in details.items()}

    return ConvertedStage(
        model=model,
        ops=ops,
        inputs=by_name(runner.get_input_details(), interpreter.get_input_details()),
        outputs=by_name(runner.get_output_details(), interpreter.get_output_details()),
    )


def convert_stages(structure, calibration, per_channel, api):
    """[ConvertedStage per stage]: the stages converted by `convert_all`
    (stage k calibrated on `calibration[k - 1]`), their ops checked against
    `MICRO_OPS`, and each handed-on input given the scale its producer
    writes where the two differ in the last bits (`_flatbuffer.chain_repairs`
    raises where they differ more)."""
    converted = []
    models = convert_all(structure, calibration, per_channel)
    for k in range(1, structure.num_exits + 1):
        data = models[naming.stage_name(k)]
        ops = tuple(_flatbuffer.op_names(data, subgraph=0))
        unsupported = sorted(set(ops) - MICRO_OPS)
        if unsupported:
            raise ValueError(
                f"{api}: stage_{k} needs ops TFLite Micro lacks: {unsupported}."
            )
        converted.append(_described(data, ops))
    for k in range(1, len(converted)):
        handed_on = [
            (
                input_name,
                converted[k - 1].outputs[output_name][0]["quantization"],
                converted[k].inputs[input_name][0]["quantization"],
            )
            for output_name, input_name in naming.handed_on(k, converted[k].inputs)
        ]
        repairs = _flatbuffer.chain_repairs(api, k, handed_on)
        if repairs:
            # A last-bit difference of the same calibrated range: give the
            # consumer the producer's exact scale (see tflite.chain_features).
            data = _flatbuffer.set_input_quantization(
                converted[k].model,
                [(None, input_name, produced) for input_name, produced in repairs],
            )
            converted[k] = _described(data, converted[k].ops)
    return converted
