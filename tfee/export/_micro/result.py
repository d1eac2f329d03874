"""What `tfee.export.micro` returns: the files it wrote and their sizes."""

import dataclasses

__all__ = ["MicroExport", "MicroStage"]


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
