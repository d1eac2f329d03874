"""Section-wise clustering of the reference network (ESCEPE, PAPERS.md section 4).

Clusters the reference network (shared/BENCHMARK.md), or a pruned copy of it
from benchmarks/pruning.py (zeros kept: preserve_sparsity), with a few
per-section cluster settings. Each setting is applied section by section
(shallowest first, --clustering_staged), retraining after each stage with
distillation from the network before clustering (T = 3, 0.3 KD + 0.7 CE),
for --clustering_steps batches per stage: a budget chosen to fit the shared
2-core machine, recorded in the JSON.

BatchNormalization stays a layer by default: the converter folds it into each
convolution (a factor per output channel) and per-channel int8 scales divide
that factor out again, so each channel keeps at most its cluster count of
values (a channel without the largest centroid lands on other int8 values),
while BN keeps a scale per channel that retraining can adjust. --clustering_fold folds
BN before clustering instead; the file then needs per-tensor scales.

Reported per setting: per-exit and ensemble test accuracy, and their losses
against the uncompressed network (and against the base, when it is pruned);
the compression ratio = fp32 bytes of all weights / gzip -9 of the exported
.tflite (`tfee.export.tflite`: float32 and post-training int8 with every
exit_k and stage_k signature, int8 with per-tensor scales, and int8 with the
stage_k signatures alone, per-channel and per-tensor), bits per weight
(8 x gzip bytes / weights), the entropy bound of the cluster indices. The goal
is checked on the stages-only int8 file a cascade runs on a device (scales per
channel, or per tensor when folded), whose own per-exit accuracy is measured
on the whole test split; the other int8 files report their top-1 agreement
with Keras (`tfee.export.verify`, 512 test images). The target: >= 16x with
at most one point lost per exit; ESCEPE reports > 36x on CIFAR-10 (ResNet-18,
< 1 point ensemble loss), i.e. < 32 / 36 = 0.89 bits per weight.

    .venv/bin/python -m benchmarks.clustering            # the reference network
    .venv/bin/python -m benchmarks.clustering --quick --clustering_settings=2 \
        --clustering_steps=2 --clustering_artifacts=int8_stages_only   # smoke check
"""

import os
import shutil
import tempfile
import time

from absl import app
from absl import flags

import tfee
import tfee.compress
import tfee.export
import tfee.policy
import tfee.runtime
from benchmarks import common
from benchmarks import pruning
from tfee import keras

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "clustering_settings",
    "4;1:8,2:8,3:8,4:8,5:4,6:4,7:4",
    "Cluster settings separated by ';' (each as tfee.compress.parse_clusters reads).",
)
flags.DEFINE_string(
    "clustering_base",
    "dense",
    "'dense', or ORDER_PERCENT of a network cached by benchmarks/pruning.py "
    "(falls back to dense, with a note, when it is missing).",
)
flags.DEFINE_integer("clustering_steps", 96, "Retraining batches per stage.")
flags.DEFINE_bool("clustering_staged", True, "One section per stage (ESCEPE).")
flags.DEFINE_float("clustering_learning_rate", 1e-4, "Adam learning rate.")
flags.DEFINE_enum(
    "clustering_init",
    "linear",
    ["density", "kmeans++", "linear", "random"],
    "Centroid initialisation (linear copes with heavily pruned heads, where "
    "k-means++ finds fewer distinct non-zero weights than clusters).",
)
flags.DEFINE_bool(
    "clustering_fold",
    False,
    "Fold BatchNormalization into the convolutions before clustering (the goal "
    "file then uses per-tensor int8 scales); unfolded, BN keeps a scale per "
    "channel and the goal file uses per-channel scales, which keep the "
    "cluster count per channel (folded: per kernel).",
)
flags.DEFINE_alias("clustering_results_dir", "results_dir")
flags.DEFINE_string(
    "clustering_result_name", "clustering", "The JSON's name (without .json)."
)

ESCEPE_RATIO = 36.0
TARGET_RATIO = 16.0
MAX_EXIT_DROP_POINTS = 1.0


def base_network(network, cache_dir, quick, base):
    """(network, description): the dense reference or a cached pruned copy."""
    if base == "dense":
        return network, "dense reference network"
    order, percent = base.rsplit("_", 1)
    path = pruning.pruned_path(cache_dir, quick, order, int(percent) / 100)
    if not os.path.exists(path):
        return network, f"dense reference network ({path} was missing)"
    return keras.models.load_model(path), f"pruned: {path}"


# (name, quantize, signatures, per-channel int8 scales)
ARTIFACTS = (
    ("float32", "float32", None, True),
    ("int8", "int8", None, True),
    ("int8_per_tensor", "int8", None, False),
    ("int8_stages_only", "int8", "stages", True),
    ("int8_per_tensor_stages_only", "int8", "stages", False),
)


flags.DEFINE_list(
    "clustering_artifacts",
    [name for name, *_ in ARTIFACTS],
    "Files exported and measured per setting (the goal file always is).",
)


def goal_artifact(folded):
    """The file the goal is checked on: the stage_k signatures a cascade runs
    on device, int8, with the scales that keep the cluster counts. Folded
    kernels need one scale per tensor; unfolded ones need one per channel,
    because the converter folds BN into the kernel (a factor per output
    channel) and per-channel scales divide it out again, channel by channel."""
    return "int8_per_tensor_stages_only" if folded else "int8_stages_only"


def file_accuracy(path, images, labels):
    """Per-exit and ensemble top-1 accuracy of a .tflite's stage chain."""
    logits = tfee.Cascade(path).exit_logits(images, batch_size=500)
    return tfee.policy.ExitAccuracy.from_logits(logits, labels).to_dict()


def artifact_sizes(network, representative, test_images, test_arrays, goal):
    """Ratios of the exported files, and the int8 files' fidelity.

    "float32" and "int8" hold every exit_k and stage_k signature, "int8" with
    the converter's per-channel scales; "int8_per_tensor" uses one scale per
    kernel; the "_stages_only" files hold only the stage_k signatures a
    cascade runs on device. The `goal` file's own per-exit test accuracy is
    measured on every test image (what a device would score), the other int8
    files' top-1 agreement with Keras on 512 of them.
    """
    stages = [tfee.naming.stage_name(k) for k in range(1, len(tfee.exits(network)) + 1)]
    directory = tempfile.mkdtemp(prefix="tfee-clustering-")
    try:
        rows = {}
        for name, quantize, signatures, per_channel in ARTIFACTS:
            if name != goal and name not in FLAGS.clustering_artifacts:
                continue
            path = os.path.join(directory, f"{name}.tflite")
            exported = tfee.export.tflite(
                network,
                path,
                quantize=quantize,
                representative=representative if quantize == "int8" else None,
                signatures=stages if signatures == "stages" else None,
                per_channel=per_channel,
            )
            with open(path, "rb") as f:
                compression = tfee.export.compression_report(network, f.read())
            rows[name] = {
                "signatures": list(exported.signatures),
                "tflite_bytes": exported.bytes,
                "gzip_bytes": compression.gzip_bytes,
                "ratio": compression.ratio,
                "bits_per_weight": compression.bits_per_weight,
                "max_distinct_values_per_kernel": exported.max_unique_values,
            }
            if name == goal:
                rows[name]["test_accuracy"] = file_accuracy(path, *test_arrays)
            elif name in ("int8", "int8_per_tensor"):
                check = tfee.export.verify(path, network, test_images, samples=512)
                rows[name]["top1_agreement_with_keras_512_test_images"] = {
                    c.signature: c.top1_agreement
                    for c in check.checks
                    if c.signature.startswith("exit_")
                }
        rows["entropy"] = {
            "bytes": compression.entropy_bytes,
            "ratio": compression.entropy_ratio,
            "sections": list(compression.sections),
        }
        rows["fp32_bytes"] = compression.fp32_bytes
        return rows
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def drops_in_points(reference, result):
    return {name: 100 * (reference[name] - result[name]) for name in reference}


def run(settings, base, steps, staged, learning_rate, argv=None):
    """Clusters with every setting; rewrites the JSON after each."""
    quick = FLAGS.quick
    dense, data = common.reference()
    network, description = base_network(dense, FLAGS.cache_dir, quick, base)
    train = data.pipeline("train", training=True)
    test = data.pipeline("test")
    representative = data.pipeline("validation")
    test_images = test.map(lambda x, y: x)
    test_arrays = (data.normalised("test"), data.test[1])
    goal = goal_artifact(FLAGS.clustering_fold)
    started = time.time()
    print(f"base: {description}; measuring it ...", flush=True)
    before = tfee.exit_accuracy(network, test)
    # Losses count from the uncompressed network, also when clustering
    # starts from a pruned copy that has already lost some accuracy.
    uncompressed = before if network is dense else tfee.exit_accuracy(dense, test)
    pruned = tfee.compress.sparsity_report(network).overall > 0.01
    result = {
        "setup": common.setup(),
        "base": description,
        "base_sparsity": tfee.compress.sparsity_report(network).overall,
        "budget": {
            "staged": staged,
            "retraining_batches_per_stage": steps,
            "batch": tfee.recipes.BATCH,
            "optimizer": f"Adam({learning_rate:g}), fresh per stage",
            "distillation": "teacher = the base network (frozen copy), T=3, "
            "kd_weight=0.3, every exit from the teacher's deepest exit",
            "preserve_sparsity": pruned,
            "centroid_init": FLAGS.clustering_init,
            "fold_batch_norm": FLAGS.clustering_fold,
        },
        "goal_artifact": goal,
        "before": before.to_dict(),
        "uncompressed": uncompressed.to_dict(),
        "base_artifacts": artifact_sizes(
            network, representative, test_images, test_arrays, goal
        ),
        "settings": [],
        "escepe_anchor": {
            "ratio": ESCEPE_RATIO,
            "bits_per_weight": 32 / ESCEPE_RATIO,
            "note": "ResNet-18 with 3 shallow classifiers, CIFAR-10, < 1 point "
            "ensemble loss (PAPERS.md section 4)",
        },
    }
    sections = [s.index for s in tfee.sections(network)]
    for setting in settings:
        print(f"clustering {setting} ...", flush=True)
        clusters = tfee.compress.parse_clusters(setting)
        if isinstance(clusters, int):
            # Spelled out per section so that staged runs go section by section.
            clusters = dict.fromkeys(sections, clusters)
        tick = time.time()
        clustered = tfee.compress.cluster(
            network,
            train.repeat().take(steps),  # steps may span epochs
            clusters,
            staged=staged,
            distill=True,
            epochs=1,
            preserve_sparsity=pruned,
            init=FLAGS.clustering_init,
            fold_batch_norm=FLAGS.clustering_fold,
            optimizer=keras.optimizers.Adam(learning_rate),
            verbose=2,
        )
        seconds = time.time() - tick
        after = tfee.exit_accuracy(clustered, test)
        artifacts = artifact_sizes(
            clustered, representative, test_images, test_arrays, goal
        )
        drops = drops_in_points(uncompressed.exits, after.exits)
        # What a device scores: the goal file itself against the
        # uncompressed Keras network (clustering and int8 together).
        file_drops = drops_in_points(
            uncompressed.exits, artifacts[goal]["test_accuracy"]["exits"]
        )
        row = {
            "clusters": setting,
            "stages": [
                list(s)
                for s in tfee.compress.clustering_stages(network, clusters, staged)
            ],
            "seconds": round(seconds, 1),
            "after": after.to_dict(),
            "exit_drop_points_vs_uncompressed": drops,
            "ensemble_drop_points_vs_uncompressed": 100
            * (uncompressed.ensemble - after.ensemble),
            "exit_drop_points_vs_base": drops_in_points(before.exits, after.exits),
            "goal_file_exit_drop_points_vs_uncompressed": file_drops,
            "artifacts": artifacts,
            "checks": {
                f"{goal}_ratio_at_least_{TARGET_RATIO:g}": artifacts[goal]["ratio"]
                >= TARGET_RATIO,
                f"every_exit_drop_at_most_{MAX_EXIT_DROP_POINTS:g}_point": max(
                    drops.values()
                )
                <= MAX_EXIT_DROP_POINTS,
                f"goal_file_every_exit_drop_at_most_{MAX_EXIT_DROP_POINTS:g}_point": (
                    max(file_drops.values()) <= MAX_EXIT_DROP_POINTS
                ),
            },
        }
        result["settings"].append(row)
        print(
            f"{setting}: "
            + ", ".join(
                f"{name} {artifacts[name]['ratio']:.1f}x "
                f"({artifacts[name]['bits_per_weight']:.2f} bits/weight)"
                for name, *_ in ARTIFACTS
                if name in artifacts
            )
            + f", entropy bound {artifacts['entropy']['ratio']:.1f}x; worst exit "
            f"drop vs uncompressed {max(drops.values()):.2f} points (the {goal} "
            f"file: {max(file_drops.values()):.2f}), ensemble "
            f"{row['ensemble_drop_points_vs_uncompressed']:.2f}",
            flush=True,
        )
        tag = "_quick" if quick else ""
        result["seconds"] = round(time.time() - started, 1)
        result["record"] = common.machine_record(argv)
        common.write_result(f"{FLAGS.clustering_result_name}{tag}", result)
    return result


def main(argv):
    run(
        [s for s in FLAGS.clustering_settings.split(";") if s],
        FLAGS.clustering_base,
        FLAGS.clustering_steps,
        FLAGS.clustering_staged,
        FLAGS.clustering_learning_rate,
        argv,
    )


if __name__ == "__main__":
    app.run(main)
