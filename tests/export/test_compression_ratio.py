"""tfee.export's compression ratio: fp32 weights vs the gzipped .tflite, and
the entropy bound of the cluster indices."""

import pytest

import tfee
import tfee.compress
import tfee.export
from tests.compress import _tiny


def _clustered(net, count=4):
    return tfee.compress.strip(tfee.compress.cluster_weights(net, count, init="linear"))


def test_a_clustered_network_compresses_further_than_its_dense_original():
    net = _tiny.network()
    clustered = _clustered(net)
    compression = tfee.export.compression_report(clustered)
    assert [s["clusters"] for s in compression.sections] == [4, 4]
    # Tiny networks do not amortise the .tflite's fixed overhead, so compare
    # the artifact with the dense network's, measured the same way.
    dense = tfee.export.compression_report(net)
    assert compression.fp32_bytes == dense.fp32_bytes
    assert compression.gzip_bytes < dense.gzip_bytes
    assert compression.entropy_ratio > 2 * dense.entropy_ratio
    assert compression.ratio == compression.fp32_bytes / compression.gzip_bytes


def test_the_default_artifact_is_the_float32_tflite_export():
    clustered = _clustered(_tiny.network())
    flatbuffer = tfee.export.tflite_bytes(clustered)
    assert flatbuffer[4:8] == b"TFL3"
    measured = tfee.export.compression_report(clustered, artifact=flatbuffer)
    assert measured == tfee.export.compression_report(clustered)
    assert measured.tflite_bytes == len(flatbuffer)


def test_an_artifact_given_is_the_one_measured():
    clustered = _clustered(_tiny.network(), 2)
    flatbuffer = tfee.export.tflite_bytes(clustered, quantize="float16")
    report = tfee.export.compression_report(clustered, artifact=flatbuffer)
    assert report.tflite_bytes == len(flatbuffer)
    assert report.file_values_per_kernel <= 2


def test_an_artifact_may_be_the_path_of_the_file(tmp_path):
    # Issue 31: a path gave "string argument without an encoding".
    clustered = _clustered(_tiny.network(), 2)
    flatbuffer = tfee.export.tflite_bytes(clustered, quantize="float16")
    path = tmp_path / "net.tflite"
    path.write_bytes(flatbuffer)
    for artifact in (str(path), path):
        report = tfee.export.compression_report(clustered, artifact=artifact)
        assert report == tfee.export.compression_report(clustered, artifact=flatbuffer)
    with pytest.raises(FileNotFoundError, match="no such file"):
        tfee.export.compression_report(clustered, artifact=str(tmp_path / "x.tflite"))


def test_an_artifact_that_is_not_a_tflite_is_refused():
    clustered = _clustered(_tiny.network(), 2)
    with pytest.raises(ValueError, match="without TFLite's identifier"):
        tfee.export.compression_report(clustered, artifact=b"\0" * 1000)


def test_a_file_without_some_exits_is_refused_instead_of_inflating_the_ratio():
    """Issue 16: missing heads still counted in fp32_bytes."""
    clustered = _clustered(_tiny.network(), 2)
    deepest_only = tfee.export.tflite_bytes(clustered, signatures=["exit_2"])
    with pytest.raises(ValueError, match=r"without \['exit_1'\]"):
        tfee.export.compression_report(clustered, artifact=deepest_only)
    stages = tfee.export.tflite_bytes(clustered, signatures=["stage_1", "stage_2"])
    assert tfee.export.compression_report(clustered, artifact=stages).ratio > 0


def test_a_file_whose_kernels_hold_more_values_than_the_clusters_warns():
    """Issue 16: the report counted 4 clusters where per-channel int8 spread
    them to many values per kernel in the file."""
    clustered = _clustered(_tiny.network(), 4)
    flatbuffer = tfee.export.tflite_bytes(
        clustered, quantize="int8", representative=_tiny.dataset()
    )
    with pytest.warns(UserWarning, match="describes the Keras weights, not this file"):
        report = tfee.export.compression_report(clustered, artifact=flatbuffer)
    assert report.file_values_per_kernel > 4


def test_a_file_of_another_network_of_the_same_architecture_is_refused(tmp_path):
    # Issue 31, item 10: it passed every structural check and returned a ratio.
    ours = _clustered(_tiny.network(seed=0), 2)
    theirs = tfee.export.tflite_bytes(_clustered(_tiny.network(seed=1), 2))
    with pytest.raises(ValueError, match="exported from another network"):
        tfee.export.compression_report(ours, artifact=theirs)
    # The check holds through the file on disk, whatever the quantization.
    path = tmp_path / "ours.tflite"
    tfee.export.tflite(ours, str(path), quantize="float16")
    assert tfee.export.compression_report(ours, artifact=path).ratio > 0


def test_a_file_without_a_weights_digest_is_measured_with_a_warning():
    from tfee import _flatbuffer

    clustered = _clustered(_tiny.network(), 2)
    flatbuffer = tfee.export.tflite_bytes(clustered)
    metadata = _flatbuffer.metadata(flatbuffer)
    del metadata["weights_digest"]  # as an older tfee wrote it
    older = _flatbuffer.with_metadata(flatbuffer, metadata)
    with pytest.warns(UserWarning, match="records no weights digest"):
        report = tfee.export.compression_report(clustered, artifact=older)
    assert report.fp32_bytes > 0
