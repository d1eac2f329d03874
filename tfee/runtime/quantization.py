"""Floats in and out of integer tensors, as every runtime and client does it.

The dequantized value of an int8 tensor is `(q - zero_point) * scale`,
computed in float32; the rules (`tfee.rules`) score those values, on every
runtime, so this is the one place that says how they are computed.
"""

import numpy as np

from tfee import rules

__all__ = ["dequantize_output", "quantize_input", "quantizer", "row_dequantizer"]


def quantize_input(values, details, api="tfee.runtime.quantize_input"):
    """Float values as the tensor described by `details` expects them.

    Raises:
      ValueError: non-finite values for an integer tensor, which cannot
        represent them (they would become an arbitrary integer).
    """
    dtype = np.dtype(details["dtype"])
    if dtype.kind == "f":
        return np.asarray(values, dtype)
    values = np.asarray(values)
    scratch = np.empty(values.shape, np.float32)
    return _quantize(values, details, scratch, np.empty(values.shape, dtype), api)


def quantizer(details, shape, api="tfee.runtime.quantize_input"):
    """`quantize_input` for one input shape, into buffers allocated once.

    For a batch-1 cascade's hot path; the result is that buffer, valid
    until the next call. Float inputs pass through `np.asarray`.

    Returns:
      A function from float values of `shape` to the tensor's values.
    """
    dtype = np.dtype(details["dtype"])
    if dtype.kind == "f":
        return lambda values: np.asarray(values, dtype)
    scratch, result = np.empty(shape, np.float32), np.empty(shape, dtype)
    return lambda values: _quantize(values, details, scratch, result, api)


def _quantize(values, details, scratch, result, api):
    """round(values / scale) + zero_point, clipped, in float32 (`scratch`),
    then cast into `result`."""
    if not rules.all_finite(values):
        raise ValueError(
            f"{api}: the model's input is {result.dtype.name}, which has no NaN or "
            "infinity; replace non-finite values before quantizing. Received: "
            f"{int(np.sum(~np.isfinite(values)))} non-finite values"
        )
    scale, zero_point = details["quantization"]
    info = np.iinfo(result.dtype)
    np.divide(np.asarray(values, np.float32), scale, out=scratch)
    np.round(scratch, out=scratch)
    np.add(scratch, zero_point, out=scratch)
    np.clip(scratch, info.min, info.max, out=scratch)
    np.copyto(result, scratch, casting="unsafe")
    return result


def dequantize_output(values, details):
    """A signature output as float32 (dequantized where it is integer)."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        return np.asarray(values, np.float32)
    scale, zero_point = details["quantization"]
    # float32 throughout, exactly as the generated C: (float)(q - zp) * scale.
    return (values.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


def row_dequantizer(details):
    """`dequantize_output` of one sample, as a list of Python floats.

    For a batch-1 cascade's hot path, where each numpy call costs more than
    the arithmetic: an 8-bit output is dequantized through a table of its
    256 values, computed once by `dequantize_output` (so the floats are the
    same, float32 values held exactly as Python floats).

    Args:
      details: the output's details (dtype, quantization).

    Returns:
      A function from an output of batch 1 (an array (1, ...)) to the list
      of its values, flattened.
    """
    dtype = np.dtype(details["dtype"])
    if dtype.kind == "f" or dtype.itemsize > 1:
        return lambda values: dequantize_output(values, details).reshape(-1).tolist()
    info = np.iinfo(dtype)
    codes = np.arange(info.min, info.max + 1).astype(dtype)
    values = dequantize_output(codes, details).tolist()
    # Indexed by the code itself: int8's negative codes index from the end.
    table = values[-info.min :] + values[: -info.min]
    return lambda codes: [table[q] for q in codes.reshape(-1).tolist()]
