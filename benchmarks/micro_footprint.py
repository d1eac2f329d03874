"""TensorFlow Lite Micro footprint: the arena the firmware gets, and flash.

Two performance lines of issue 14, both measured on what TensorFlow Lite
Micro itself runs (the `tflite-micro` interpreter, `tfee.runtime.micro`):

Arena (RAM). For each head type (--micro_heads: linear, sdn, conv) the
reference architecture (`tfee.recipes.build_reference_network(head=...)`) is
exported untrained, seed 0, with `tfee.export.micro`: an arena's size
depends on tensor shapes, not on weights. Per stage it reports the arena
TFLite Micro needed (`MicroStage.measured_arena_bytes`, bisected in the real
interpreter), the arena written into the firmware (`arena_bytes`: measured
+ 10% + 1 KiB) and the margin; the one arena every stage shares
(`MicroExport.arena_bytes`, `kArenaBytes` in the cascade header) and which
stage sets it; and the static RAM the generated cascade declares: that arena
plus the buffer features_k are copied to between stages (`kFeatureBytes`).
Sufficiency is shown by running: `tfee.runtime.MicroCascade` sets every
stage up in the arena the manifest gives it (as the firmware does) and runs
--micro_cascade_images images through every stage (every threshold None),
whose exits must all give finite logits; each stage file is also measured
again with `tfee.runtime.measure_arena`, independently of the export.

Flash. The trained reference network (`common.reference()`; skipped with
the reason recorded when it does not exist yet) is clustered section by
section with `tfee.compress.cluster` (ESCEPE, as benchmarks/clustering.py:
distillation from the dense network, Adam, --micro_clustering_steps batches
per stage, BN kept as a layer so per-channel int8 scales keep each channel's
cluster count), cached in --cache_dir so a rerun resumes, and exported with
`tfee.export.micro(..., compress="lut")`. Per-exit test accuracy is that of
the stage files run in TFLite Micro (`MicroCascade.exit_outputs`), against
the uncompressed Keras network on the same images. Bits per weight = 8 x
flash bytes (every stage's C array) / the network's weights (every Keras
weight, as `tfee.export.compression_report` counts them), split into the
look-up-table indices, the value tables (with their headers), constants
left plain (int8 weights not worth packing, int32 biases) and the rest of
the flatbuffer (graph, quantization parameters, names, metadata).
--micro_parts=flash_size measures the flash side alone on the untrained
architecture clustered without retraining (sizes only: retraining moves
centroids, not their number), when the trained network is not there yet.

    .venv/bin/python -m benchmarks.micro_footprint              # the reference
    .venv/bin/python -m benchmarks.micro_footprint --quick      # smoke check only
    .venv/bin/python -m benchmarks.micro_footprint --micro_parts=flash_size \
        --micro_result_name=micro_footprint_flash_size      # sizes, untrained
"""

import os
import re
import sys
import tempfile
import time

import numpy as np
from absl import app
from absl import flags
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

import tfee
import tfee.compress
import tfee.export
import tfee.policy
import tfee.runtime
from benchmarks import common
from tfee import keras
from tfee import recipes
from tfee import tf
from tfee._files import write_atomically

FLAGS = flags.FLAGS
flags.DEFINE_list("micro_heads", ["linear", "sdn", "conv"], "Head types (arena).")
flags.DEFINE_integer(
    "micro_representative", 256, "Calibration images for the arena exports."
)
flags.DEFINE_integer(
    "micro_cascade_images", 32, "Images run through every stage in TFLite Micro."
)
flags.DEFINE_bool(
    "micro_remeasure", True, "Measure every stage file's arena again, independently."
)
flags.DEFINE_list(
    "micro_parts",
    ["arena", "flash"],
    "Which parts to run: arena, flash (the trained reference), flash_size "
    "(the untrained architecture clustered without retraining: sizes only).",
)
flags.DEFINE_string(
    "micro_clusters",
    "16",
    "Clusters per section (tfee.compress.parse_clusters); 16 = 4-bit indices.",
)
flags.DEFINE_integer(
    "micro_clustering_steps", 352, "Retraining batches per clustering stage."
)
flags.DEFINE_bool(
    "micro_per_channel",
    True,
    "Per-channel int8 weight scales in the clustered export. False: one per "
    "kernel, and BN is folded into the kernels before clustering (so each "
    "kernel keeps its clusters in one look-up table; BN's weights leave the "
    "count).",
)
flags.DEFINE_float("micro_clustering_learning_rate", 1e-4, "Adam learning rate.")
flags.DEFINE_integer(
    "micro_test_images",
    0,
    "Test images the TFLite Micro files are scored on (0: the whole test split).",
)

flags.DEFINE_string(
    "micro_result_name", "micro_footprint", "The JSON's name (without _full.json)."
)

TARGET_BITS_PER_WEIGHT = 4.5
# The custom code of TFLite Micro's DECODE operator (tflite_micro.compression).
DECODE_CODE = b"TFLM_DECODE"
MAX_EXIT_DROP_POINTS = 1.0


def _header_constant(path, name):
    with open(path) as f:
        match = re.search(rf"\b{name}\s*=\s*(\d+)", f.read())
    return int(match.group(1)) if match else None


def _run_everything_policy(num_exits):
    return tfee.ThresholdPolicy([None] * (num_exits - 1))


def arena_images(count):
    """(images, source): float images to calibrate and run the arena exports.

    Validation images of the reference data where they can be read (the
    tiny stand-in's generated ones with --quick), else N(0, 1) noise: arena
    sizes do not depend on the values."""
    try:
        data = common.reference_data()
        images = data.normalised("validation")[:count]
        source = "validation images" + (" (generated stand-in)" if FLAGS.quick else "")
    except (ValueError, OSError) as error:
        print(f"no reference data ({error}); using N(0, 1) images", flush=True)
        images = np.random.default_rng(0).normal(0, 1, (count, 32, 32, 3))
        source = "generated N(0, 1) images"
    return np.asarray(images, "float32"), source


def architecture(head):
    """The reference architecture with `head` exits (--quick: the tiny
    stand-in's), untrained, seed 0."""
    keras.utils.set_random_seed(0)
    if FLAGS.quick:
        tiny = common.TINY_NETWORK
        return recipes.build_reference_network(
            depth=tiny["depth"],
            width=tiny["width"],
            fractions=tiny["fractions"],
            head=head,
        )
    return recipes.build_reference_network(head=head)


def sufficiency(manifest_path, num_exits, images):
    """Runs every stage in its written arena in TFLite Micro, as firmware does."""
    tick = time.time()
    try:
        cascade = tfee.runtime.MicroCascade(
            manifest_path, _run_everything_policy(num_exits)
        )
        logits, _ = cascade.exit_outputs(images)
        result = cascade.predict(images)
    except (RuntimeError, ValueError) as error:
        return {"ran": False, "error": str(error)}
    return {
        "ran": True,
        "images": len(images),
        "every_exit_finite": bool(all(np.isfinite(x).all() for x in logits)),
        "every_sample_reached_the_deepest_exit": bool(
            np.all(np.asarray(result.exit_indices) == num_exits - 1)
        ),
        "seconds_per_image_all_stages": round(
            (time.time() - tick) / (2 * len(images)), 4
        ),
    }


def arena_row(head, images, cascade_images):
    """Exports the architecture with `head` exits and measures its arenas;
    runs `cascade_images` through every stage in the written arenas."""
    network = architecture(head)
    num_exits = len(tfee.exits(network))
    with tempfile.TemporaryDirectory(prefix="tfee-micro-arena-") as directory:
        print(f"[{head}] exporting {num_exits} stages for TFLite Micro ...", flush=True)
        tick = time.time()
        export = tfee.export.micro(
            network, directory, representative=images, name=f"{head}_net"
        )
        export_seconds = time.time() - tick
        stages = []
        for stage in export.stages:
            row = {
                "stage": stage.index,
                "measured_arena_bytes": stage.measured_arena_bytes,
                "written_arena_bytes": stage.arena_bytes,
                "header_arena_bytes": _header_constant(
                    stage.header_path, f"{stage.array_name}_arena_bytes"
                ),
                "margin_bytes": stage.arena_bytes - stage.measured_arena_bytes,
                "margin_fraction": round(
                    stage.arena_bytes / stage.measured_arena_bytes - 1, 4
                ),
                "flash_bytes": stage.flash_bytes,
                "input_bytes": stage.input_bytes,
            }
            if FLAGS.micro_remeasure:
                with open(stage.model_path, "rb") as f:
                    row["remeasured_arena_bytes"] = tfee.runtime.measure_arena(f.read())
            stages.append(row)
        arena = _header_constant(export.header_path, "kArenaBytes")
        features = _header_constant(export.header_path, "kFeatureBytes")
        largest = max(stages, key=lambda s: s["written_arena_bytes"])
        print(f"[{head}] running every stage in TFLite Micro ...", flush=True)
        ran = sufficiency(export.manifest_path, num_exits, cascade_images)
    written = [s["written_arena_bytes"] for s in stages]
    return {
        "head": head,
        "num_exits": num_exits,
        "export_seconds": round(export_seconds, 1),
        "stages": stages,
        "shared_arena_bytes": export.arena_bytes,
        "header_arena_bytes": arena,
        "largest_stage": largest["stage"],
        "sum_of_stage_arenas_bytes": sum(written),
        "features_buffer_bytes": features,
        "static_ram_bytes": arena + features,
        "static_ram_note": "g_arena (kArenaBytes, shared by every stage) + "
        "g_features (kFeatureBytes, the largest features_k copied out between "
        "stages); the interpreter object's storage and the op resolvers are "
        "not counted",
        "flash_bytes": export.flash_bytes,
        "cascade": ran,
        "checks": {
            "written_at_least_measured_every_stage": all(
                s["written_arena_bytes"] >= s["measured_arena_bytes"] for s in stages
            ),
            "header_equals_written_every_stage": all(
                s["header_arena_bytes"] == s["written_arena_bytes"] for s in stages
            ),
            "shared_arena_is_the_largest_stage_arena": export.arena_bytes
            == max(written)
            == arena,
            "remeasured_within_written_every_stage": all(
                s.get("remeasured_arena_bytes", 0) <= s["written_arena_bytes"]
                for s in stages
            ),
            "every_stage_ran_in_its_written_arena": ran["ran"]
            and ran["every_exit_finite"],
        },
    }


def arena_part(images, source):
    cascade_images = images[: FLAGS.micro_cascade_images]
    rows = [arena_row(head, images, cascade_images) for head in FLAGS.micro_heads]
    return {
        "network": "untrained reference architecture per head type, seed 0 "
        "(arena sizes depend on tensor shapes, not weights)",
        "representative": f"{len(images)} {source}",
        "margin": "measured + 10% + 1024 bytes, 16-aligned (tfee.export.micro)",
        "note": "measured by the tflite-micro interpreter on x86-64 (8-byte "
        "pointers); a 32-bit microcontroller's persistent allocations are "
        "smaller, so these are upper bounds there",
        "cascade_images": len(cascade_images),
        "heads": rows,
    }


def _file_constants(data):
    """Bytes of the buffers subgraph 0's tensors hold, each buffer once:
    {"all", "index" (the encoded tensors DECODE reads), "tables" (their
    ancillary data: value tables with headers; tensors whose tables
    coincide share one), "plain_int8_weights" (int8 tensors of 2+
    dimensions not packed)}."""
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    graph = model.subgraphs[0]
    codes = model.operatorCodes or []
    encoded, ancillary = set(), set()
    for op in graph.operators or []:
        code = codes[op.opcodeIndex].customCode
        if code is not None and bytes(code) == DECODE_CODE:
            inputs = [int(i) for i in op.inputs]
            encoded.update(graph.tensors[i].buffer for i in inputs[0::2])
            ancillary.update(graph.tensors[i].buffer for i in inputs[1::2])
    sizes = {key: 0 for key in ("all", "index", "tables", "plain_int8_weights")}
    seen = set()
    for tensor in graph.tensors:
        if not tensor.buffer or tensor.buffer in seen:
            continue
        buffer = model.buffers[tensor.buffer]
        if buffer.data is None:
            continue
        seen.add(tensor.buffer)
        size = len(buffer.data)
        sizes["all"] += size
        dimensions = 0 if tensor.shape is None else len(tensor.shape)
        if tensor.buffer in encoded:
            sizes["index"] += size
        elif tensor.buffer in ancillary:
            sizes["tables"] += size
        elif tensor.type == schema.TensorType.INT8 and dimensions > 1:
            sizes["plain_int8_weights"] += size
    return sizes


def flash_split(stages, weights):
    """Flash bytes per stage split into indices, tables, plain constants and
    the rest of the flatbuffer; totals and bits per weight."""
    rows = []
    for stage in stages:
        with open(stage.model_path, "rb") as f:
            data = f.read()
        sizes = _file_constants(data)
        rows.append(
            {
                "stage": stage.index,
                "flash_bytes": stage.flash_bytes,
                "dense_int8_bytes": stage.dense_bytes,
                "arena_bytes": stage.arena_bytes,
                "measured_arena_bytes": stage.measured_arena_bytes,
                "index_bytes": sizes["index"],
                "table_bytes": sizes["tables"],
                # What MicroStage.lut_tensors declare, per tensor summed
                # (tables that coincide are stored once: table_bytes).
                "declared_index_bytes": sum(t.index_bytes for t in stage.lut_tensors),
                "declared_table_bytes": sum(t.table_bytes for t in stage.lut_tensors),
                # Buffers the packed tensors do not hold: int8 weights left
                # unpacked, int32 biases, small constants.
                "plain_constant_bytes": sizes["all"] - sizes["index"] - sizes["tables"],
                "plain_int8_weight_bytes": sizes["plain_int8_weights"],
                "graph_overhead_bytes": stage.flash_bytes - sizes["all"],
                "lut_tensors": [
                    {
                        "name": t.name,
                        "weights": t.weights,
                        "bits": t.bits,
                        "tables": t.tables,
                        "index_bytes": t.index_bytes,
                        "table_bytes": t.table_bytes,
                    }
                    for t in stage.lut_tensors
                ],
            }
        )
    keys = (
        "flash_bytes",
        "dense_int8_bytes",
        "index_bytes",
        "table_bytes",
        "plain_constant_bytes",
        "graph_overhead_bytes",
        "plain_int8_weight_bytes",  # part of plain_constant_bytes
        "declared_index_bytes",
        "declared_table_bytes",
    )
    totals = {key: sum(row[key] for row in rows) for key in keys}
    packed = [t for row in rows for t in row["lut_tensors"]]
    packed_weights = sum(t["weights"] for t in packed)
    bits = {
        key.replace("_bytes", ""): round(8 * totals[key] / weights, 4)
        for key in keys
        if not key.startswith(("dense", "declared"))
    }
    return {
        "weights": weights,
        "packed_weights": packed_weights,
        "index_bits_per_packed_weight": (
            round(8 * totals["index_bytes"] / packed_weights, 4)
            if packed_weights
            else None
        ),
        "max_index_bits": max((t["bits"] for t in packed), default=None),
        "totals": totals,
        "bits_per_weight": bits,
        "bits_per_weight_dense_int8": round(
            8 * totals["dense_int8_bytes"] / weights, 4
        ),
        "stages": rows,
    }


def slug(text):
    return re.sub(r"[^0-9a-zA-Z]+", "-", text).strip("-")


def _fold_batch_norm():
    """Per-kernel scales need BN folded before clustering: otherwise the
    converter's folding scales every channel's centroids differently."""
    return not FLAGS.micro_per_channel


def clustered_network(network, data, clusters):
    """The section-wise clustered network, from --cache_dir when a run with
    the same setting cached it."""
    tag = "quick" if FLAGS.quick else "full"
    path = os.path.join(
        FLAGS.cache_dir,
        f"micro_clustered_{tag}_{slug(FLAGS.micro_clusters)}_"
        f"{FLAGS.micro_clustering_steps}{'' if FLAGS.micro_per_channel else '_folded'}"
        ".keras",
    )
    if os.path.exists(path):
        print(f"clustered network from {path}", flush=True)
        return keras.models.load_model(path), path, True
    print(f"clustering {FLAGS.micro_clusters} section by section ...", flush=True)
    train = data.pipeline("train", training=True)
    clustered = tfee.compress.cluster(
        network,
        train.repeat().take(FLAGS.micro_clustering_steps),
        clusters,
        staged=True,
        distill=True,
        epochs=1,
        init="linear",
        fold_batch_norm=_fold_batch_norm(),
        optimizer=keras.optimizers.Adam(FLAGS.micro_clustering_learning_rate),
        verbose=2,
    )
    write_atomically(path, clustered.save)
    return clustered, path, False


def keras_exit_accuracy(network, images, labels):
    """Every exit's and the ensemble's accuracy of a Keras network."""
    batches = tf.data.Dataset.from_tensor_slices((images, labels)).batch(500)
    return tfee.exit_accuracy(network, batches)


def tflm_exit_accuracy(manifest_path, num_exits, images, labels):
    """(ExitAccuracy, seconds): every exit of a micro export's stage files,
    run in TensorFlow Lite Micro over `images` (every stage, every image)."""
    tick = time.time()
    logits, _ = tfee.runtime.MicroCascade(
        manifest_path, _run_everything_policy(num_exits)
    ).exit_outputs(images)
    return tfee.policy.ExitAccuracy.from_logits(logits, labels), time.time() - tick


def lut_export(clustered, directory, representative, per_channel):
    """(MicroExport, flash_split) of `clustered` exported with compress="lut"
    (int8 weight scales per channel, or one per kernel)."""
    print("exporting the clustered network (compress='lut') ...", flush=True)
    export = tfee.export.micro(
        clustered,
        directory,
        representative=representative,
        name="clustered",
        compress="lut",
        per_channel=per_channel,
    )
    # Weights as docs/benchmarks.md's bits per weight count them (every Keras
    # weight of the network, as tfee.export.compression_report does).
    weights, _ = tfee.cost.parameter_bytes(clustered.layers)
    return export, flash_split(export.stages, weights)


def clusters_per_section(text, network):
    """{section: count} from a --*_clusters flag's text ("16" or "1:16,...")."""
    clusters = tfee.compress.parse_clusters(text)
    if isinstance(clusters, int):
        clusters = {s.index: clusters for s in tfee.sections(network)}
    return clusters


def flash_size_part():
    """The flash side alone, on the untrained architecture clustered without
    retraining: what the file costs at these cluster counts, whatever its
    accuracy (retraining moves centroids, not their number)."""
    network = architecture("sdn")
    clusters = clusters_per_section(FLAGS.micro_clusters, network)
    print(f"clustering the untrained architecture {FLAGS.micro_clusters} ...")
    clustered = tfee.compress.cluster(
        network,
        None,
        clusters,
        epochs=0,
        init="linear",
        fold_batch_norm=_fold_batch_norm(),
    )
    images, source = arena_images(FLAGS.micro_representative)
    with tempfile.TemporaryDirectory(prefix="tfee-micro-flash-") as directory:
        export, split = lut_export(
            clustered, directory, images, FLAGS.micro_per_channel
        )
    return {
        "network": "untrained reference architecture (sdn heads, seed 0), "
        "clustered section by section without retraining"
        + (" after folding BN into the kernels" if _fold_batch_norm() else "")
        + ": sizes only, no accuracy",
        "clusters": FLAGS.micro_clusters,
        "per_channel": FLAGS.micro_per_channel,
        "representative": f"{len(images)} {source}",
        "shared_arena_bytes": export.arena_bytes,
        "flash": split,
        "checks": {
            f"bits_per_weight_at_most_{TARGET_BITS_PER_WEIGHT:g}": split[
                "bits_per_weight"
            ]["flash"]
            <= TARGET_BITS_PER_WEIGHT,
            "index_bits_at_most_4": (split["max_index_bits"] or 8) <= 4,
        },
    }


def flash_part():
    try:
        network, data = common.reference()
    except SystemExit as stop:
        print(f"flash part skipped: {stop}", flush=True)
        return {"skipped": str(stop)}
    clusters = clusters_per_section(FLAGS.micro_clusters, network)
    tick = time.time()
    clustered, path, cached = clustered_network(network, data, clusters)
    clustering_seconds = time.time() - tick
    test_images = data.normalised("test")
    test_labels = data.test[1]
    if FLAGS.micro_test_images:
        test_images = test_images[: FLAGS.micro_test_images]
        test_labels = test_labels[: FLAGS.micro_test_images]
    print("scoring the float networks ...", flush=True)
    uncompressed = keras_exit_accuracy(network, test_images, test_labels)
    clustered_keras = keras_exit_accuracy(clustered, test_images, test_labels)
    num_exits = len(tfee.exits(clustered))
    with tempfile.TemporaryDirectory(prefix="tfee-micro-flash-") as directory:
        export, split = lut_export(
            clustered,
            directory,
            data.normalised("validation"),
            FLAGS.micro_per_channel,
        )
        print(
            f"scoring the TFLite Micro files on {len(test_images)} test images ...",
            flush=True,
        )
        micro, micro_seconds = tflm_exit_accuracy(
            export.manifest_path, num_exits, test_images, test_labels
        )
    drops = {
        name: round(100 * (uncompressed.exits[name] - micro.exits[name]), 2)
        for name in uncompressed.exits
    }
    return {
        "network": "trained reference network, clustered section by section",
        "clusters": FLAGS.micro_clusters,
        "per_channel": FLAGS.micro_per_channel,
        "stages": [
            list(s) for s in tfee.compress.clustering_stages(network, clusters, True)
        ],
        "budget": {
            "retraining_batches_per_stage": FLAGS.micro_clustering_steps,
            "batch": recipes.BATCH,
            "optimizer": f"Adam({FLAGS.micro_clustering_learning_rate:g}), "
            "fresh per stage",
            "distillation": "teacher = the dense network (frozen copy), T=3, "
            "kd_weight=0.3",
            "centroid_init": "linear",
            "fold_batch_norm": _fold_batch_norm(),
        },
        "cached_network": path,
        "from_cache": cached,
        "clustering_seconds": round(clustering_seconds, 1),
        "test_images": len(test_images),
        "accuracy": {
            "uncompressed_keras": uncompressed.to_dict(),
            "clustered_keras": clustered_keras.to_dict(),
            "tflm_files": micro.to_dict(),
        },
        "tflm_exit_drop_points_vs_uncompressed": drops,
        "tflm_seconds_per_image_all_stages": round(micro_seconds / len(test_images), 4),
        "shared_arena_bytes": export.arena_bytes,
        "flash": split,
        "checks": {
            f"every_exit_drop_at_most_{MAX_EXIT_DROP_POINTS:g}_point": max(
                drops.values()
            )
            <= MAX_EXIT_DROP_POINTS,
            f"bits_per_weight_at_most_{TARGET_BITS_PER_WEIGHT:g}": split[
                "bits_per_weight"
            ]["flash"]
            <= TARGET_BITS_PER_WEIGHT,
            "index_bits_at_most_4": (split["max_index_bits"] or 8) <= 4,
        },
    }


def summary(result):
    lines = {}
    for row in result.get("arena", {}).get("heads", []):
        lines[f"arena_{row['head']}"] = {
            "measured": [s["measured_arena_bytes"] for s in row["stages"]],
            "written": [s["written_arena_bytes"] for s in row["stages"]],
            "shared": row["shared_arena_bytes"],
            "largest_stage": row["largest_stage"],
            "static_ram": row["static_ram_bytes"],
            "checks": all(row["checks"].values()),
        }
    if "flash_size" in result:
        lines["flash_size"] = {
            "bits_per_weight": result["flash_size"]["flash"]["bits_per_weight"],
            "checks": result["flash_size"]["checks"],
        }
    flash = result.get("flash")
    if flash and "skipped" not in flash:
        lines["flash"] = {
            "bits_per_weight": flash["flash"]["bits_per_weight"],
            "drops": flash["tflm_exit_drop_points_vs_uncompressed"],
            "checks": flash["checks"],
        }
    elif flash:
        lines["flash"] = flash
    return lines


def run(argv=None):
    """Runs the parts asked for; writes micro_footprint_<quick|full>.json."""
    started = time.time()
    result = {"setup": common.setup()}
    if "arena" in FLAGS.micro_parts:
        images, source = arena_images(FLAGS.micro_representative)
        result["arena"] = arena_part(images, source)
    if "flash_size" in FLAGS.micro_parts:
        result["flash_size"] = flash_size_part()
    if "flash" in FLAGS.micro_parts:
        result["flash"] = flash_part()
    else:
        result["flash"] = {
            "skipped": "not asked for (--micro_parts); the trained reference "
            f"network {common.network_path()} "
            + ("exists" if os.path.exists(common.network_path()) else "is missing")
        }
    result["seconds"] = round(time.time() - started, 1)
    result["summary"] = summary(result)
    # sys.argv: absl hands main the arguments left after its flags.
    result["record"] = common.machine_record(sys.argv)
    return common.finish(FLAGS.micro_result_name, result, ["summary"])


def main(argv):
    run(argv)


if __name__ == "__main__":
    app.run(main)
