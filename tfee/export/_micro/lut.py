"""Look-up-table weights (`compress="lut"`): `tflite_micro.compression`.

A clustered int8 weight tensor holds few distinct values, so it can be
stored as bit-packed indices into value tables (one per quantization
channel); TFLite Micro's DECODE operator expands it into the arena before
the operator that reads it.
"""

import dataclasses
import math

import numpy as np

from tfee import _flatbuffer

__all__ = ["DECODE_OP", "LutTensor", "pack"]

# TFLite Micro's DECODE operator, a custom op inserted by tflite_micro.compression.
DECODE_OP = "CUSTOM:TFLM_DECODE"
# The ops whose weights (input 1) tfmot clusters and DECODE may feed.
_LUT_WEIGHT_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"})
# The widest index DECODE reads, and the header before each tensor's value
# tables (its Decode Common Metadata).
_LUT_MAX_BITS = 7
_LUT_HEADER_BYTES = 16


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
class _LutCandidate:
    index: int
    axis: object  # The channel axis of the value tables, or None for one table.
    tensor: LutTensor

    @property
    def saving(self):
        t = self.tensor
        return t.weights - t.index_bytes - t.table_bytes


def _candidates(data, names):
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


def pack(data, names):
    """(model, LutTensors): the stage with its weights as look-up tables.

    Each packed tensor also costs graph entries (its DECODE operator, the
    value-table and decoded tensors), so the tensors are packed in order of
    their saving and the smallest resulting model is kept: the model as it
    was when no packing makes it smaller.
    """
    from tflite_micro import compression
    from tflite_micro.tensorflow.lite.micro.compression import spec

    candidates = _candidates(data, names)
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
