"""End-to-end: examples/cluster_sections.py on the digits, one epoch per stage."""

import json

import numpy as np
import pytest
from absl.testing import flagsaver

import tfee
from examples import cluster_sections
from tfee import keras
from tfee import tf


def _run(tmp_path, **flags):
    """Runs the example on a small untrained digits network (3 sections)."""
    backbone = tfee.backbones.small_cnn(
        num_classes=10, input_shape=(8, 8, 1), widths=(8, 8, 16)
    )
    tfee.attach_exits(backbone, ["block1_out", "block2_out"], head="sdn").save(
        tmp_path / "dense.keras"
    )
    cluster_sections.FLAGS(["cluster_sections"])
    # Eager fits: the same arithmetic without tracing, faster on tiny models.
    tf.config.run_functions_eagerly(True)
    try:
        with flagsaver.flagsaver(
            model=str(tmp_path / "dense.keras"),
            epochs=1,
            output_dir=str(tmp_path),
            **flags,
        ):
            cluster_sections.main([])
    finally:
        tf.config.run_functions_eagerly(False)
    return json.loads((tmp_path / "compression.json").read_text())


def test_staged_distilled_clustering_with_qat_writes_model_tflite_and_report(
    tmp_path,
):
    summary = _run(tmp_path, clusters="1:8,2:8,3:4", qat=True)
    assert summary["stages"] == [[1], [2], [3]]
    assert len(summary["after"]["exits"]) == 3
    assert summary["compression"]["entropy_ratio"] > 1
    assert [s["clusters"] for s in summary["compression"]["sections"]] == [8, 8, 4]
    assert summary["qat"]["compression"]["gzip_bytes"] > 0
    qat = summary["qat"]["compression"]  # against the clustered fp32 weights
    assert qat["fp32_bytes"] == summary["compression"]["fp32_bytes"], qat
    assert qat["ratio"] == qat["fp32_bytes"] / qat["gzip_bytes"]
    # The file a device runs: int8 exits and stages that Cascade reads.
    cascade = tfee.Cascade(str(tmp_path / "clustered_int8_qat.tflite"))
    assert cascade.num_exits == 3
    network = keras.models.load_model(tmp_path / "clustered.keras")
    assert len(np.unique(network.get_layer("logits").kernel.numpy())) <= 4


def _int8_kernels(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    kernels = [
        interpreter.get_tensor(d["index"])
        for d in interpreter.get_tensor_details()
        if d["dtype"] == np.int8
        and "conv" in d["name"]
        and len(d["shape"]) == 4
        and d["shape"][0] > 1  # kernels (out, h, w, in), not activations
    ]
    assert kernels
    return kernels


def test_int8_export_keeps_each_clustered_kernel_at_its_cluster_count(tmp_path):
    summary = _run(tmp_path, clusters="4", quantize=["int8"])
    assert summary["compression"]["artifact"] == "int8 .tflite, per-tensor scales"
    kernels = _int8_kernels(tmp_path / "clustered_int8.tflite")
    assert all(len(np.unique(k)) <= 4 for k in kernels)


def test_unfolded_clusters_reach_the_int8_file_through_per_channel_scales(tmp_path):
    summary = _run(tmp_path, clusters="4", quantize=["int8"], fold=False)
    assert summary["compression"]["artifact"] == "int8 .tflite, per-channel scales"
    network = keras.models.load_model(tmp_path / "clustered.keras")
    assert type(network.get_layer("block1_bn")).__name__ == "BatchNormalization"
    # Each channel's scale divides out the BN factor the converter folded in;
    # a channel without the largest centroid adds at most 3 more values.
    for kernel in _int8_kernels(tmp_path / "clustered_int8.tflite"):
        channels = {tuple(np.unique(row)) for row in kernel.reshape(len(kernel), -1)}
        assert all(len(values) <= 4 for values in channels)
        assert sum(len(values) == 4 for values in channels) >= 1


def test_unfolded_clustering_refuses_a_float32_file(tmp_path):
    with pytest.raises(ValueError, match="--nofold needs --quantize=int8 or --qat"):
        _run(tmp_path, clusters="4", fold=False)
