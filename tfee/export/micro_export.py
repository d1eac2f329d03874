"""TFLite Micro: one dense int8 model per stage, as C arrays, plus the cascade.

TFLite Micro runs subgraph 0 only (no signatures) and reads no sparse
tensors, so a cascade on a microcontroller is one full-integer model per
stage: stage 1 maps the image to features_1 and exit 1's outputs, stage k
maps features_(k-1) (and exit k-1's logits, for a cascading head) onward. Every stage comes as a .tflite and a C++
source/header pair (`alignas(16)` const arrays and their lengths), with the
builtin ops it needs and its tensor arena, measured in TFLite Micro;
`{name}_cascade.cc` holds the op resolvers and the loop that stops at the
first confident exit. With `compress="lut"`, clustered weight tensors are
stored as bit-packed look-up-table indices (`tflite_micro.compression`) that
TFLite Micro's DECODE operator expands into the arena.
"""

import dataclasses
import json
import math
import os
import re
import warnings

import numpy as np

from tfee import _checks
from tfee import _flatbuffer
from tfee import input_normalisation
from tfee import naming
from tfee import network as network_lib
from tfee import rules
from tfee import stages as stages_lib
from tfee._files import check_output_path
from tfee._files import write_bytes_atomically
from tfee._keras import keras
from tfee._keras import tf
from tfee.export import _calibration
from tfee.export import _signatures
from tfee.layers.exit_head import ExitHead
from tfee.policy import policies
from tfee.runtime import engine
from tfee.runtime import micro as micro_runtime

__all__ = [
    "COMPRESSIONS",
    "LutTensor",
    "MANIFEST_FORMAT",
    "MICRO_OPS",
    "MicroExport",
    "MicroStage",
    "micro",
]

# The manifest beside the stage models (which output is which) is in the
# format its reader, tfee.runtime.MicroCascade, defines.
MANIFEST_FORMAT = micro_runtime.MANIFEST_FORMAT

# The arena measured in the reference-kernel interpreter, plus this margin:
# optimized kernels (CMSIS-NN, for instance) may ask for scratch buffers the
# reference kernels do not need.
_ARENA_MARGIN_FRACTION = 0.10
_ARENA_MARGIN_BYTES = 1024
_ARENA_MARGIN_TEXT = (
    f"{100 * _ARENA_MARGIN_FRACTION:.0f}% + {_ARENA_MARGIN_BYTES} bytes"
)

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
# How `micro(compress=...)` may store weights: None (plain int8) or "lut".
COMPRESSIONS = (None, "lut")
# TFLite Micro's DECODE operator, a custom op inserted by tflite_micro.compression.
_DECODE_OP = "CUSTOM:TFLM_DECODE"
_RESOLVER_NAMES = {
    _DECODE_OP: "AddDecode",
}
# The ops whose weights (input 1) tfmot clusters and DECODE may feed.
_LUT_WEIGHT_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"})
# The widest index DECODE reads, and the header before each tensor's value
# tables (its Decode Common Metadata).
_LUT_MAX_BITS = 7
_LUT_HEADER_BYTES = 16


@dataclasses.dataclass(frozen=True)
class MicroStage:
    """One stage's files and facts.

    Attributes:
      index: k, 1-based.
      model_path, source_path, header_path: the .tflite and its C++ pair.
      array_name: the C array's name (its length is `<array_name>_len`).
      bytes: the model's size.
      ops: builtin op names the stage needs (its resolver's entries).
      arena_bytes: the tensor arena this stage needs: measured in TFLite Micro
        (`tfee.runtime.measure_arena`) plus the export's margin.
      input_bytes: the size of its int8 input.
      input_quantization, features_quantization: (scale, zero_point) of the
        input and of features_k (None for the last stage).
      flash_bytes: what the stage puts in flash: its C array, the .tflite as
        written (LUT-packed where `compress="lut"` packed any tensor).
      dense_bytes: the same model with every weight stored as plain int8
        (equal to `flash_bytes` when nothing was packed).
      measured_arena_bytes: the arena TFLite Micro needed, before the margin.
      lut_tensors: a `LutTensor` per weight tensor stored as look-up-table
        indices (empty unless `compress="lut"` packed some).
    """

    index: int
    model_path: str
    source_path: str
    header_path: str
    array_name: str
    bytes: int
    ops: tuple
    arena_bytes: int
    input_bytes: int
    input_quantization: tuple
    features_quantization: tuple
    flash_bytes: int
    dense_bytes: int
    measured_arena_bytes: int
    lut_tensors: tuple


@dataclasses.dataclass(frozen=True)
class LutTensor:
    """A weight tensor stored as look-up-table indices (`compress="lut"`).

    Its int8 values become one value table per quantization channel (one
    table for a per-tensor quantized tensor) plus, per weight, a `bits`-wide
    index into its channel's table; TFLite Micro's DECODE operator writes the
    int8 values back into the arena before the operator that reads them.

    Attributes:
      name: the tensor's name in the stage model.
      shape: its shape.
      weights: how many int8 values it holds (as many bytes unpacked).
      bits: bits per index: ceil(log2(the most distinct values in a table)),
        1 to 7.
      tables: how many value tables (quantization channels).
      index_bytes: the packed indices.
      table_bytes: the value tables and their header, as this tensor needs
        them; `tflite_micro.compression` stores identical tables once, so a
        stage's sum can exceed what its file holds (read flash from
        `MicroStage.flash_bytes`).
    """

    name: str
    shape: tuple
    weights: int
    bits: int
    tables: int
    index_bytes: int
    table_bytes: int


@dataclasses.dataclass(frozen=True)
class MicroExport:
    """All stages plus the generated cascade source and the manifest.

    Attributes:
      directory: where the files are.
      stages: one `MicroStage` per stage, stage 1 first.
      cascade_path: the generated C++ cascade.
      header_path: `{name}_cascade.h`: the cascade function, the input
        quantization, the sizes and each stage's outputs.
      arena_bytes: the one arena every stage shares: the largest stage's.
      manifest_path: `{name}_manifest.json`: per stage its model file, the
        positions of its inputs and of its logits, confidence and features
        outputs, plus
        the exits' cumulative MACs (read by `tfee.runtime.MicroCascade`).
      compress: how weights are stored: None or "lut".
      flash_bytes: every stage's `flash_bytes` together.
    """

    directory: str
    stages: tuple
    cascade_path: str
    header_path: str
    arena_bytes: int
    manifest_path: str
    compress: object
    flash_bytes: int


def _check_layers(network, api):
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


def _check_name(name, api):
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(
            f"{api}: `name` must be a C identifier (letters, digits, _). "
            f"Received: name={name!r}"
        )


def _check_compress(compress, api):
    if not (compress is None or (isinstance(compress, str) and compress == "lut")):
        raise ValueError(
            f'{api}: `compress` must be one of {list(COMPRESSIONS)} ("lut": '
            "clustered weights as look-up-table indices that TFLite Micro's "
            f"DECODE operator expands). Received: compress={compress!r}"
        )


def _arenas(models):
    """Per stage model, (arena, measured): its arena, measured in TFLite
    Micro (all stages in one child process), plus the margin, 16-aligned;
    and the measurement alone."""
    arenas = []
    for measured in micro_runtime.measure_arenas(models):
        arena = int(measured * (1 + _ARENA_MARGIN_FRACTION)) + _ARENA_MARGIN_BYTES
        arenas.append(((arena + 15) // 16 * 16, measured))
    return arenas


@dataclasses.dataclass(frozen=True)
class _LutCandidate:
    index: int
    axis: object  # The channel axis of the value tables, or None for one table.
    tensor: LutTensor

    @property
    def saving(self):
        t = self.tensor
        return t.weights - t.index_bytes - t.table_bytes


def _lut_candidates(data, names):
    """The stage's int8 weight tensors whose look-up-table form is smaller.

    Tables follow the tensor's quantization: one per channel of a
    per-channel quantized tensor (DECODE takes its channels from the
    quantization), else one. Bits per index are ceil(log2(the most
    distinct values in a table)), at most 7. `names`: each tensor's name
    (from the stage before its names were stripped), for the report.
    """
    model = _flatbuffer.read(data)
    graph = model.subgraphs[0]
    codes = model.operatorCodes
    found = {}
    for op in graph.operators or []:
        code = codes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        if _flatbuffer._OP_NAMES.get(builtin) not in _LUT_WEIGHT_OPS:
            continue
        index = int(op.inputs[1])
        tensor = graph.tensors[index]
        buffer = model.buffers[tensor.buffer] if tensor.buffer else None
        if (
            index in found
            or tensor.type != _flatbuffer.schema.TensorType.INT8
            or buffer is None
            or buffer.data is None
        ):
            continue
        shape = tuple(int(d) for d in tensor.shape)
        values = np.frombuffer(np.asarray(buffer.data, np.uint8).tobytes(), np.int8)
        values = values.reshape(shape)
        scales = tensor.quantization.scale if tensor.quantization else None
        axis = None
        if scales is not None and len(scales) > 1:
            axis = int(tensor.quantization.quantizedDimension)
            if axis not in (0, len(shape) - 1):
                continue  # DECODE reads channels on the first or last axis only.
        slices = [values] if axis is None else list(np.moveaxis(values, axis, 0))
        entries = max(len(np.unique(s)) for s in slices)
        bits = max(1, (entries - 1).bit_length())
        if bits > _LUT_MAX_BITS:
            continue
        candidate = _LutCandidate(
            index,
            axis,
            LutTensor(
                name=names[index] or str(index),
                shape=shape,
                weights=values.size,
                bits=bits,
                tables=len(slices),
                index_bytes=math.ceil(values.size * bits / 8),
                table_bytes=len(slices) * entries + _LUT_HEADER_BYTES,
            ),
        )
        if candidate.saving > 0:
            found[index] = candidate
    return sorted(found.values(), key=lambda c: -c.saving)


def _lut_pack(data, names):
    """(model, LutTensors): the stage with its weights as look-up tables.

    Each packed tensor also costs graph entries (its DECODE operator, the
    value-table and decoded tensors), so the tensors are packed in order of
    their saving and the smallest resulting model is kept: the model as it
    was when no packing makes it smaller.
    """
    from tflite_micro import compression
    from tflite_micro.tensorflow.lite.micro.compression import spec

    candidates = _lut_candidates(data, names)
    best, packed = data, ()
    for count in range(1, len(candidates) + 1):
        specs = [
            spec.Tensor(
                subgraph=0,
                tensor=c.index,
                compression=[
                    spec.LookUpTableCompression(
                        index_bitwidth=c.tensor.bits,
                        mode=(
                            spec.PerTensor()
                            if c.axis is None
                            else spec.PerChannel(axis=c.axis)
                        ),
                    )
                ],
            )
            for c in candidates[:count]
        ]
        model = bytes(compression.compress(data, specs))
        if len(model) < len(best):
            best, packed = model, tuple(c.tensor for c in candidates[:count])
    return best, packed


def _check_written_stage(converted, written, arena, inputs, outputs, k, api):
    """Runs stage k as converted and as written (names stripped, weights
    LUT-packed) in TFLite Micro on the same int8 inputs: the written one, in
    its arena, must compute exactly what the converter's model does."""
    from tflite_micro import runtime

    reference = runtime.Interpreter.from_bytes(
        converted, arena_size=max(arena, 1 << 20)
    )
    candidate = runtime.Interpreter.from_bytes(written, arena_size=arena)
    rng = np.random.default_rng(k)
    for _ in range(2):
        rows = []
        for position in range(inputs):
            details = reference.get_input_details(position)
            rows.append(
                rng.integers(-128, 128, details["shape"]).astype(details["dtype"])
            )
        for interpreter in (reference, candidate):
            for position, row in enumerate(rows):
                interpreter.set_input(row, position)
            interpreter.invoke()
        for i in range(outputs):
            if not np.array_equal(reference.get_output(i), candidate.get_output(i)):
                raise RuntimeError(
                    f"{api}: stage_{k} as written (names stripped, weights "
                    f"packed) computes output {i} differently from its "
                    "converted int8 model in TensorFlow Lite Micro; export with "
                    "compress=None and strip_strings=False."
                )


def _remove_stale_stages(directory, name, num_stages):
    """Removes stage files an earlier export of `name` with more stages left."""
    pattern = re.compile(
        rf"^{re.escape(name)}_stage_([1-9]\d*)(?:\.tflite|_model_data\.(?:cc|h))$"
    )
    for entry in os.listdir(directory):
        match = pattern.match(entry)
        if match and int(match.group(1)) > num_stages:
            os.remove(os.path.join(directory, entry))


def _check_policy(policy, infos, api):
    if policy is None:
        return None
    kinds = (policies.ThresholdPolicy, policies.PatiencePolicy, policies.DecisionPolicy)
    if not isinstance(policy, kinds):
        raise TypeError(
            f"{api}: `policy` must be a tfee.ThresholdPolicy, tfee.PatiencePolicy "
            "or tfee.DecisionPolicy for the generated C++ loop, or None. Received: "
            f"policy={type(policy).__name__}"
        )
    learned = [info.confidence is not None for info in infos]
    return policies.check_policy(
        policy,
        len(infos),
        learned,
        api,
        exit_macs=[info.cumulative_macs for info in infos],
    )


def _convert_stage(network, k, calibration, per_channel, stage_models):
    """Stage k as its own int8 flatbuffer, from the stage models built once
    (each holds only its own variables, so its SavedModel is small)."""
    name = naming.stage_name(k)
    functions = _signatures.functions(
        network, [name], batch=1, stage_models=stage_models
    )
    _signatures.check_ops(functions, "tfee.export.micro")
    converter, directory = _signatures.converter(
        network, functions, per_channel, variables=stage_models[k - 1].variables
    )
    try:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _calibration.single_generator(
            name, calibration
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        return _signatures.run(converter)
    finally:
        _signatures.remove(directory)


def _io(data):
    """{input name: (details, position in subgraph inputs)} and the same for
    the outputs: firmware addresses tensors by position."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=bytes(data))
    runner = interpreter.get_signature_runner()

    def by_name(details, subgraph_details):
        positions = [d["index"] for d in subgraph_details]
        return {n: (d, positions.index(d["index"])) for n, d in details.items()}

    return (
        by_name(runner.get_input_details(), interpreter.get_input_details()),
        by_name(runner.get_output_details(), interpreter.get_output_details()),
    )


def _c_array(data, array_name, header_name, ops, arena, lut_tensors=()):
    rows = []
    for start in range(0, len(data), 12):
        rows.append(", ".join(f"0x{b:02x}" for b in data[start : start + 12]))
    body = ",\n  ".join(rows)
    source = (
        f"// Generated by tfee.export.micro. Do not edit.\n"
        f'#include "{header_name}"\n\n'
        f"alignas(16) const unsigned char {array_name}[] = {{\n  {body}\n}};\n"
        f"const unsigned int {array_name}_len = {len(data)};\n"
    )
    guard = header_name.upper().replace(".", "_")
    header = (
        f"// Generated by tfee.export.micro. Do not edit.\n"
        f"#ifndef {guard}\n#define {guard}\n\n"
        f"// Builtin ops: {', '.join(op for op in ops if op != _DECODE_OP)}.\n"
        f"{_lut_comment(lut_tensors)}"
        f"// Tensor arena, measured in TFLite Micro plus the margin of\n"
        f"// tfee.export.micro: {arena} bytes.\n"
        f"constexpr unsigned int {array_name}_arena_bytes = {arena};\n"
        f"extern const unsigned char {array_name}[];\n"
        f"extern const unsigned int {array_name}_len;\n\n"
        f"#endif  // {guard}\n"
    )
    return source, header


def _lut_comment(lut_tensors):
    if not lut_tensors:
        return ""
    bits = sorted({t.bits for t in lut_tensors})
    return (
        f"// Weight tensors stored as look-up-table indices: {len(lut_tensors)} "
        f"({', '.join(map(str, bits))} bits),\n"
        "// expanded into the arena by the DECODE operator (AddDecode()).\n"
    )


def _resolver_method(op):
    if op in _RESOLVER_NAMES:
        return _RESOLVER_NAMES[op]
    method = "".join(p.capitalize() for p in op.split("_"))
    for dims in ("1d", "2d", "3d"):
        method = method.replace(dims, dims.upper())
    return "Add" + method


def _decision_lines(policy, k, outputs, classes):
    """The C++ that decides at exit k (1-based) whether the sample leaves."""
    if isinstance(policy, policies.PatiencePolicy):
        return [
            f"  predicted = tfee_argmax(logits, {classes});",
            "  streak = tfee_streak(previous, streak, predicted);",
            "  previous = predicted;",
            "  if (streak >= kPatience) {",
        ]
    if isinstance(policy, policies.DecisionPolicy):
        # Every exit updates the decision's state, also where it never leaves.
        return [
            f"  if (tfee_leaves(tfee_decision_score(logits, {classes}, {k - 1}, "
            "ensemble, &previous,",
            f"                                      &streak, kWeights[{k - 1}], "
            f"kBiases[{k - 1}]),",
            f"                  kThresholds[{k - 1}])) {{",
        ]
    if policy is None or policy.thresholds[k - 1] is None:
        # Never leaves here; a constant condition keeps the loop's shape.
        return ["  if (false) {"]
    learned = "0.0f"
    if policy.rule == "learned":
        learned = f"Value(stage->output({outputs[naming.CONFIDENCE]}), 0)"
    return [
        f"  if (tfee_leaves(tfee_score(kRule, logits, {classes}, {learned}),",
        f"                  kThresholds[{k - 1}])) {{",
    ]


def _ensemble_lines(policy, k_total, classes):
    """The learned ensemble's constants (empty without one)."""
    ensemble = getattr(policy, "ensemble", None)
    if ensemble is None:
        return []

    def table(rows):
        return ",\n    ".join(
            "{" + ", ".join(repr(float(v)) for v in row) + "}" for row in rows
        )

    return [
        "// Learned ensemble (tfee.policy.ExitEnsemble): exit k answers with",
        "// kEnsembleBiases[k] + sum_j kEnsembleWeights[k][j] * log_softmax_j.",
        f"constexpr double kEnsembleWeights[{k_total}][{k_total}] = {{",
        f"    {table(ensemble.weights)}}};",
        f"constexpr double kEnsembleBiases[{k_total}][{classes}] = {{",
        f"    {table(ensemble.biases)}}};",
    ]


def _policy_lines(policy, k_total):
    if isinstance(policy, policies.PatiencePolicy):
        return [
            f"// Patience: leave once {policy.patience} consecutive exits agree.",
            f"constexpr int kPatience = {policy.patience};",
        ]
    if policy is None:
        return ["// No policy: every sample runs to the deepest exit."]
    values = ", ".join(
        "INFINITY" if t is None else repr(float(t)) for t in policy.thresholds
    )
    if isinstance(policy, policies.DecisionPolicy):
        signals = len(rules.DECISION_SIGNALS)
        weights = ",\n    ".join(
            "{" + ", ".join(repr(float(w)) for w in row) + "}" for row in policy.weights
        )
        biases = ", ".join(repr(float(b)) for b in policy.biases)
        return [
            "// Learned decision (tfee.DecisionPolicy): a sample leaves exit k when",
            "// sigmoid(kBiases[k] + kWeights[k] . signals) >= kThresholds[k], the",
            f"// signals {', '.join(rules.DECISION_SIGNALS)}",
            "// computed by tfee_decision_score from the exits so far.",
            f"constexpr double kThresholds[{k_total - 1}] = {{{values}}};",
            f"constexpr double kWeights[{k_total - 1}][{signals}] = {{",
            f"    {weights}}};",
            f"constexpr double kBiases[{k_total - 1}] = {{{biases}}};",
        ]
    return [
        f"// Rule {policy.rule}: a sample leaves exit k when its score",
        "// (tfee.rules, on the dequantized logits) >= kThresholds[k].",
        "// (Unused where every threshold is None: the sample never leaves.)",
        f"TFEE_UNUSED constexpr int kRule = {rules.get(policy.rule).c_id};",
        f"TFEE_UNUSED constexpr double kThresholds[{k_total - 1}] = {{{values}}};",
    ]


def _cascade_header(
    name, stages, positions, input_positions, classes, arena, features, normalised
):
    """`{name}_cascade.h`: the cascade's declaration and the constants a caller
    needs (input quantization, sizes, the shared arena, each stage's outputs)."""
    guard = f"{name.upper()}_CASCADE_H_"
    scale, zero_point = stages[0].input_quantization
    if normalised:
        preprocessing = [
            "// [-128, 127], with x the raw image: the network normalises it",
            f"// itself (mean {normalised['mean']}, std {normalised['std']}).",
        ]
    else:
        preprocessing = [
            "// [-128, 127], with x preprocessed as for the network.",
        ]
    lines = [
        "// Generated by tfee.export.micro. Do not edit.",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "#include <cstdint>",
        "",
        f"namespace {name} {{",
        "",
        "// The image is int8: q = nearbyintf(x / kInputScale) + kInputZeroPoint",
        "// (rounding half to even, as numpy.round and tfee do), clamped to",
        *preprocessing,
        f"constexpr float kInputScale = {float(scale)!r}f;",
        f"constexpr int kInputZeroPoint = {int(zero_point)};",
        f"constexpr unsigned int kInputBytes = {stages[0].input_bytes};",
        f"constexpr int kNumClasses = {classes};",
        f"constexpr int kNumExits = {len(stages)};",
        "// One tensor arena serves every stage (set up in turn); measured in",
        f"// TFLite Micro plus a margin of {_ARENA_MARGIN_TEXT}.",
        f"constexpr unsigned int kArenaBytes = {arena};",
        "// The largest features_k, copied out of the arena between stages.",
        f"constexpr unsigned int kFeatureBytes = {max(features, 1)};",
        "",
        "// Each stage model's inputs and outputs, by index (logits_k: exit k's",
        "// int8 logits, which a cascading stage k+1 also reads):",
    ]
    for stage, inputs, outputs in zip(stages, input_positions, positions):
        for kind, tensors in (("inputs", inputs), ("outputs", outputs)):
            mapping = ", ".join(
                f"{index} = {tensor}"
                for tensor, index in sorted(tensors.items(), key=lambda i: i[1])
            )
            lines.append(
                f"//   stage {stage.index} ({stage.array_name}) {kind}: {mapping}"
            )
    lines += [
        "",
        f"}}  // namespace {name}",
        "",
        "// Runs the cascade on one int8 image of kInputBytes bytes. Returns the",
        "// predicted class, or -1 if TFLite Micro failed; *exit_index receives the",
        "// 0-based exit that answered.",
        f"int {name}_cascade(const int8_t* image, int* exit_index);",
        "",
        "// Quantizes one float image of kInputBytes values by the formula above.",
        "// Returns false, and writes nothing, if a value is NaN or infinite: int8",
        "// has no such value, so such an image has no answer (as in tfee's int8",
        "// runtimes, which refuse it).",
        f"bool {name}_quantize_image(const float* image, int8_t* quantized);",
        "",
        f"#endif  // {guard}",
        "",
    ]
    return "\n".join(lines)


def _cascade_source(name, stages, positions, input_positions, policy, classes):
    """The generated C++ cascade: resolvers, one shared arena, and the loop.

    It follows `tfee.rules` (included verbatim) and the engine's loop: the
    same dequantized logits, rule scores and comparison as every runtime.
    Stage k is set up in the shared arena when it runs, after stage k-1's
    features (and, for a cascading stage k, its int8 logits) have been
    copied out of it.
    """
    k_total = len(stages)
    patience = isinstance(policy, policies.PatiencePolicy)
    lines = [
        "// Generated by tfee.export.micro: the early-exit cascade on TFLite Micro.",
        "// Stage k reads the int8 features (and, for a cascading head, the int8",
        "// logits) stage k-1 wrote (same scale and zero point, checked at export)",
        "// and stops at the first exit the policy lets the sample leave.",
        f'#include "{name}_cascade.h"',
        "",
        "#include <cmath>",
        "#include <cstdint>",
        "#include <cstring>",
        "#include <new>",
        "",
        '#include "tensorflow/lite/micro/micro_interpreter.h"',
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"',
        '#include "tensorflow/lite/schema/schema_generated.h"',
    ]
    lines += [f'#include "{os.path.basename(s.header_path)}"' for s in stages]
    lines += ["", "namespace {", rules.C_SOURCE.strip(), ""]
    lines += _policy_lines(policy, k_total)
    lines += _ensemble_lines(policy, k_total, classes)
    lines += [
        "",
        "float Value(const TfLiteTensor* t, int i) {",
        "  return static_cast<float>(t->data.int8[i] - t->params.zero_point) *",
        "         t->params.scale;",
        "}",
        "",
        "void Dequantize(const TfLiteTensor* t, float* out, int n) {",
        "  for (int i = 0; i < n; ++i) out[i] = Value(t, i);",
        "}",
        "",
        f"alignas(16) uint8_t g_arena[{name}::kArenaBytes];",
        f"alignas(16) int8_t g_features[{name}::kFeatureBytes];",
    ]
    if any(
        naming.previous_logits_name(s.index) in i
        for s, i in zip(stages, input_positions)
    ):
        lines += [
            "// Exit k-1's int8 logits, which a cascading stage k also reads.",
            f"int8_t g_previous_logits[{name}::kNumClasses];",
        ]
    lines += [
        "alignas(tflite::MicroInterpreter) uint8_t",
        "    g_interpreter_storage[sizeof(tflite::MicroInterpreter)];",
        "tflite::MicroInterpreter* g_interpreter = nullptr;",
        "int g_stage = -1;",
        "",
    ]
    for stage in stages:
        lines += [
            f"tflite::MicroInterpreter* NewStage{stage.index}() {{",
            f"  static tflite::MicroMutableOpResolver<{len(stage.ops)}> resolver;",
            "  static bool registered = false;",
            "  if (!registered) {",
        ]
        lines += [f"    resolver.{_resolver_method(op)}();" for op in stage.ops]
        lines += [
            "    registered = true;",
            "  }",
            "  return new (g_interpreter_storage) tflite::MicroInterpreter(",
            f"      tflite::GetModel({stage.array_name}), resolver, g_arena,",
            "      sizeof(g_arena));",
            "}",
            "",
        ]
    lines += [
        "// Sets stage k (1-based) up in the shared arena, unless it is there.",
        "tflite::MicroInterpreter* Stage(int k) {",
        "  if (g_stage == k) return g_interpreter;",
        "  if (g_interpreter != nullptr) g_interpreter->~MicroInterpreter();",
        "  g_interpreter = nullptr;",
        "  g_stage = -1;",
        "  tflite::MicroInterpreter* interpreter = nullptr;",
        "  switch (k) {",
    ]
    lines += [
        f"    case {s.index}: interpreter = NewStage{s.index}(); break;" for s in stages
    ]
    lines += [
        "    default: return nullptr;",
        "  }",
        "  if (interpreter->AllocateTensors() != kTfLiteOk) {",
        "    interpreter->~MicroInterpreter();",
        "    return nullptr;",
        "  }",
        "  g_interpreter = interpreter;",
        "  g_stage = k;",
        "  return interpreter;",
        "}",
        "",
        "}  // namespace",
        "",
        f"int {name}_cascade(const int8_t* image, int* exit_index) {{",
        "  const int8_t* input = image;",
        f"  float logits[{classes}];",
    ]
    if patience:
        lines += ["  int previous = -1, streak = 0, predicted = -1;"]
    if isinstance(policy, policies.DecisionPolicy):
        lines += [
            f"  double ensemble[{classes}] = {{0.0}};",
            "  int previous = -1, streak = 0;",
        ]
    with_ensemble = getattr(policy, "ensemble", None) is not None
    if with_ensemble:
        lines += [f"  double history[{k_total * classes}];"]
    for stage, inputs, outputs in zip(stages, input_positions, positions):
        k = stage.index
        position = inputs[naming.stage_input_name(k)]
        lines += [
            f"  // Stage {k}: exit_{k}.",
            f"  tflite::MicroInterpreter* stage{k} = Stage({k});",
            f"  if (stage{k} == nullptr) return -1;",
            f"  std::memcpy(stage{k}->input({position})->data.int8, input,",
            f"              stage{k}->input({position})->bytes);",
        ]
        if naming.previous_logits_name(k) in inputs:
            position = inputs[naming.previous_logits_name(k)]
            lines += [
                f"  std::memcpy(stage{k}->input({position})->data.int8, "
                "g_previous_logits,",
                f"              stage{k}->input({position})->bytes);",
            ]
        lines += [
            f"  if (stage{k}->Invoke() != kTfLiteOk) return -1;",
            f"  Dequantize(stage{k}->output({outputs[naming.LOGITS]}), logits, "
            f"{classes});",
        ]
        if with_ensemble:  # From here on the exit's logits are its answer.
            lines += [
                f"  tfee_ensemble(logits, {classes}, {k - 1}, history, "
                f"kEnsembleWeights[{k - 1}],",
                f"                kEnsembleBiases[{k - 1}], logits);",
            ]
        if k == k_total:
            lines += [
                f"  *exit_index = {k - 1};",
                f"  return tfee_argmax(logits, {classes});",
            ]
            break
        decision = _decision_lines(policy, k, outputs, classes)
        lines += [line.replace("stage->", f"stage{k}->") for line in decision]
        features = f"stage{k}->output({outputs[naming.features_name(k)]})"
        lines += [
            f"    *exit_index = {k - 1};",
            f"    return tfee_argmax(logits, {classes});",
            "  }",
            "  // The next stage reuses the arena: copy the features out first.",
            f"  std::memcpy(g_features, {features}->data.int8,",
            f"              {features}->bytes);",
            "  input = g_features;",
        ]
        if naming.previous_logits_name(k + 1) in input_positions[k]:
            logits = f"stage{k}->output({outputs[naming.LOGITS]})"
            lines += [
                f"  std::memcpy(g_previous_logits, {logits}->data.int8,",
                f"              {logits}->bytes);",
            ]
    lines += ["}", ""]
    lines += _quantize_source(name)
    return "\n".join(lines)


def _quantize_source(name):
    """`{name}_quantize_image`: the header's input formula, refusing a
    non-finite value as the int8 runtimes do (`tfee.rules`' input rule):
    int8 has no NaN, and nearbyintf(NaN) clamped would pass for -128."""
    return [
        f"bool {name}_quantize_image(const float* image, int8_t* quantized) {{",
        f"  for (unsigned int i = 0; i < {name}::kInputBytes; ++i) {{",
        "    if (!std::isfinite(image[i])) return false;",
        "  }",
        f"  for (unsigned int i = 0; i < {name}::kInputBytes; ++i) {{",
        f"    const float q = std::nearbyintf(image[i] / {name}::kInputScale) +",
        f"                    {name}::kInputZeroPoint;",
        "    quantized[i] = static_cast<int8_t>(std::fmin(std::fmax(q, -128.0f), "
        "127.0f));",
        "  }",
        "  return true;",
        "}",
        "",
    ]


def micro(
    network,
    directory,
    representative,
    name="tfee_model",
    policy=None,
    calibration_samples=512,
    compress=None,
    strip_strings=True,
    per_channel=True,
):
    """Exports one dense int8 .tflite per stage for TFLite Micro, with C sources.

    Writes, for k = 1..K: `{name}_stage_{k}.tflite`, `{name}_stage_{k}_model_data.cc`
    (an `alignas(16) const unsigned char` array and its length) and `.h`
    (declarations, used ops, arena), plus `{name}_cascade.cc` and `.h`: a
    `MicroMutableOpResolver<N>` per stage with exactly the ops it uses, one
    tensor arena that every stage shares (set up in turn, so RAM is the
    largest stage's arena plus the largest features_k, and `kNumClasses`
    bytes for exit k's logits where head k+1 is cascading), the cascade
    loop, and a header declaring `{name}_cascade`, the input quantization,
    the sizes and which input and output is which; and
    `{name}_manifest.json` for `tfee.runtime.MicroCascade`. Stage inputs
    and outputs are int8; what stage k hands on (`naming.handed_on`) leaves
    it with the scale and zero point stage k+1 reads (checked). Stage files an earlier export of the same `name` left behind
    are removed.

    Arenas are measured in the real TensorFlow Lite Micro interpreter
    (`tfee.runtime.measure_arena`, bisecting `arena_size`), plus a margin of
    10% + 1 KiB for kernels that need scratch buffers the reference kernels
    do not.

    `compress="lut"` packs clustered weights for flash with
    `tflite_micro.compression`: every convolution, depthwise or dense
    weight tensor whose look-up-table form is smaller than its int8 bytes
    becomes bit-packed indices (ceil(log2(distinct values)) bits, 1 to 7)
    into value tables, one per quantization channel, and a DECODE operator
    before its consumer expands it into the arena. A tensor is packed only
    if the stage file, graph entries included, gets smaller. The resolver
    then registers DECODE (`AddDecode()`); the arena is measured on the
    packed model (it holds the decoded tensors), and each packed stage is
    checked to compute exactly what its int8 model computes in TFLite
    Micro. A network without such tensors (not clustered, say) is written
    as with None, with a warning; each stage's `lut_tensors` says what was
    packed.

    Args:
      network: a tfee early-exit network (pruning/clustering wrappers are
        stripped; sparse weights are stored dense, as Micro needs).
      directory: where to write (created if missing).
      representative: preprocessed float images (dataset or array) to
        calibrate int8; stage k>1 is calibrated with float stage k-1's
        features on the same images.
      name: prefix of files and C symbols; a C identifier.
      policy: a `ThresholdPolicy`, `PatiencePolicy` or `DecisionPolicy`
        baked into the loop, which decides as `tfee.rules` specifies; None
        runs every sample to the deepest exit.
      calibration_samples: how many representative images to use.
      compress: None (every weight plain int8) or "lut" (see above).
      strip_strings: drop tensor names, signatures and descriptions from the
        stage files (TFLite's `strip_strings`; TFLite Micro reads none of
        them, and they are a fifth of a small stage's flash). Each stripped
        stage is checked to compute exactly what the converted one does.
        False keeps them, for inspecting the files (Netron, LiteRT).
      per_channel: weights get one int8 scale per output channel (the
        converter's default). False uses one per kernel, as
        `tfee.export.tflite(per_channel=False)`: a kernel clustered per
        tensor then has its cluster count of int8 values in one look-up
        table, and the per-channel quantization arrays (12 bytes per channel
        of every kernel and bias) leave the flash image. Check the accuracy:
        kernels whose channels differ much in scale lose resolution.

    Returns:
      A `MicroExport`: per stage its files, flash bytes (LUT-packed and
      dense) and arena bytes (measured, and with the margin).

    Raises:
      TypeError: not a functional tf_keras model, or non-float images.
      ValueError: layers or ops TFLite Micro cannot run, bad representative
        data, name or `compress`, or features whose int8 scales do not chain.
        Checks on the inputs run before any conversion; nothing is written
        unless every stage converted.
      RuntimeError: a stage as written (names stripped, weights LUT-packed)
        computes other outputs than its converted int8 model in TensorFlow
        Lite Micro (checked at export; nothing written).

    Example:
      >>> tfee.export.micro(net, "firmware/", representative=val_ds,
      ...                   policy=policy)
      >>> clustered = tfee.compress.cluster(net, train_ds, 16)
      >>> tfee.export.micro(clustered, "firmware/", val_ds, compress="lut")
    """
    api = "tfee.export.micro"
    _check_name(name, api)
    _check_compress(compress, api)
    _checks.check_bool(strip_strings, "strip_strings", api)
    _checks.check_bool(per_channel, "per_channel", api)
    if not isinstance(directory, str) or not directory:
        raise TypeError(
            f"{api}: `directory` must be a path string. Received: {directory!r}"
        )
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(
            f"{api}: `directory` is an existing file; pass the folder to write the "
            f"stage models and sources into. Received: directory={directory!r}"
        )
    check_output_path(directory, api, "directory", directory=True)
    stripped = _signatures.stripped_network(network, api)
    _check_layers(stripped, api)
    normalised = input_normalisation.included_normalisation(stripped)
    batch_norms = [
        layer.name
        for layer in stripped.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    if not per_channel and batch_norms:
        # The converter folds each BN into its kernel, a factor per channel:
        # one int8 scale per kernel then serves channels of different ranges.
        warnings.warn(
            f"{api}: per_channel=False on a network that still has "
            f"BatchNormalization layers ({batch_norms[:3]}...): the converter "
            "folds them into the kernels, so one int8 scale per kernel must "
            "cover every channel's range, which can cost accuracy and spreads "
            "clusters over many values. Fold BN first (tfee.compress.cluster("
            "..., fold_batch_norm=True)) or keep per_channel=True.",
            stacklevel=2,
        )
    infos = network_lib.exits(stripped)
    policy = _check_policy(policy, infos, api)
    policies.check_ensemble_classes(policy, int(stripped.outputs[0].shape[-1]), api)
    calibration = _checks.check_images(
        representative, stripped, calibration_samples, api
    )
    stage_models = stages_lib.stage_models(stripped)
    inputs = _calibration.stage_inputs(stripped, calibration, stage_models)
    converted = []
    for k in range(1, len(infos) + 1):
        data = _convert_stage(stripped, k, inputs[k - 1], per_channel, stage_models)
        ops = tuple(_flatbuffer.op_names(data, subgraph=0))
        unsupported = sorted(set(ops) - MICRO_OPS)
        if unsupported:
            raise ValueError(
                f"{api}: stage_{k} needs ops TFLite Micro lacks: {unsupported}."
            )
        converted.append((data, ops) + _io(data))
    for k in range(1, len(converted)):
        handed_on = [
            (
                input_name,
                converted[k - 1][3][output_name][0]["quantization"],
                converted[k][2][input_name][0]["quantization"],
            )
            for output_name, input_name in naming.handed_on(k, converted[k][2])
        ]
        for input_name, produced in _flatbuffer.chain_repairs(api, k, handed_on):
            # A last-bit difference of the same calibrated range: give the
            # consumer the producer's exact scale (see tflite.chain_features).
            data = _flatbuffer.set_input_quantization(
                converted[k][0], None, input_name, produced
            )
            converted[k] = (data, converted[k][1]) + _io(data)
    dense_models = [
        _flatbuffer.without_strings(c[0]) if strip_strings else c[0] for c in converted
    ]
    packed = [  # Per stage: (the bytes written, its LUT tensors).
        (
            _lut_pack(dense, _flatbuffer.tensor_names(c[0]))
            if compress == "lut"
            else (dense, ())
        )
        for dense, c in zip(dense_models, converted)
    ]
    # Every stage's arena in one child process: one start-up, not K.
    arenas = _arenas([data for data, _ in packed])
    stages, files = [], []
    for k, (plain, ops, input_details, outputs) in enumerate(converted, start=1):
        stem = f"{name}_stage_{k}"
        array_name = f"g_{stem}_model"
        dense = dense_models[k - 1]
        data, lut_tensors = packed[k - 1]
        if lut_tensors:
            ops = tuple(_flatbuffer.op_names(data, subgraph=0))
        arena, measured = arenas[k - 1]
        if data is not plain:
            _check_written_stage(
                plain, data, arena, len(input_details), len(outputs), k, api
            )
        source, header = _c_array(
            data, array_name, f"{stem}_model_data.h", ops, arena, lut_tensors
        )
        paths = [
            os.path.join(directory, f"{stem}.tflite"),
            os.path.join(directory, f"{stem}_model_data.cc"),
            os.path.join(directory, f"{stem}_model_data.h"),
        ]
        files += list(zip(paths, [data, source, header]))
        features = outputs.get(naming.features_name(k))
        image_or_features = input_details[naming.stage_input_name(k)][0]
        stages.append(
            MicroStage(
                index=k,
                model_path=paths[0],
                source_path=paths[1],
                header_path=paths[2],
                array_name=array_name,
                bytes=len(data),
                ops=ops,
                arena_bytes=arena,
                input_bytes=int(np.prod(image_or_features["shape"])),
                input_quantization=tuple(image_or_features["quantization"]),
                features_quantization=(
                    tuple(features[0]["quantization"]) if features else None
                ),
                flash_bytes=len(data),
                dense_bytes=len(dense),
                measured_arena_bytes=measured,
                lut_tensors=lut_tensors,
            )
        )
    if compress == "lut" and not any(stage.lut_tensors for stage in stages):
        warnings.warn(
            f"{api}: compress='lut' packed no weight tensor: none has few enough "
            "distinct int8 values (per quantization channel) for look-up-table "
            "indices to make its stage smaller, so every stage is plain int8. "
            "Cluster the network first (tfee.compress.cluster).",
            stacklevel=2,
        )
    positions = [{n: position for n, (_, position) in c[3].items()} for c in converted]
    input_positions = [
        {n: position for n, (_, position) in c[2].items()} for c in converted
    ]
    engine.warn_unreachable(
        policy,
        [
            (
                engine.confidence_ceiling(c[3][naming.CONFIDENCE][0])
                if naming.CONFIDENCE in c[3]
                else None
            )
            for c in converted
        ],
        api,
    )
    classes = int(converted[0][3][naming.LOGITS][0]["shape"][-1])
    arena = max(stage.arena_bytes for stage in stages)
    features = max(
        [
            int(np.prod(c[3][naming.features_name(k)][0]["shape"]))
            for k, c in enumerate(converted[:-1], start=1)
        ],
        default=0,
    )
    cascade_path = os.path.join(directory, f"{name}_cascade.cc")
    header_path = os.path.join(directory, f"{name}_cascade.h")
    files.append(
        (
            cascade_path,
            _cascade_source(name, stages, positions, input_positions, policy, classes),
        )
    )
    files.append(
        (
            header_path,
            _cascade_header(
                name,
                stages,
                positions,
                input_positions,
                classes,
                arena,
                features,
                normalised,
            ),
        )
    )
    manifest = {
        "format": (
            micro_runtime.CASCADING_MANIFEST_FORMAT
            if any(len(inputs) > 1 for inputs in input_positions)
            else MANIFEST_FORMAT
        ),
        "name": name,
        "num_exits": len(stages),
        "cumulative_macs": [int(i.cumulative_macs) for i in infos],
        "arena_bytes": arena,
        "compress": compress,
        "normalised_in_model": normalised,
        # The policy compiled into the cascade source, for MicroCascade.
        "policy": None if policy is None else policy.to_dict(),
        "flash_bytes": sum(stage.flash_bytes for stage in stages),
        "stages": [
            {
                "model": os.path.basename(stage.model_path),
                "inputs": inputs,
                "outputs": outputs,
                "arena_bytes": stage.arena_bytes,
                "measured_arena_bytes": stage.measured_arena_bytes,
                "flash_bytes": stage.flash_bytes,
                "dense_bytes": stage.dense_bytes,
                "lut_tensors": [
                    dataclasses.asdict(tensor) for tensor in stage.lut_tensors
                ],
            }
            for stage, inputs, outputs in zip(stages, input_positions, positions)
        ],
    }
    manifest_path = os.path.join(directory, f"{name}_manifest.json")
    files.append((manifest_path, json.dumps(manifest, indent=2)))
    for path, content in files:
        write_bytes_atomically(path, content)
    _remove_stale_stages(directory, name, len(stages))
    return MicroExport(
        directory=directory,
        stages=tuple(stages),
        cascade_path=cascade_path,
        header_path=header_path,
        arena_bytes=arena,
        manifest_path=manifest_path,
        compress=compress,
        flash_bytes=sum(stage.flash_bytes for stage in stages),
    )
