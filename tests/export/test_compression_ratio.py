"""tfee.export's compression ratio: fp32 weights vs the gzipped .tflite, and
the entropy bound of the cluster indices."""

import numpy as np

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
    payload = np.zeros(1000, np.uint8).tobytes()
    report = tfee.export.compression_report(clustered, artifact=payload)
    assert report.tflite_bytes == 1000
    assert report.gzip_bytes < 100
