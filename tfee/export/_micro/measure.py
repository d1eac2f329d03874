"""The stage models run in TensorFlow Lite Micro at export: arenas measured,
stages as written checked against the converter's."""

import numpy as np

from tfee.runtime import micro as micro_runtime

__all__ = [
    "ARENA_MARGIN_BYTES",
    "ARENA_MARGIN_FRACTION",
    "ARENA_MARGIN_TEXT",
    "arenas",
    "check_written_stage",
]

# The arena measured in the reference-kernel interpreter, plus this margin:
# optimized kernels (CMSIS-NN, for instance) may ask for scratch buffers the
# reference kernels do not need.
ARENA_MARGIN_FRACTION = 0.10
ARENA_MARGIN_BYTES = 1024
ARENA_MARGIN_TEXT = f"{100 * ARENA_MARGIN_FRACTION:.0f}% + {ARENA_MARGIN_BYTES} bytes"


def arenas(models):
    """Per stage model, (arena, measured): its arena, measured in TFLite
    Micro (all stages in one child process), plus the margin, 16-aligned;
    and the measurement alone."""
    found = []
    for measured in micro_runtime.measure_arenas(models):
        arena = int(measured * (1 + ARENA_MARGIN_FRACTION)) + ARENA_MARGIN_BYTES
        found.append(((arena + 15) // 16 * 16, measured))
    return found


def check_written_stage(converted, written, arena, inputs, outputs, k, api):
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
