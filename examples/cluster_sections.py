"""Clusters an early-exit network section by section (ESCEPE) and reports
how far it compresses.

    .venv/bin/python examples/cluster_sections.py --clusters=1:32,2:16,3:8 \
        --cluster_output_dir /tmp/tfee-cluster

Loads a saved early-exit network (--cluster_model_path) or, by default,
trains a small one on the embedded digits; clusters each section to its own
number of centroids (shallow sections keep more), retraining with
distillation from the uncompressed network after each stage; optionally
fine-tunes with cluster- and sparsity-preserving quantization-aware training
(--qat) for an int8 .tflite. Writes the stripped network (clustered.keras),
the exported .tflite and compression.json: per-exit and ensemble test
accuracy before and after, and the compression ratio (fp32 weights / gzip -9
of the exported .tflite) with its entropy bound. Flag names are unique across
tfee's examples (absl keeps one global set).
"""

import os

from absl import app
from absl import flags

import tfee
import tfee.compress
import tfee.export
from tfee import keras
from tfee import report

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "cluster_model_path",
    "",
    "A saved .keras early-exit network; empty trains a small one on the digits.",
)
flags.DEFINE_string(
    "cluster_dataset",
    "digits",
    "Dataset for tfee.data.load: 'digits', an image folder or a TFDS name.",
)
flags.DEFINE_string(
    "clusters",
    "1:32,2:16,3:8",
    "Clusters per section: 'k:count' pairs (or 'backbone'/'heads'), or one count.",
)
flags.DEFINE_bool("distill", True, "Retrain with distillation from the dense network.")
flags.DEFINE_bool("staged", True, "Cluster one section per stage, shallowest first.")
flags.DEFINE_bool("preserve_sparsity", False, "Keep pruned (zero) weights at zero.")
flags.DEFINE_integer("cluster_epochs", 1, "Retraining epochs per stage.")
flags.DEFINE_integer(
    "cluster_train_epochs", 10, "Epochs for the default digits network."
)
flags.DEFINE_bool(
    "qat", False, "Cluster-preserving quantization-aware training, int8 export."
)
flags.DEFINE_integer("qat_epochs", 1, "Quantization-aware training epochs.")
flags.DEFINE_enum(
    "cluster_quantize",
    "float32",
    ["float32", "int8"],
    "Without --qat: export float32, or post-training int8 calibrated on "
    "validation images (one scale per kernel with --cluster_fold, which keeps "
    "the cluster count per kernel; one per channel without, which keeps it "
    "per channel).",
)
flags.DEFINE_bool(
    "cluster_fold",
    True,
    "Fold BatchNormalization into the kernels before clustering; "
    "--nocluster_fold keeps BN trainable (more accurate at few clusters) and "
    "needs --cluster_quantize int8 or --qat.",
)
flags.DEFINE_string(
    "cluster_output_dir", "/tmp/tfee-cluster", "Where the model, .tflite and JSON go."
)
flags.DEFINE_integer("cluster_seed", 0, "Random seed.")


def default_network(train, epochs, seed=0):
    """small_cnn on the 8x8 digits with exits after blocks 1 and 2 (3 sections)."""
    keras.utils.set_random_seed(seed)
    backbone = tfee.backbones.small_cnn(num_classes=10, input_shape=(8, 8, 1))
    network = tfee.attach_exits(backbone, ["block1_out", "block2_out"], head="sdn")
    network.compile(keras.optimizers.Adam(3e-3), loss=tfee.losses.joint(network))
    network.fit(train, epochs=epochs, verbose=2)
    return network


def run(
    model_path,
    dataset,
    clusters,
    output_dir,
    *,
    distill=True,
    staged=True,
    preserve_sparsity=False,
    epochs=1,
    train_epochs=10,
    qat=False,
    qat_epochs=1,
    quantize="float32",
    fold=True,
    seed=0,
):
    """Clusters, optionally QATs, writes model, .tflite and JSON; returns the JSON."""
    if not fold and quantize != "int8" and not qat:
        raise ValueError(
            "--nocluster_fold needs --cluster_quantize int8 (per-channel scales "
            "keep unfolded kernels at their cluster count; float32 does not). "
            f"Received: --cluster_quantize {quantize}"
        )
    keras.utils.set_random_seed(seed)
    data = tfee.data.load(dataset, seed=seed)
    if model_path:
        network = keras.models.load_model(model_path)
    else:
        network = default_network(data.train, train_epochs, seed)
    counts = tfee.compress.parse_clusters(clusters)
    # The staged clustering in our own fit (tfee.compress.cluster does the
    # same in one call): each phase clusters its sections, distils, and
    # leaves them frozen at their centroids for the next.
    plan = tfee.compress.ClusteringPlan(
        network,
        counts,
        staged=staged,
        distill=distill,
        preserve_sparsity=preserve_sparsity,
        fold_batch_norm=fold,
    )
    os.makedirs(output_dir, exist_ok=True)
    for phase in plan:
        print(f"phase {phase.number}/{len(plan)}: clusters {phase.keys}", flush=True)
        phase.compile(keras.optimizers.Adam(1e-4))
        phase.model.fit(
            data.train,
            epochs=epochs,
            callbacks=[
                *phase.callbacks,
                keras.callbacks.CSVLogger(
                    os.path.join(output_dir, f"phase_{phase.number}_log.csv")
                ),
            ],
            verbose=2,
        )
    clustered = plan.result()
    summary = {
        "clusters": clusters,
        "distill": distill,
        "staged": staged,
        "stages": tfee.compress.clustering_stages(network, counts, staged),
        "before": tfee.policy.exit_accuracy(network, data.test).to_dict(),
        "after": tfee.policy.exit_accuracy(clustered, data.test).to_dict(),
    }
    os.makedirs(output_dir, exist_ok=True)
    model_file = os.path.join(output_dir, "clustered.keras")
    clustered.save(model_file + ".partial.keras")
    os.replace(model_file + ".partial.keras", model_file)
    if qat:
        trained = tfee.compress.quantization_aware_training(
            clustered,
            data.train,
            epochs=qat_epochs,
            preserve_sparsity=preserve_sparsity,
            verbose=2,
        )
        # The int8 file a device runs: exit and stage signatures, metadata.
        tflite_file = os.path.join(output_dir, "clustered_int8_qat.tflite")
        tfee.export.tflite(
            trained, tflite_file, quantize="int8", representative=data.validation
        )
        with open(tflite_file, "rb") as f:
            flatbuffer = f.read()
        # The clustered float network as tfee.export.tflite writes it.
        summary["compression"] = tfee.export.compression_report(clustered).to_dict()
        summary["qat"] = {
            "after": tfee.policy.exit_accuracy(trained, data.test).to_dict(),
            "compression": tfee.export.compression_report(
                clustered, artifact=flatbuffer
            ).to_dict(),
            "note": "int8 .tflite from quantization-aware training; the "
            "entropy bound counts the clustered float network",
        }
    else:
        tflite_file = os.path.join(output_dir, f"clustered_{quantize}.tflite")
        tfee.export.tflite(
            clustered,
            tflite_file,
            quantize=quantize,
            representative=data.validation if quantize == "int8" else None,
            per_channel=not fold,
        )
        with open(tflite_file, "rb") as f:
            summary["compression"] = tfee.export.compression_report(
                clustered, artifact=f.read()
            ).to_dict()
        scales = "per-tensor" if fold else "per-channel"
        summary["compression"]["artifact"] = f"{quantize} .tflite, {scales} scales"
    summary["files"] = {"keras": model_file, "tflite": tflite_file}
    report.write_json(os.path.join(output_dir, "compression.json"), summary)
    return summary


def _accuracy_line(name, accuracy):
    exits = ", ".join(f"{100 * a:.1f}%" for a in accuracy["exits"].values())
    return f"{name:<7} exits: {exits}; ensemble {100 * accuracy['ensemble']:.1f}%"


def main(argv):
    del argv
    summary = run(
        FLAGS.cluster_model_path,
        FLAGS.cluster_dataset,
        FLAGS.clusters,
        FLAGS.cluster_output_dir,
        distill=FLAGS.distill,
        staged=FLAGS.staged,
        preserve_sparsity=FLAGS.preserve_sparsity,
        epochs=FLAGS.cluster_epochs,
        train_epochs=FLAGS.cluster_train_epochs,
        qat=FLAGS.qat,
        qat_epochs=FLAGS.qat_epochs,
        quantize=FLAGS.cluster_quantize,
        fold=FLAGS.cluster_fold,
        seed=FLAGS.cluster_seed,
    )
    print(_accuracy_line("before", summary["before"]))
    print(_accuracy_line("after", summary["after"]))
    compression = summary["compression"]
    print(
        f"compression {compression['ratio']:.1f}x (fp32 / gzip of the .tflite), "
        f"{compression['bits_per_weight']:.2f} bits per weight; entropy bound "
        f"{compression['entropy_ratio']:.1f}x"
    )
    if "qat" in summary:
        print(_accuracy_line("int8", summary["qat"]["after"]))
        print(f"int8 QAT compression {summary['qat']['compression']['ratio']:.1f}x")
    print(f"files in {FLAGS.cluster_output_dir}")


if __name__ == "__main__":
    app.run(main)
