"""The compression ratio a cluster count can reach at best, whatever its accuracy.

Clusters the reference network (shared/BENCHMARK.md) with a few settings of
clusters per kernel (kmeans++, BN kept as a layer, as benchmarks/clustering.py
does) and does not retrain: retraining moves centroids, never the number of
values, so the file's size is about what any retrained run of the same
setting reaches (compare benchmarks/clustering.py's results). Each
network is exported as the goal file of benchmarks/clustering.py (int8 stage_k
signatures, per-channel scales) and measured as there: fp32 bytes of all
weights / gzip -9 of the file, and bits per weight. The file's own per-exit
test accuracy is reported too, to show what retraining would have to win back.

It also measures the file's fixed cost: the same file with every int8 weight
set to zero (graph, scales, int32 biases and metadata are left), which no
cluster count can remove.

    .venv/bin/python -m benchmarks.clustering_ceiling
    .venv/bin/python -m benchmarks.clustering_ceiling --quick --ceiling_settings=2   # smoke check
"""

import os
import shutil
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
from benchmarks import clustering
from benchmarks import common

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "ceiling_settings",
    "2;3;4;8;16;1:16,2:16,3:16,4:16,5:2,6:2,7:2",
    "Cluster settings separated by ';' (each as tfee.compress.parse_clusters reads).",
)


def with_zero_int8_weights(data):
    """The flatbuffer with every constant int8 tensor (the weights) zeroed."""
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            buffer = model.buffers[tensor.buffer]
            if tensor.type == schema.TensorType.INT8 and buffer.data is not None:
                buffer.data = np.zeros_like(buffer.data)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def goal_file(network, representative, directory, name):
    """(path, bytes) of the int8 stage_k file with per-channel scales."""
    path = os.path.join(directory, f"{name}.tflite")
    stages = [tfee.naming.stage_name(k) for k in range(1, len(tfee.exits(network)) + 1)]
    tfee.export.tflite(
        network, path, quantize="int8", representative=representative, signatures=stages
    )
    with open(path, "rb") as f:
        return path, f.read()


def run(settings, argv=None):
    """Clusters without retraining per setting; writes clustering_ceiling.json."""
    network, data = common.reference()
    representative = data.pipeline("validation")
    test_arrays = (data.normalised("test"), data.test[1])
    started = time.time()
    directory = tempfile.mkdtemp(prefix="tfee-clustering-ceiling-")
    try:
        _, dense_bytes = goal_file(network, representative, directory, "dense")
        dense = tfee.export.compression_report(network, dense_bytes)
        fixed = tfee.export.gzipped_size(with_zero_int8_weights(dense_bytes))
        weights = dense.fp32_bytes // 4
        result = {
            "setup": common.setup(),
            "method": "sections clustered per setting (kmeans++, BN kept, no "
            "retraining); goal file = int8 stage_k signatures, per-channel "
            "scales, gzip -9",
            "weights": weights,
            "fp32_bytes": dense.fp32_bytes,
            "dense_goal_file": {
                "gzip_bytes": dense.gzip_bytes,
                "ratio": dense.ratio,
                "bits_per_weight": dense.bits_per_weight,
            },
            "fixed_cost": {
                "note": "the dense goal file with every int8 weight zeroed",
                "gzip_bytes": fixed,
                "bits_per_weight": 8 * fixed / weights,
                "ratio_if_weights_were_free": dense.fp32_bytes / fixed,
            },
            "target_ratio": clustering.TARGET_RATIO,
            "counts": [],
        }
        print(f"fixed cost: {fixed} bytes gzipped", flush=True)
        sections = [s.index for s in tfee.sections(network)]
        for index, setting in enumerate(settings):
            clusters = tfee.compress.parse_clusters(setting)
            if isinstance(clusters, int):
                clusters = dict.fromkeys(sections, clusters)
            clustered = tfee.compress.cluster(
                network,
                representative,
                clusters,
                staged=False,
                epochs=0,
                fold_batch_norm=False,
                verbose=0,
            )
            path, data = goal_file(
                clustered, representative, directory, f"setting_{index}"
            )
            compression = tfee.export.compression_report(clustered, data)
            accuracy = clustering.file_accuracy(path, *test_arrays)
            row = {
                "clusters": setting,
                "gzip_bytes": compression.gzip_bytes,
                "ratio": compression.ratio,
                "bits_per_weight": compression.bits_per_weight,
                "weight_bits_per_weight_after_fixed_cost": 8
                * (compression.gzip_bytes - fixed)
                / weights,
                "entropy_bound_ratio": compression.entropy_ratio,
                "file_test_accuracy_without_retraining": accuracy,
            }
            result["counts"].append(row)
            print(
                f"{setting}: {row['ratio']:.1f}x, {row['bits_per_weight']:.2f} bits/weight "
                f"({row['weight_bits_per_weight_after_fixed_cost']:.2f} beyond the "
                f"fixed cost); deepest exit without retraining "
                f"{accuracy['exits'][tfee.exits(network)[-1].name]:.4f}",
                flush=True,
            )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    result["seconds"] = round(time.time() - started, 1)
    result["record"] = common.machine_record(argv)
    tag = "_quick" if FLAGS.quick else ""
    common.write_result(f"clustering_ceiling{tag}", result)
    return result


def main(argv):
    run([s for s in FLAGS.ceiling_settings.split(";") if s], argv)


if __name__ == "__main__":
    app.run(main)
