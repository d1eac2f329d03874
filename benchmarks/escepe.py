"""ESCEPE's claim, reproduced: section-wise clustering with distillation (issue 18).

Khalilian Gourtani & Meratnia (EdgeSys 2023; PAPERS.md section 4) cluster an
early-exit network section by section, with more clusters in the sections
that feed the shallow exits, and retrain after each stage with knowledge
distillation from the uncompressed network, so that the shallow exits keep
their accuracy. This benchmark measures each half of that claim on the
trained reference network (shared/BENCHMARK.md) at equal bits per weight in
the deployed file:

  uniform              (a) --escepe_uniform clusters in every section,
                       retrained with cross-entropy on every exit;
  sectionwise          (b) --escepe_sectionwise counts (more clusters in the
                       shallow sections, fewer in the deep ones, chosen so
                       the indices cost no more bits than (a)'s), the same
                       retraining;
  sectionwise_distill  (c) (b) retrained with distillation from the
                       uncompressed network (teacher = a frozen copy, T = 3,
                       kd_weight 0.3: ESCEPE's recipe);
  uniform_distill      (d) (a) with (c)'s distillation (not run by default).

Every variant is clustered one section per stage, shallowest first
(`tfee.compress.cluster(staged=True)`), with --escepe_steps batches of
retraining per stage (Adam, fresh per stage), BN folded into the kernels
first and one int8 scale per kernel, so each kernel keeps its cluster count
in the file; it is exported with `tfee.export.micro(..., compress="lut")`
(TensorFlow Lite Micro's look-up-table compression), and bits per weight are
8 x the stage files' bytes / the network's weights. Reported per variant:
every exit's and the ensemble's (mean of the exits' softmaxes) test accuracy
of the clustered Keras network on the whole test split and of the stage files
run in TensorFlow Lite Micro on the first --escepe_tflm_images test images,
each beside the uncompressed network on the same images, and the bits.
Each variant's clustered network is cached under --cache_dir: an
interrupted run resumes at the variant it stopped in.

    .venv/bin/python -m benchmarks.escepe             # about 45 min on 2 cores
    .venv/bin/python -m benchmarks.escepe --quick --escepe_uniform=2 \\
        --escepe_sectionwise=1:3,2:2,3:2              # smoke check only
"""

import os
import tempfile
import time

import numpy as np
from absl import app
from absl import flags

import tfee
import tfee.compress
import tfee.export
from benchmarks import common
from benchmarks import micro_footprint
from tfee import keras
from tfee import recipes
from tfee._files import write_atomically

FLAGS = flags.FLAGS
flags.DEFINE_list(
    "escepe_variants",
    ["uniform", "sectionwise", "sectionwise_distill"],
    "Variants to cluster and compare (uniform_distill too, on request).",
)
flags.DEFINE_string("escepe_uniform", "8", "Clusters in every section for (a), (d).")
flags.DEFINE_string(
    "escepe_sectionwise",
    "1:16,2:16,3:16,4:16,5:8,6:8,7:4",
    "Clusters per section for (b), (c) (tfee.compress.parse_clusters).",
)
flags.DEFINE_integer("escepe_steps", 120, "Retraining batches per clustering stage.")
flags.DEFINE_float("escepe_learning_rate", 1e-4, "Adam learning rate.")
flags.DEFINE_integer(
    "escepe_tflm_images",
    1000,
    "Test images the TFLite Micro stage files are scored on (0: none).",
)

# name -> (what it is, which counts flag, distil from the dense network).
VARIANTS = {
    "uniform": ("(a) uniform counts, cross-entropy retraining", "uniform", False),
    "sectionwise": (
        "(b) section-wise counts, cross-entropy retraining",
        "sectionwise",
        False,
    ),
    "sectionwise_distill": (
        "(c) section-wise counts, distillation from the uncompressed network "
        "(ESCEPE)",
        "sectionwise",
        True,
    ),
    "uniform_distill": (
        "(d) uniform counts, distillation from the uncompressed network",
        "uniform",
        True,
    ),
}


def _counts(which, network):
    text = FLAGS.escepe_uniform if which == "uniform" else FLAGS.escepe_sectionwise
    return text, micro_footprint.clusters_per_section(text, network)


def clustered(name, network, data):
    """(clustered network, seconds or None when cached) of one variant."""
    _, which, distill = VARIANTS[name]
    text, clusters = _counts(which, network)
    tag = "quick" if FLAGS.quick else "full"
    path = os.path.join(
        FLAGS.cache_dir,
        f"escepe_{tag}_{name}_{micro_footprint.slug(text)}_{FLAGS.escepe_steps}_"
        f"{FLAGS.escepe_learning_rate:g}.keras",
    )
    if os.path.exists(path):
        print(f"{name}: cached {path}", flush=True)
        return keras.models.load_model(path), None
    print(f"{name}: clustering {text} section by section ...", flush=True)
    keras.utils.set_random_seed(0)
    tick = time.time()
    result = tfee.compress.cluster(
        network,
        data.pipeline("train", training=True).repeat().take(FLAGS.escepe_steps),
        clusters,
        staged=True,
        distill=distill,
        epochs=1,
        init="linear",
        fold_batch_norm=True,
        optimizer=keras.optimizers.Adam(FLAGS.escepe_learning_rate),
        verbose=2,
    )
    seconds = time.time() - tick
    write_atomically(path, result.save)
    return result, seconds


def _points(accuracy, reference):
    """{exit or "ensemble": points below `reference`}."""
    drops = {
        k: round(100 * (reference.exits[k] - v), 2) for k, v in accuracy.exits.items()
    }
    drops["ensemble"] = round(100 * (reference.ensemble - accuracy.ensemble), 2)
    return drops


def measure(name, network, data, dense):
    """One variant's accuracy (Keras, and TFLite Micro on a subset), bits."""
    model, seconds = clustered(name, network, data)
    images, labels = data.normalised("test"), data.test[1]
    keras_accuracy = micro_footprint.keras_exit_accuracy(model, images, labels)
    tflm_images = FLAGS.escepe_tflm_images
    with tempfile.TemporaryDirectory(prefix="tfee-escepe-") as directory:
        export, split = micro_footprint.lut_export(
            model, directory, data.normalised("validation"), per_channel=False
        )
        tflm = None
        if tflm_images:
            accuracy, _ = micro_footprint.tflm_exit_accuracy(
                export.manifest_path,
                len(tfee.exits(model)),
                images[:tflm_images],
                labels[:tflm_images],
            )
            tflm = {
                "images": len(images[:tflm_images]),
                "accuracy": accuracy.to_dict(),
                "points_below_uncompressed_keras_on_these_images": _points(
                    accuracy, dense["subset"]
                ),
            }
    what, which, distill = VARIANTS[name]
    return {
        "what": what,
        "clusters": _counts(which, network)[0],
        "distillation": distill,
        "clustering_seconds": None if seconds is None else round(seconds, 1),
        "bits_per_weight": split["bits_per_weight"],
        "index_bits_per_packed_weight": split["index_bits_per_packed_weight"],
        "flash_bytes": split["totals"]["flash_bytes"],
        "keras_test_accuracy": keras_accuracy.to_dict(),
        "keras_points_below_uncompressed": _points(keras_accuracy, dense["all"]),
        "tflm": tflm,
    }


def run(argv=None):
    unknown = sorted(set(FLAGS.escepe_variants) - set(VARIANTS))
    if unknown or not FLAGS.escepe_variants:
        raise app.UsageError(
            f"--escepe_variants must name some of {sorted(VARIANTS)}. "
            f"Received: {FLAGS.escepe_variants}"
        )
    network, data = common.reference()
    started = time.time()
    images, labels = data.normalised("test"), data.test[1]
    dense = {
        "all": micro_footprint.keras_exit_accuracy(network, images, labels),
        "subset": micro_footprint.keras_exit_accuracy(
            network,
            images[: max(FLAGS.escepe_tflm_images, 1)],
            labels[: max(FLAGS.escepe_tflm_images, 1)],
        ),
    }
    variants = {}
    for name in FLAGS.escepe_variants:
        variants[name] = measure(name, network, data, dense)
    result = {
        "setup": common.setup(),
        "budget": {
            "retraining_batches_per_stage": FLAGS.escepe_steps,
            "batch": recipes.BATCH,
            "optimizer": f"Adam({FLAGS.escepe_learning_rate:g}), fresh per stage",
            "stages": "one section per stage, shallowest first; the sections "
            "already clustered stay frozen",
            "loss": "cross-entropy on every exit, uniform weights; with "
            "distillation 0.7 x that + 0.3 x KL to the frozen uncompressed "
            "network's exits at T = 3",
            "centroid_init": "linear",
            "export": "BN folded before clustering, int8 with one scale per "
            "kernel, TFLite Micro LUT compression",
        },
        "uncompressed_keras_test_accuracy": dense["all"].to_dict(),
        "variants": variants,
        "seconds": round(time.time() - started, 1),
        "record": common.machine_record(argv),
    }
    if {"sectionwise", "sectionwise_distill"} <= set(variants):
        result["distillation_gain_points"] = {
            k: round(
                variants["sectionwise"]["keras_points_below_uncompressed"][k]
                - variants["sectionwise_distill"]["keras_points_below_uncompressed"][k],
                2,
            )
            for k in variants["sectionwise"]["keras_points_below_uncompressed"]
        }
    _plot(result)
    return common.finish("escepe", result, ["variants", "distillation_gain_points"])


def _plot(result):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.6))
    axes = figure.subplots()
    dense = result["uncompressed_keras_test_accuracy"]
    names = [*dense["exits"], "ensemble"]
    x = np.arange(len(names))

    def values(accuracy):
        return [100 * accuracy["exits"][n] for n in dense["exits"]] + [
            100 * accuracy["ensemble"]
        ]

    axes.plot(x, values(dense), "k-o", label="uncompressed")
    for index, (name, entry) in enumerate(result["variants"].items()):
        axes.plot(
            x,
            values(entry["keras_test_accuracy"]),
            "-o",
            color=f"C{index}",
            label=f"{name} ({entry['clusters']}), "
            f"{entry['bits_per_weight']['flash']:.2f} bits/weight",
        )
    axes.set_xticks(x, [n.replace("exit_", "exit ") for n in names], fontsize=8)
    axes.set_ylabel("test accuracy (%), clustered Keras network")
    common.save_plot(
        figure,
        axes,
        "escepe",
        "ESCEPE: section-wise clustering and distillation at equal bits",
        legend_fontsize=7,
    )


def main(argv):
    run(argv)


if __name__ == "__main__":
    app.run(main)
