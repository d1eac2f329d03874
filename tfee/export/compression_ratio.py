"""Compression ratio: fp32 weights vs the deployable artifact, and the entropy bound.

Measures what `tfee.compress.prune` / `cluster` achieved in the file that
ships, so it lives with the export that writes that file (compression itself
never exports).

The ratio is fp32 bytes of all weights / bytes of the exported .tflite (the
deployable artifact `tfee.export.tflite` writes: exit and stage signatures
sharing one copy of the weights) after gzip -9 (clustered weights repeat a
few values and pruned ones are zero, so they compress). The
entropy bound counts, per section, H(cluster indices) bits per clustered
weight plus an fp32 codebook, and 32 bits for every other weight: the size an
ideal entropy coder of the indices would reach.
"""

import dataclasses
import gzip
import os
import shutil
import tempfile
import warnings

import numpy as np

from tfee import _flatbuffer
from tfee import compress
from tfee import cost
from tfee import naming
from tfee import structure as structure_lib
from tfee._keras import keras
from tfee.compress import scopes
from tfee.export import _signatures
from tfee.export import tflite_export

__all__ = [
    "CompressionReport",
    "compression_report",
    "tflite_bytes",
]


def tflite_bytes(network, quantize="float32", representative=None, **options):
    """The .tflite that `tfee.export.tflite` writes for `network`, as bytes.

    Args:
      network: a tfee early-exit network (tfmot wrappers are stripped).
      quantize: "float32", "float16", "dynamic" or "int8".
      representative: calibration images for "int8".
      **options: more `tfee.export.tflite` arguments (signatures, per_channel,
        policy, ...).

    Returns:
      The flatbuffer bytes.
    """
    directory = tempfile.mkdtemp(prefix="tfee-ratio-")
    try:
        path = os.path.join(directory, "network.tflite")
        tflite_export.tflite(
            network, path, quantize=quantize, representative=representative, **options
        )
        with open(path, "rb") as f:
            return f.read()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _check_artifact(flatbuffer, num_exits, api):
    """Raises unless `flatbuffer` is a .tflite that reaches every exit."""
    if not _flatbuffer.is_tflite(flatbuffer):
        raise ValueError(
            f"{api}: `artifact` must be the bytes of a .tflite file that "
            "tfee.export.tflite wrote. Received: "
            f"{len(flatbuffer)} bytes without TFLite's identifier"
        )
    keys = set(_flatbuffer.signature_keys(flatbuffer))
    missing = [
        naming.exit_name(k)
        for k in range(1, num_exits + 1)
        if naming.exit_name(k) not in keys
        and not all(naming.stage_name(j) in keys for j in range(1, k + 1))
    ]
    if missing:
        raise ValueError(
            f"{api}: `artifact` must hold every exit of the network (as exit_k "
            "or a chain of stage signatures): the ratio counts the weights of "
            f"all {num_exits} exits. Received a file without {missing} "
            f"(signatures: {sorted(keys)})"
        )


def _check_same_network(flatbuffer, network, api):
    """Raises where the file records weights other than `network`'s: another
    network of the same architecture passes every structural check and its
    ratio would be reported as this one's."""
    recorded = (_flatbuffer.metadata(flatbuffer) or {}).get("weights_digest")
    if recorded is None:
        warnings.warn(
            f"{api}: `artifact` records no weights digest (a file from an older "
            "tfee, or not from tfee.export.tflite), so it cannot be checked to "
            "come from `network`. Export it again to have it checked.",
            stacklevel=3,
        )
        return
    expected = tflite_export.weights_digest(_signatures.stripped_network(network, api))
    if recorded != expected:
        raise ValueError(
            f"{api}: `artifact` was exported from another network (or from this "
            "one before its weights changed): its weights digest is "
            f"{recorded}, `network`'s is {expected}. Pass the file exported from "
            "`network` (or omit `artifact` to measure its float32 export)."
        )


def _entropy_bits(values):
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum()), len(counts)


@dataclasses.dataclass(frozen=True)
class CompressionReport:
    """Sizes of a (clustered) early-exit network.

    Attributes:
      fp32_bytes: 4 bytes per weight of the whole network.
      tflite_bytes: the exported .tflite.
      file_values_per_kernel: the most distinct values any kernel holds in
        the file (per-channel int8 scales or folded BN spread a clustered
        kernel's centroids over many values).
      file_values_per_channel: the same per output channel.
      gzip_bytes: the .tflite after gzip -9 (the deployable artifact).
      ratio: fp32_bytes / gzip_bytes.
      entropy_bytes: the entropy bound of the whole network (the Keras
        weights: one codebook of `clusters` values per kernel).
      entropy_ratio: fp32_bytes / entropy_bytes.
      bits_per_weight: 8 * gzip_bytes / weights.
      sections: per section: index, weights, clusters (largest distinct count
        in a clustered kernel), entropy_bits (mean per clustered weight),
        fp32_bytes, entropy_bytes, entropy_ratio.
    """

    fp32_bytes: int
    tflite_bytes: int
    file_values_per_kernel: int
    file_values_per_channel: int
    gzip_bytes: int
    ratio: float
    entropy_bytes: float
    entropy_ratio: float
    bits_per_weight: float
    sections: tuple

    def to_dict(self):
        return dataclasses.asdict(self)


def compression_report(network, artifact=None):
    """Measures how far a stripped early-exit network compresses.

    Args:
      network: a stripped tfee early-exit network.
      artifact: the .tflite to measure (bytes, or a path to the file), as
        `tfee.export.tflite` wrote it with every exit (default: its float32
        export).

    Returns:
      A `CompressionReport`. It warns when the file's kernels hold more
      distinct values than the network's clustered ones (the entropy bound
      then describes the Keras weights, not the file).

    Raises:
      ValueError: a quantization-aware `network`; `artifact` is not a .tflite, lacks exits of the network
        (fp32 bytes count the whole network, so the ratio would be
        inflated), or was exported from another network (its metadata's
        weights digest differs; a file without one is measured with a
        warning).
    """
    api = "tfee.export.compression_report"
    if compress.is_quantization_aware(network):
        # Cluster-preserving QAT moves the kernels into tfmot's wrappers
        # (centroids and indices): the layers' own weights would count a
        # few biases as the whole network.
        raise ValueError(
            f"{api}: `network` is quantization-aware; its weights live in "
            "tfmot's wrappers and cannot be counted. Measure the clustered "
            "network QAT started from (compression_report(clustered)) and the "
            "QAT file's gzipped size (tfee.export.gzipped_size)."
        )
    structure = structure_lib.read_structure(network, api)
    num_exits = structure.num_exits
    if isinstance(artifact, (str, os.PathLike)):
        if not os.path.isfile(artifact):
            raise FileNotFoundError(
                f"{api}: `artifact` must be .tflite bytes or the path of a .tflite "
                f"file. Received: artifact={artifact!r} (no such file)"
            )
        with open(artifact, "rb") as f:
            artifact = f.read()
    if artifact is None:
        flatbuffer = tflite_bytes(network)
    else:
        flatbuffer = artifact
        _check_artifact(flatbuffer, num_exits, api)
        _check_same_network(flatbuffer, network, api)
    layers = {layer.name: layer for layer in network.layers}
    sections = []
    total_weights = total_entropy = 0
    for section in structure.sections:
        weights = bits = clustered = 0.0
        clusters = 0
        for name in section.layers:
            layer = cost.unwrap(layers[name])
            clusterable = scopes.clusterable_weights(layer, frozen_too=True)
            kernels = {id(w) for _, w in (clusterable or [])}
            for weight in layer.weights:
                values = np.asarray(keras.backend.get_value(weight)).ravel()
                weights += values.size
                if id(weight) in kernels:
                    entropy, distinct = _entropy_bits(values)
                    clusters = max(clusters, distinct)
                    bits += values.size * entropy + 32 * distinct
                    clustered += values.size
                else:
                    bits += 32 * values.size
        entropy_bytes = bits / 8
        sections.append(
            dict(
                index=section.index,
                weights=int(weights),
                clusters=clusters,
                fp32_bytes=int(4 * weights),
                entropy_bytes=entropy_bytes,
                entropy_ratio=4 * weights / entropy_bytes if entropy_bytes else 0.0,
            )
        )
        total_weights += weights
        total_entropy += entropy_bytes
    packed = len(gzip.compress(flatbuffer, compresslevel=9))
    fp32 = int(4 * total_weights)
    statistics = _flatbuffer.weight_statistics(flatbuffer)
    clusters = max((s["clusters"] for s in sections), default=0)
    if statistics["max_unique_values"] > clusters:
        warnings.warn(
            f"{api}: the file's kernels hold up to "
            f"{statistics['max_unique_values']} distinct values "
            f"({statistics['max_unique_values_per_channel']} per channel) where "
            f"the network's hold at most {clusters}: the converter spread the "
            "clusters (per-channel int8 scales or BatchNormalization folded into "
            "them), so entropy_bytes, which counts one codebook per kernel, "
            "describes the Keras weights, not this file. Fold BN before "
            "clustering (fold_batch_norm=True) and export with "
            "per_channel=False to keep them.",
            stacklevel=2,
        )
    return CompressionReport(
        fp32_bytes=fp32,
        tflite_bytes=len(flatbuffer),
        file_values_per_kernel=statistics["max_unique_values"],
        file_values_per_channel=statistics["max_unique_values_per_channel"],
        gzip_bytes=packed,
        ratio=fp32 / packed,
        entropy_bytes=total_entropy,
        entropy_ratio=fp32 / total_entropy if total_entropy else 0.0,
        bits_per_weight=8 * packed / total_weights if total_weights else 0.0,
        sections=tuple(sections),
    )
