"""`{name}_manifest.json`: which file and which tensor is which, for
`tfee.runtime.MicroCascade`, in the format that reader defines."""

import dataclasses
import os

from tfee.runtime import micro as micro_runtime

__all__ = ["MANIFEST_FORMAT", "manifest"]

# The manifest beside the stage models (which output is which) is in the
# format its reader, tfee.runtime.MicroCascade, defines.
MANIFEST_FORMAT = micro_runtime.MANIFEST_FORMAT


def manifest(
    *,
    name,
    stages,
    input_positions,
    positions,
    cumulative_macs,
    arena,
    compress,
    normalised,
    policy,
):
    """The manifest of an export, as a JSON-ready dict.

    Args:
      name: the export's `name`.
      stages: its `MicroStage`s.
      input_positions, positions: per stage, {input or output name: its
        position in the stage model's inputs or outputs}.
      cumulative_macs: per exit, the MACs up to it.
      arena: the one arena every stage shares.
      compress: None or "lut".
      normalised: the normalisation the network includes, or None.
      policy: the policy compiled into the cascade source, or None.
    """
    return {
        "format": (
            micro_runtime.CASCADING_MANIFEST_FORMAT
            if any(len(inputs) > 1 for inputs in input_positions)
            else MANIFEST_FORMAT
        ),
        "name": name,
        "num_exits": len(stages),
        "cumulative_macs": cumulative_macs,
        "arena_bytes": arena,
        "compress": compress,
        "normalised_in_model": normalised,
        # The policy compiled into the cascade source, for MicroCascade.
        "policy": None if policy is None else policy.to_dict(),
        "flash_bytes": sum(stage.flash_bytes for stage in stages),
        "stages": [
            {
                "model": os.path.basename(stage.model_path),
                "inputs": inputs,
                "outputs": outputs,
                "arena_bytes": stage.arena_bytes,
                "measured_arena_bytes": stage.measured_arena_bytes,
                "flash_bytes": stage.flash_bytes,
                "dense_bytes": stage.dense_bytes,
                "lut_tensors": [
                    dataclasses.asdict(tensor) for tensor in stage.lut_tensors
                ],
            }
            for stage, inputs, outputs in zip(stages, input_positions, positions)
        ],
    }
