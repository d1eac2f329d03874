"""Cascade runtimes: one engine, a backend per runtime, one result type.

`DynamicPredictor` runs a Keras network, `Cascade` a .tflite's stage
signatures in LiteRT, `MicroCascade` the per-stage int8 models in TensorFlow
Lite Micro; all three return a `CascadeResult` decided by the same loop and
the same rules (`tfee.rules`).
"""

from tfee.runtime.engine import CascadeResult
from tfee.runtime.keras import DynamicPredictor
from tfee.runtime.litert import METADATA_FORMAT
from tfee.runtime.litert import Cascade
from tfee.runtime.litert import embedded_policy
from tfee.runtime.litert import read_metadata
from tfee.runtime.micro import MicroCascade
from tfee.runtime.micro import measure_arena
from tfee.runtime.micro import measure_arenas
from tfee.runtime.quantization import dequantize_output
from tfee.runtime.quantization import quantize_input

__all__ = [
    "Cascade",
    "METADATA_FORMAT",
    "CascadeResult",
    "DynamicPredictor",
    "MicroCascade",
    "dequantize_output",
    "embedded_policy",
    "measure_arena",
    "measure_arenas",
    "quantize_input",
    "read_metadata",
]

# Private modules stay out of the public namespace (they remain importable).
del _litert  # noqa: F821
