"""Export to TFLite for phones and microcontrollers.

- `tflite`: one .tflite with `exit_k` and `stage_k` signatures sharing
  weights (float32, float16, dynamic-range or full int8).
- `micro`: one dense int8 .tflite per stage for TFLite Micro, as C arrays,
  with op resolvers, arena estimates and the cascade loop in C++.
- `set_policy`: embeds a (re)calibrated policy in an exported .tflite.
- `verify`: checks every signature against the Keras network.

The files run as cascades in `tfee.runtime` (`Cascade`, `MicroCascade`).
"""

from tfee.export._micro import COMPRESSIONS
from tfee.export._micro import MICRO_OPS
from tfee.export._micro import LutTensor
from tfee.export._micro import MicroExport
from tfee.export._micro import MicroStage
from tfee.export._micro import micro
from tfee.export.compression_ratio import CompressionReport
from tfee.export.compression_ratio import compression_report
from tfee.export.compression_ratio import tflite_bytes
from tfee.export.tflite_export import QUANTIZATIONS
from tfee.export.tflite_export import ExportReport
from tfee.export.tflite_export import gzipped_size
from tfee.export.tflite_export import set_policy
from tfee.export.tflite_export import tflite
from tfee.export.verification import SignatureCheck
from tfee.export.verification import Verification
from tfee.export.verification import verify

__all__ = [
    "COMPRESSIONS",
    "CompressionReport",
    "ExportReport",
    "LutTensor",
    "MICRO_OPS",
    "MicroExport",
    "MicroStage",
    "QUANTIZATIONS",
    "SignatureCheck",
    "Verification",
    "compression_report",
    "gzipped_size",
    "micro",
    "set_policy",
    "tflite",
    "tflite_bytes",
    "verify",
]

# Private modules stay out of the public namespace (they remain importable).
del _calibration, _micro, _signatures  # noqa: F821
