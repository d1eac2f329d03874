"""Clusters an early-exit network section by section (ESCEPE) and reports
how far it compresses.

    .venv/bin/python examples/cluster_sections.py --clusters=1:32,2:16,3:8 \
        --model=/tmp/tfee-chain/pruned_ordered.keras --preserve_sparsity \
        --data=../shared/datasets/cifar10 --output_dir=/tmp/tfee-chain

Loads a saved early-exit network (--model) or trains a small one on --data;
clusters each section to its own number of centroids (shallow sections keep
more), retraining for --epochs (default 1) per stage with distillation from
the uncompressed network; optionally fine-tunes with cluster- and
sparsity-preserving quantization-aware training (--qat) for an int8 .tflite.
Writes the stripped network (clustered.keras), the exported .tflite and
compression.json: per-exit and ensemble test accuracy before and after, and
the compression ratio (fp32 weights / gzip -9 of the exported .tflite) with
its entropy bound.
"""

import os
import sys

from absl import app
from absl import flags

if not __package__:  # Run as a script: make `examples` importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from examples import shell  # noqa: E402

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(shell)  # --help lists the shared flags too
BINARY = "cluster_sections"
DEFAULT_EPOCHS = 1
flags.DEFINE_string(
    "clusters",
    "1:32,2:16,3:8",
    "Clusters per section: 'k:count' pairs (or 'backbone'/'heads'), or one count.",
)
flags.DEFINE_bool("distill", True, "Retrain with distillation from the dense network.")
flags.DEFINE_bool("staged", True, "Cluster one section per stage, shallowest first.")
flags.DEFINE_bool("preserve_sparsity", False, "Keep pruned (zero) weights at zero.")
flags.DEFINE_bool(
    "qat", False, "Cluster-preserving quantization-aware training, int8 export."
)
flags.DEFINE_integer("qat_epochs", 1, "Quantization-aware training epochs.")
flags.DEFINE_bool(
    "fold",
    True,
    "Fold BatchNormalization into the kernels before clustering; --nofold keeps "
    "BN trainable (more accurate at few clusters) and needs --quantize=int8 or "
    "--qat. Without --qat the export is --quantize=float32 (default) or int8: "
    "post-training int8 calibrated on validation images (one scale per kernel "
    "with --fold, which keeps the cluster count per kernel; one per channel "
    "without, which keeps it per channel).",
)


def run(
    network,
    data,
    clusters,
    output_dir,
    *,
    distill=True,
    staged=True,
    preserve_sparsity=False,
    epochs=DEFAULT_EPOCHS,
    qat=False,
    qat_epochs=1,
    quantize="float32",
    fold=True,
    verbose=2,
    labels=None,
    title=None,
):
    """Clusters, optionally QATs, writes model, .tflite, JSON and a plot of
    per-exit test accuracy before and after (clustering.png); returns the JSON."""
    import tfee
    import tfee.compress
    import tfee.export
    from tfee import keras
    from tfee import report

    if not fold and quantize != "int8" and not qat:
        raise ValueError(
            "--nofold needs --quantize=int8 or --qat (per-channel scales keep "
            "unfolded kernels at their cluster count; float32 does not). "
            f"Received: --quantize={quantize}"
        )
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
        shell.progress(
            BINARY,
            f"stage {phase.number}/{len(plan)}: clustering {phase.keys}, "
            f"{epochs} epoch(s)",
        )
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
            verbose=verbose,
        )
    clustered = plan.result()
    summary = {
        **(labels or {}),
        "clusters": clusters,
        "distill": distill,
        "staged": staged,
        "stages": tfee.compress.clustering_stages(network, counts, staged),
        "before": tfee.exit_accuracy(network, data.test).to_dict(),
        "after": tfee.exit_accuracy(clustered, data.test).to_dict(),
    }
    os.makedirs(output_dir, exist_ok=True)
    model_file = os.path.join(output_dir, "clustered.keras")
    shell.save_network(clustered, model_file, data.class_names)
    if qat:
        shell.progress(BINARY, f"quantization-aware training, {qat_epochs} epoch(s)")
        trained = tfee.compress.quantization_aware_training(
            clustered,
            data.train,
            epochs=qat_epochs,
            preserve_sparsity=preserve_sparsity,
            verbose=verbose,
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
        fp32_bytes = summary["compression"]["fp32_bytes"]
        gzip_bytes = tfee.export.gzipped_size(flatbuffer)
        summary["qat"] = {
            "after": tfee.exit_accuracy(trained, data.test).to_dict(),
            "compression": {
                "fp32_bytes": fp32_bytes,
                "tflite_bytes": len(flatbuffer),
                "gzip_bytes": gzip_bytes,
                "ratio": fp32_bytes / gzip_bytes,
            },
            "note": "int8 .tflite from quantization-aware training: its gzipped "
            "size against the clustered network's fp32 weights",
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
    costs = tfee.cost.analyze(network).exits
    series = {
        "dense": list(summary["before"]["exits"].values()),
        "clustered": list(summary["after"]["exits"].values()),
    }
    if qat:
        series["clustered, int8 QAT"] = list(summary["qat"]["after"]["exits"].values())
    report.plot_exits(
        os.path.join(output_dir, "clustering.png"),
        [e.name for e in costs],
        [e.fraction_of_full for e in costs],
        series,
        title=title,
    )
    report.write_json(os.path.join(output_dir, "compression.json"), summary)
    return summary


def _accuracy_line(name, accuracy):
    exits = ", ".join(f"{100 * a:.1f}%" for a in accuracy["exits"].values())
    return f"{name:<7} exits: {exits}; ensemble {100 * accuracy['ensemble']:.1f}%"


def main(argv):
    shell.no_arguments(argv)
    quantize = FLAGS.quantize or ["float32"]
    if len(quantize) != 1 or quantize[0] not in ("float32", "int8"):
        raise app.UsageError(
            f"--quantize takes one of float32, int8 here. Received: {quantize}"
        )
    output_dir = shell.output_dir(BINARY)
    network, data = shell.model_and_data(BINARY)
    summary = run(
        network,
        data,
        FLAGS.clusters,
        output_dir,
        distill=FLAGS.distill,
        staged=FLAGS.staged,
        preserve_sparsity=FLAGS.preserve_sparsity,
        epochs=shell.epochs(DEFAULT_EPOCHS),
        qat=FLAGS.qat,
        qat_epochs=FLAGS.qat_epochs,
        quantize=quantize[0],
        fold=FLAGS.fold,
        verbose=FLAGS.keras_verbose,
        labels=shell.labels(BINARY, "test"),
        title=shell.title(BINARY, "test"),
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
    print(f"files in {output_dir}")


if __name__ == "__main__":
    shell.run(main)
