"""Floats in and out of integer tensors, as every runtime and client does it.

The dequantized value of an int8 tensor is `(q - zero_point) * scale`,
computed in float32; the rules (`tfee.rules`) score those values, on every
runtime, so this is the one place that says how they are computed.
"""

import numpy as np

__all__ = ["dequantize_output", "quantize_input"]


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
    if not np.all(np.isfinite(values)):
        raise ValueError(
            f"{api}: the model's input is {dtype.name}, which has no NaN or "
            "infinity; replace non-finite values before quantizing. Received: "
            f"{int(np.sum(~np.isfinite(values)))} non-finite values"
        )
    scale, zero_point = details["quantization"]
    info = np.iinfo(dtype)
    quantized = np.round(np.asarray(values, np.float32) / scale) + zero_point
    return np.clip(quantized, info.min, info.max).astype(dtype)


def dequantize_output(values, details):
    """A signature output as float32 (dequantized where it is integer)."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        return np.asarray(values, np.float32)
    scale, zero_point = details["quantization"]
    # float32 throughout, exactly as the generated C: (float)(q - zp) * scale.
    return (values.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
