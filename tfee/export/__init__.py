"""Export to TFLite for phones and microcontrollers, and run the cascade.

- `tflite`: one .tflite with `exit_k` and `stage_k` signatures sharing
  weights (float32, float16, dynamic-range or full int8).
- `micro`: one dense int8 .tflite per stage for TFLite Micro, as C arrays,
  with op resolvers, arena estimates and the cascade loop in C++.
- `Cascade`: runs the stage signatures on LiteRT under an exit policy.
- `verify`: checks every signature against the Keras network.
"""

from tfee.export.micro import MicroExport
from tfee.export.micro import MicroStage
from tfee.export.micro import micro
from tfee.export.runtime import Cascade
from tfee.export.runtime import read_metadata
from tfee.export.tflite import QUANTIZATIONS
from tfee.export.tflite import ExportReport
from tfee.export.tflite import gzipped_size
from tfee.export.tflite import strip
from tfee.export.tflite import tflite
from tfee.export.verify import SignatureCheck
from tfee.export.verify import Verification
from tfee.export.verify import verify

__all__ = [
    "Cascade",
    "ExportReport",
    "MicroExport",
    "MicroStage",
    "QUANTIZATIONS",
    "SignatureCheck",
    "Verification",
    "gzipped_size",
    "micro",
    "read_metadata",
    "strip",
    "tflite",
    "verify",
]
