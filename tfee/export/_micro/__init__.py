"""TFLite Micro: one dense int8 model per stage, as C arrays, plus the cascade.

TFLite Micro runs subgraph 0 only (no signatures) and reads no sparse
tensors, so a cascade on a microcontroller is one full-integer model per
stage: stage 1 maps the image to features_1 and exit 1's outputs, stage k
maps features_(k-1) (and exit k-1's logits, for a cascading head) onward.
Every stage comes as a .tflite and a C++ source/header pair (`alignas(16)`
const arrays and their lengths), with the builtin ops it needs and its
tensor arena, measured in TFLite Micro; `{name}_cascade.cc` holds the op
resolvers and the loop that stops at the first confident exit. With
`compress="lut"`, clustered weight tensors are stored as bit-packed
look-up-table indices (`tflite_micro.compression`) that TFLite Micro's
DECODE operator expands into the arena.

The implementation is private (its public names are `tfee.export`'s), one
step per module:

- `convert`: the stage models as int8 flatbuffers (`MICRO_OPS`).
- `lut`: weights as look-up-table indices (`LutTensor`).
- `measure`: arenas measured, and stages as written checked, in TFLite Micro.
- `cpp`: the generated C++ (C arrays, the cascade's header and source).
- `manifest`: `{name}_manifest.json`, for `tfee.runtime.MicroCascade`.
- `result`: `MicroStage` and `MicroExport`, what `micro` returns.
- `export`: `micro` itself, which runs the steps in order.

The package is not named `micro`: that name is the function
`tfee.export.micro`, and a module of that name would shadow it.
"""

from tfee.export._micro.convert import MICRO_OPS
from tfee.export._micro.export import COMPRESSIONS
from tfee.export._micro.export import micro
from tfee.export._micro.lut import LutTensor
from tfee.export._micro.manifest import MANIFEST_FORMAT
from tfee.export._micro.result import MicroExport
from tfee.export._micro.result import MicroStage

__all__ = [
    "COMPRESSIONS",
    "LutTensor",
    "MANIFEST_FORMAT",
    "MICRO_OPS",
    "MicroExport",
    "MicroStage",
    "micro",
]
