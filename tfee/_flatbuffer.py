"""Reading and annotating .tflite flatbuffers: ops, weights, tfee metadata."""

import json

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

from tfee import naming

__all__ = []

METADATA_NAME = "tfee"

_OP_NAMES = {
    value: name
    for name, value in vars(schema.BuiltinOperator).items()
    if not name.startswith("_") and isinstance(value, int)
}
_TYPE_BYTES = {
    schema.TensorType.FLOAT32: 4,
    schema.TensorType.FLOAT16: 2,
    schema.TensorType.INT32: 4,
    schema.TensorType.UINT8: 1,
    schema.TensorType.INT64: 8,
    schema.TensorType.BOOL: 1,
    schema.TensorType.INT16: 2,
    schema.TensorType.INT8: 1,
}


def is_tflite(data):
    """Whether `data` starts like a .tflite flatbuffer (its file identifier)."""
    return len(data) >= 8 and bytes(data[4:8]) == b"TFL3"


def read(data):
    """The mutable object tree (schema ModelT) of a .tflite flatbuffer."""
    return flatbuffer_utils.convert_bytearray_to_object(bytearray(data))


def signature_keys(data):
    """The names of the model's signatures, in file order."""
    return [s.signatureKey.decode() for s in read(data).signatureDefs or []]


def op_names(data, subgraph=None):
    """Sorted builtin operator names used by the model (or one subgraph)."""
    model = read(data)
    codes = model.operatorCodes or []
    graphs = model.subgraphs if subgraph is None else [model.subgraphs[subgraph]]
    used = {op.opcodeIndex for g in graphs for op in (g.operators or [])}
    names = set()
    for index in used:
        code = codes[index]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        if builtin == schema.BuiltinOperator.CUSTOM:
            names.add("CUSTOM:" + code.customCode.decode())
        else:
            names.add(_OP_NAMES.get(builtin, str(builtin)))
    return sorted(names)


def tensor_names(data, subgraph=0):
    """The names of a subgraph's tensors, by index ("" where a name is missing)."""
    tensors = read(data).subgraphs[subgraph].tensors or []
    return [t.name.decode() if t.name else "" for t in tensors]


def without_strings(data):
    """The model without tensor and subgraph names, description or signatures.

    TFLite's own `flatbuffer_utils.strip_strings`: what a TFLite Micro
    interpreter never reads (it runs subgraph 0 by tensor index), which is
    about a fifth of a small stage file. Metadata and custom op codes stay.
    """
    model = read(data)
    flatbuffer_utils.strip_strings(model)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def signature_models(data):
    """{signature key: a model of that signature alone} of a multi-signature
    model.

    Each holds its signature's subgraph as subgraph 0 (the one TensorFlow
    Lite Micro runs), only the operator codes and buffers that subgraph uses
    (renumbered in the order it first uses them), that signature, and the
    model's metadata entries.

    Raises:
      ValueError: an op calls another subgraph (IF, WHILE), so the subgraph
        cannot stand alone.
    """
    model = read(data)
    return {
        signature.signatureKey.decode(): bytes(
            flatbuffer_utils.convert_object_to_bytearray(_alone(model, signature))
        )
        for signature in model.signatureDefs or []
    }


def _alone(model, signature):
    """A ModelT of `signature` alone, taking its subgraph's objects from
    `model` (see `signature_models`)."""
    graph = model.subgraphs[signature.subgraphIndex]
    codes, code_index = [], {}
    for op in graph.operators or []:
        options = vars(op.builtinOptions) if op.builtinOptions else {}
        if any("subgraph" in field.lower() for field in options):
            raise ValueError(
                f"signature {signature.signatureKey.decode()!r} calls another "
                "subgraph; it cannot stand alone"
            )
        if op.opcodeIndex not in code_index:
            code_index[op.opcodeIndex] = len(codes)
            codes.append(model.operatorCodes[op.opcodeIndex])
        op.opcodeIndex = code_index[op.opcodeIndex]
    # Buffer 0 is the empty sentinel every model starts with.
    buffers, buffer_index = [model.buffers[0]], {0: 0}

    def renumbered(old):
        if old not in buffer_index:
            buffer_index[old] = len(buffers)
            buffers.append(model.buffers[old])
        return buffer_index[old]

    for tensor in graph.tensors or []:
        tensor.buffer = renumbered(tensor.buffer)
    alone = schema.ModelT()
    alone.version = model.version
    alone.description = model.description
    alone.operatorCodes = codes
    alone.subgraphs = [graph]
    alone.metadata = []
    for entry in model.metadata or []:
        kept = schema.MetadataT()
        kept.name = entry.name
        kept.buffer = renumbered(entry.buffer)
        alone.metadata.append(kept)
    if model.metadataBuffer is not None:
        alone.metadataBuffer = [renumbered(b) for b in model.metadataBuffer]
    alone.buffers = buffers
    signature.subgraphIndex = 0
    alone.signatureDefs = [signature]
    return alone


def with_metadata(data, metadata):
    """The model with a JSON metadata entry named "tfee" (replacing any old one)."""
    model = read(data)
    model.metadata = [
        m for m in (model.metadata or []) if m.name.decode() != METADATA_NAME
    ]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(metadata).encode("utf-8"), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def metadata(data):
    """The "tfee" metadata dict, or {} for a model exported elsewhere."""
    model = schema.Model.GetRootAs(bytearray(data), 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name().decode() == METADATA_NAME:
            raw = model.Buffers(entry.Buffer()).DataAsNumpy()
            return json.loads(bytes(raw).decode("utf-8"))
    return {}


def weight_statistics(data):
    """Zero fraction and largest unique-value count over constant weight tensors.

    Only tensors of two or more dimensions (kernels) count; biases and scalars
    are left out, as tfmot leaves them unpruned and unclustered.

    Returns:
      {"weights": n, "zero_fraction": f, "max_unique_values": u,
       "max_unique_values_per_channel": c}: c counts per slice along a
      kernel's quantized dimension (per-channel int8), else its first axis
      (output channels of TFLite's conv and dense kernels).
    """
    model = read(data)
    seen = set()
    zeros = total = 0
    unique = per_channel = 0
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            buffer = model.buffers[tensor.buffer] if tensor.buffer else None
            if buffer is None or buffer.data is None or tensor.buffer in seen:
                continue
            shape = list(tensor.shape) if tensor.shape is not None else []
            if len(shape) < 2 or tensor.sparsity is not None:
                continue
            seen.add(tensor.buffer)
            dtype = {
                schema.TensorType.FLOAT32: np.float32,
                schema.TensorType.FLOAT16: np.float16,
                schema.TensorType.INT8: np.int8,
            }.get(tensor.type)
            if dtype is None:
                continue
            values = np.frombuffer(np.asarray(buffer.data, np.uint8).tobytes(), dtype)
            zeros += int(np.sum(values == 0))
            total += values.size
            if values.size:
                unique = max(unique, len(np.unique(values)))
                parameters = tensor.quantization
                axis = parameters.quantizedDimension if parameters is not None else 0
                if values.size == int(np.prod(shape)):
                    channels = np.moveaxis(values.reshape(shape), axis, 0)
                    per_channel = max(
                        per_channel,
                        max(len(np.unique(c)) for c in channels),
                    )
    return {
        "weights": total,
        "zero_fraction": zeros / total if total else 0.0,
        "max_unique_values": unique,
        "max_unique_values_per_channel": per_channel,
    }


def set_input_quantization(data, changes):
    """The model with signature inputs' (scale, zero_point) replaced, read
    and written once for every change.

    Args:
      data: the .tflite bytes.
      changes: (signature key, input name, (scale, zero_point)) triples; a
        key of None is the first signature.

    Raises:
      KeyError: no such input in that signature.
    """
    model = read(data)
    signatures = model.signatureDefs or []
    for signature_key, input_name, quantization in changes:
        found = None
        for signature in signatures:
            if signature_key is not None and (
                signature.signatureKey.decode() != signature_key
            ):
                continue
            graph = model.subgraphs[signature.subgraphIndex]
            found = next(
                (
                    graph.tensors[entry.tensorIndex]
                    for entry in signature.inputs
                    if entry.name.decode() == input_name
                ),
                None,
            )
            break
        if found is None:
            raise KeyError(f"no input {input_name!r} in signature {signature_key!r}")
        found.quantization.scale = np.array([quantization[0]], np.float32)
        found.quantization.zeroPoint = np.array([quantization[1]], np.int64)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


# Scales that differ by less than this (relative) are float rounding of the
# same calibrated range, not different ranges.
CHAIN_RELATIVE_TOLERANCE = 1e-5


def chain_verdict(produced, consumed):
    """ "same", "rounding" (repairable) or "different" for two (scale, zp)."""
    if tuple(produced) == tuple(consumed):
        return "same"
    (p_scale, p_zero), (c_scale, c_zero) = produced, consumed
    if p_zero == c_zero and abs(p_scale - c_scale) <= CHAIN_RELATIVE_TOLERANCE * abs(
        p_scale
    ):
        return "rounding"
    return "different"


def chain_repairs(api, k, handed_on):
    """The one int8 chain rule of every exporter: for stage_k's tensors
    handed to stage_(k+1), given as (input name, produced, consumed)
    (scale, zero point) triples, the (input name, produced) pairs whose
    last-bit rounding the consumer's input should take; raises `chain_error`
    where the parameters really differ."""
    repairs = []
    for input_name, produced, consumed in handed_on:
        verdict = chain_verdict(produced, consumed)
        if verdict == "different":
            raise chain_error(api, k, produced, consumed, input_name)
        if verdict == "rounding":
            repairs.append((input_name, produced))
    return repairs


def chain_error(api, k, produced, consumed, tensor=None):
    """The error for features_k (or another handed-on `tensor`) whose int8
    parameters differ between stages."""
    tensor = tensor or f"{naming.FEATURES}_{k}"
    logits = tensor.startswith(naming.LOGITS)
    return ValueError(
        f"{api}: {tensor} does not chain in int8: stage_{k} writes it"
        f"{' (its logits output)' if logits else ''} with "
        f"(scale, zero_point)={tuple(produced)} but stage_{k + 1} reads "
        f"{tuple(consumed)}. The stage inputs were calibrated with what the "
        "float stages produce on the same images; calibrate with more (and "
        "more varied) representative images, or export quantize='dynamic', "
        "whose stages exchange float features."
    )
