"""`tfee.export.micro`: the per-stage int8 models, their C++ and the manifest.

Each step has its module in this package: `convert` (the stage models as
int8 flatbuffers), `lut` (look-up-table weights), `measure` (arenas, and the
written stages checked in TensorFlow Lite Micro), `cpp` (the generated C++),
`manifest` and `result` (what was written). This one checks the arguments,
runs the steps in order and writes the files.
"""

import json
import os
import re
import warnings

import numpy as np

from tfee import _checks
from tfee import _flatbuffer
from tfee import input_normalisation
from tfee import naming
from tfee._files import check_output_path
from tfee._files import write_bytes_atomically
from tfee._keras import keras
from tfee.export import _calibration
from tfee.export import _signatures
from tfee.export._micro import convert
from tfee.export._micro import cpp
from tfee.export._micro import lut
from tfee.export._micro import manifest as manifest_lib
from tfee.export._micro import measure
from tfee.export._micro.result import MicroExport
from tfee.export._micro.result import MicroStage
from tfee.policy import compatibility
from tfee.policy import decision_policy
from tfee.policy import patience_policy
from tfee.policy import threshold_policy
from tfee.runtime import engine

__all__ = ["COMPRESSIONS", "micro"]

# How `micro(compress=...)` may store weights: None (plain int8) or "lut".
COMPRESSIONS = (None, "lut")


def _check_name(name, api):
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(
            f"{api}: `name` must be a C identifier (letters, digits, _). "
            f"Received: name={name!r}"
        )


def _check_compress(compress, api):
    if not (compress is None or (isinstance(compress, str) and compress == "lut")):
        raise ValueError(
            f'{api}: `compress` must be one of {list(COMPRESSIONS)} ("lut": '
            "clustered weights as look-up-table indices that TFLite Micro's "
            f"DECODE operator expands). Received: compress={compress!r}"
        )


def _check_policy(policy, structure, api):
    if policy is None:
        return None
    kinds = (
        threshold_policy.ThresholdPolicy,
        patience_policy.PatiencePolicy,
        decision_policy.DecisionPolicy,
    )
    if not isinstance(policy, kinds):
        raise TypeError(
            f"{api}: `policy` must be a tfee.ThresholdPolicy, tfee.PatiencePolicy "
            "or tfee.DecisionPolicy for the generated C++ loop, or None. Received: "
            f"policy={type(policy).__name__}"
        )
    return compatibility.check_policy_for(policy, structure, api)


def _remove_stale_stages(directory, name, num_stages):
    """Removes stage files an earlier export of `name` with more stages left."""
    pattern = re.compile(
        rf"^{re.escape(name)}_stage_([1-9]\d*)(?:\.tflite|_model_data\.(?:cc|h))$"
    )
    for entry in os.listdir(directory):
        match = pattern.match(entry)
        if match and int(match.group(1)) > num_stages:
            os.remove(os.path.join(directory, entry))


def micro(
    network,
    directory,
    representative,
    name="tfee_model",
    policy=None,
    calibration_samples=512,
    compress=None,
    strip_strings=True,
    per_channel=True,
):
    """Exports one dense int8 .tflite per stage for TFLite Micro, with C sources.

    Writes, for k = 1..K: `{name}_stage_{k}.tflite`, `{name}_stage_{k}_model_data.cc`
    (an `alignas(16) const unsigned char` array and its length) and `.h`
    (declarations, used ops, arena), plus `{name}_cascade.cc` and `.h`: a
    `MicroMutableOpResolver<N>` per stage with exactly the ops it uses, one
    tensor arena that every stage shares (set up in turn, so RAM is the
    largest stage's arena plus the largest features_k, and `kNumClasses`
    bytes for exit k's logits where head k+1 is cascading), the cascade
    loop, and a header declaring `{name}_cascade`, the input quantization,
    the sizes and which input and output is which; and
    `{name}_manifest.json` for `tfee.runtime.MicroCascade`. Stage inputs
    and outputs are int8; what stage k hands on (`naming.handed_on`) leaves
    it with the scale and zero point stage k+1 reads (checked). Stage files an earlier export of the same `name` left behind
    are removed.

    Arenas are measured in the real TensorFlow Lite Micro interpreter
    (`tfee.runtime.measure_arena`, bisecting `arena_size`), plus a margin of
    10% + 1 KiB for kernels that need scratch buffers the reference kernels
    do not.

    `compress="lut"` packs clustered weights for flash with
    `tflite_micro.compression`: every convolution, depthwise or dense
    weight tensor whose look-up-table form is smaller than its int8 bytes
    becomes bit-packed indices (ceil(log2(distinct values)) bits, 1 to 7)
    into value tables, one per quantization channel, and a DECODE operator
    before its consumer expands it into the arena. A tensor is packed only
    if the stage file, graph entries included, gets smaller. The resolver
    then registers DECODE (`AddDecode()`); the arena is measured on the
    packed model (it holds the decoded tensors), and each packed stage is
    checked to compute exactly what its int8 model computes in TFLite
    Micro. A network without such tensors (not clustered, say) is written
    as with None, with a warning; each stage's `lut_tensors` says what was
    packed.

    Args:
      network: a tfee early-exit network (pruning/clustering wrappers are
        stripped; sparse weights are stored dense, as Micro needs).
      directory: where to write (created if missing).
      representative: preprocessed float images (dataset or array) to
        calibrate int8; stage k>1 is calibrated with float stage k-1's
        features on the same images.
      name: prefix of files and C symbols; a C identifier.
      policy: a `ThresholdPolicy`, `PatiencePolicy` or `DecisionPolicy`
        baked into the loop, which decides as `tfee.rules` specifies; None
        runs every sample to the deepest exit.
      calibration_samples: how many representative images to use.
      compress: None (every weight plain int8) or "lut" (see above).
      strip_strings: drop tensor names, signatures and descriptions from the
        stage files (TFLite's `strip_strings`; TFLite Micro reads none of
        them, and they are a fifth of a small stage's flash). Each stripped
        stage is checked to compute exactly what the converted one does.
        False keeps them, for inspecting the files (Netron, LiteRT).
      per_channel: weights get one int8 scale per output channel (the
        converter's default). False uses one per kernel, as
        `tfee.export.tflite(per_channel=False)`: a kernel clustered per
        tensor then has its cluster count of int8 values in one look-up
        table, and the per-channel quantization arrays (12 bytes per channel
        of every kernel and bias) leave the flash image. Check the accuracy:
        kernels whose channels differ much in scale lose resolution.

    Returns:
      A `MicroExport`: per stage its files, flash bytes (LUT-packed and
      dense) and arena bytes (measured, and with the margin).

    Raises:
      TypeError: not a functional tf_keras model, or non-float images.
      ValueError: layers or ops TFLite Micro cannot run, bad representative
        data, name or `compress`, or features whose int8 scales do not chain.
        Checks on the inputs run before any conversion; nothing is written
        unless every stage converted.
      RuntimeError: a stage as written (names stripped, weights LUT-packed)
        computes other outputs than its converted int8 model in TensorFlow
        Lite Micro (checked at export; nothing written).

    Example:
      >>> tfee.export.micro(net, "firmware/", representative=val_ds,
      ...                   policy=policy)
      >>> clustered = tfee.compress.cluster(net, train_ds, 16)
      >>> tfee.export.micro(clustered, "firmware/", val_ds, compress="lut")
    """
    api = "tfee.export.micro"
    _check_name(name, api)
    _check_compress(compress, api)
    _checks.check_bool(strip_strings, "strip_strings", api)
    _checks.check_bool(per_channel, "per_channel", api)
    if not isinstance(directory, str) or not directory:
        raise TypeError(
            f"{api}: `directory` must be a path string. Received: {directory!r}"
        )
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(
            f"{api}: `directory` is an existing file; pass the folder to write the "
            f"stage models and sources into. Received: directory={directory!r}"
        )
    check_output_path(directory, api, "directory", directory=True)
    structure = _signatures.stripped_structure(network, api)
    stripped, infos = structure.network, structure.exits
    convert.check_layers(stripped, api)
    normalised = input_normalisation.included_normalisation(stripped)
    batch_norms = [
        layer.name
        for layer in stripped.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    if not per_channel and batch_norms:
        # The converter folds each BN into its kernel, a factor per channel:
        # one int8 scale per kernel then serves channels of different ranges.
        warnings.warn(
            f"{api}: per_channel=False on a network that still has "
            f"BatchNormalization layers ({batch_norms[:3]}...): the converter "
            "folds them into the kernels, so one int8 scale per kernel must "
            "cover every channel's range, which can cost accuracy and spreads "
            "clusters over many values. Fold BN first (tfee.compress.cluster("
            "..., fold_batch_norm=True)) or keep per_channel=True.",
            stacklevel=2,
        )
    policy = _check_policy(policy, structure, api)
    calibration = _checks.check_images(
        representative, stripped, calibration_samples, api
    )
    inputs = _calibration.stage_inputs(structure, calibration)
    converted = convert.convert_stages(structure, inputs, per_channel, api)
    dense_models = [
        _flatbuffer.without_strings(c.model) if strip_strings else c.model
        for c in converted
    ]
    packed = [  # Per stage: (the bytes written, its LUT tensors).
        (
            lut.pack(dense, _flatbuffer.tensor_names(c.model))
            if compress == "lut"
            else (dense, ())
        )
        for dense, c in zip(dense_models, converted)
    ]
    # Every stage's arena in one child process: one start-up, not K.
    arenas = measure.arenas([data for data, _ in packed])
    stages, files = [], []
    for k, stage in enumerate(converted, start=1):
        stem = f"{name}_stage_{k}"
        array_name = f"g_{stem}_model"
        dense = dense_models[k - 1]
        data, lut_tensors = packed[k - 1]
        ops = stage.ops
        if lut_tensors:
            ops = tuple(_flatbuffer.op_names(data, subgraph=0))
        arena, measured = arenas[k - 1]
        if data is not stage.model:
            measure.check_written_stage(
                stage.model,
                data,
                arena,
                len(stage.inputs),
                len(stage.outputs),
                k,
                api,
            )
        source, header = cpp.c_array(
            data, array_name, f"{stem}_model_data.h", ops, arena, lut_tensors
        )
        paths = [
            os.path.join(directory, f"{stem}.tflite"),
            os.path.join(directory, f"{stem}_model_data.cc"),
            os.path.join(directory, f"{stem}_model_data.h"),
        ]
        files += list(zip(paths, [data, source, header]))
        features = stage.outputs.get(naming.features_name(k))
        image_or_features = stage.inputs[naming.stage_input_name(k)][0]
        stages.append(
            MicroStage(
                index=k,
                model_path=paths[0],
                source_path=paths[1],
                header_path=paths[2],
                array_name=array_name,
                bytes=len(data),
                ops=ops,
                arena_bytes=arena,
                input_bytes=int(np.prod(image_or_features["shape"])),
                input_quantization=tuple(image_or_features["quantization"]),
                features_quantization=(
                    tuple(features[0]["quantization"]) if features else None
                ),
                flash_bytes=len(data),
                dense_bytes=len(dense),
                measured_arena_bytes=measured,
                lut_tensors=lut_tensors,
            )
        )
    if compress == "lut" and not any(stage.lut_tensors for stage in stages):
        warnings.warn(
            f"{api}: compress='lut' packed no weight tensor: none has few enough "
            "distinct int8 values (per quantization channel) for look-up-table "
            "indices to make its stage smaller, so every stage is plain int8. "
            "Cluster the network first (tfee.compress.cluster).",
            stacklevel=2,
        )
    positions = [c.output_positions for c in converted]
    input_positions = [c.input_positions for c in converted]
    engine.warn_unreachable(
        policy,
        [
            (
                engine.confidence_ceiling(c.outputs[naming.CONFIDENCE][0])
                if naming.CONFIDENCE in c.outputs
                else None
            )
            for c in converted
        ],
        api,
    )
    classes = int(converted[0].outputs[naming.LOGITS][0]["shape"][-1])
    arena = max(stage.arena_bytes for stage in stages)
    features = max(
        [
            int(np.prod(c.outputs[naming.features_name(k)][0]["shape"]))
            for k, c in enumerate(converted[:-1], start=1)
        ],
        default=0,
    )
    cascade_path = os.path.join(directory, f"{name}_cascade.cc")
    header_path = os.path.join(directory, f"{name}_cascade.h")
    files.append(
        (
            cascade_path,
            cpp.cascade_source(
                name, stages, positions, input_positions, policy, classes
            ),
        )
    )
    files.append(
        (
            header_path,
            cpp.cascade_header(
                name,
                stages,
                positions,
                input_positions,
                classes,
                arena,
                features,
                normalised,
            ),
        )
    )
    manifest = manifest_lib.manifest(
        name=name,
        stages=stages,
        input_positions=input_positions,
        positions=positions,
        cumulative_macs=[int(i.cumulative_macs) for i in infos],
        arena=arena,
        compress=compress,
        normalised=normalised,
        policy=policy,
    )
    manifest_path = os.path.join(directory, f"{name}_manifest.json")
    files.append((manifest_path, json.dumps(manifest, indent=2)))
    for path, content in files:
        write_bytes_atomically(path, content)
    _remove_stale_stages(directory, name, len(stages))
    return MicroExport(
        directory=directory,
        stages=tuple(stages),
        cascade_path=cascade_path,
        header_path=header_path,
        arena_bytes=arena,
        manifest_path=manifest_path,
        compress=compress,
        flash_bytes=sum(stage.flash_bytes for stage in stages),
    )
