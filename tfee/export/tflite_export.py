"""One .tflite for phones: `exit_k` and `stage_k` signatures sharing weights.

`exit_k` maps an image to exit k's logits (recomputing everything before
it). `stage_k` maps the image (k=1) or features_(k-1) to features_k plus exit
k's outputs, so an app runs stage 1, decides from its logits, and only then
pays for stage 2: nothing is computed twice. Weights are stored once for all signatures.

Why stage signatures and not one graph: a single .tflite holding the whole
cascade with `tf.cond` (TFLite `IF` ops) was tried. In float32 it matches
`Cascade` but runs at 1.36x the full model on LiteRT, because the converter
leaves BATCH_MATMUL, TRANSPOSE and RSQRT in the branches and XNNPACK does not
take them; in int8 LiteRT refuses the file (`conv.cc:390 zero_point != 0`)
and TensorFlow Lite Micro runs it silently wrong (classes agree 46.5%).
"""

import dataclasses
import gzip
import hashlib

import numpy as np

from tfee import _checks
from tfee import _flatbuffer
from tfee import compress
from tfee import cost
from tfee import input_normalisation
from tfee import naming
from tfee import version
from tfee._files import check_output_path
from tfee._files import write_bytes_atomically
from tfee._keras import tf
from tfee.export import _calibration
from tfee.export import _signatures
from tfee.policy import compatibility
from tfee.runtime import litert

__all__ = ["ExportReport", "QUANTIZATIONS", "set_policy", "tflite", "gzipped_size"]

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")


@dataclasses.dataclass(frozen=True)
class ExportReport:
    """What `tflite` wrote.

    Attributes:
      path: the .tflite file.
      quantize: "float32", "float16", "dynamic" or "int8".
      signatures: the signature names in the file.
      bytes: the file's size.
      gzipped_bytes: its size after gzip -9 (what sparsity and clusters buy).
      zero_fraction: fraction of zero values in the file's weight kernels.
      max_unique_values: the most distinct values in one weight kernel (at
        most the cluster count for a clustered network).
      max_unique_values_per_channel: the most distinct values in one output
        channel of a kernel (what survives clustering under per-channel int8
        scales and QAT, which keep clusters per channel).
    """

    path: str
    quantize: str
    signatures: tuple
    bytes: int
    gzipped_bytes: int
    zero_fraction: float
    max_unique_values: int
    max_unique_values_per_channel: int


def gzipped_size(data):
    """Bytes of `data` after gzip at level 9, compressed in memory."""
    return len(gzip.compress(bytes(data), compresslevel=9))


def _check_quantize(quantize, api):
    if quantize not in QUANTIZATIONS:
        raise ValueError(
            f"{api}: unknown `quantize`, expected one of {QUANTIZATIONS}. "
            f"Received: quantize={quantize!r}"
        )


def _check_positive(value, argument, api):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(
            f"{api}: `{argument}` must be a positive integer. "
            f"Received: {argument}={value!r}"
        )


def _check_labels(labels, classes, api):
    """`labels` as a list of `classes` strings, or None."""
    if labels is None:
        return None
    if isinstance(labels, str) or not all(isinstance(x, str) for x in labels):
        raise TypeError(
            f"{api}: `labels` must be None or a list of {classes} class names. "
            f"Received: labels={labels!r}"
        )
    labels = list(labels)
    if len(labels) != classes:
        raise ValueError(
            f"{api}: `labels` must name each of the network's {classes} classes. "
            f"Received: {len(labels)} labels"
        )
    return labels


def _input_description(data, network, names, normalisation):
    """The metadata's "input": what a client feeds the first stage."""
    from ai_edge_litert.interpreter import Interpreter

    first = names[0]
    kind, _ = naming.parse_signature(first)
    input_name = naming.IMAGE if kind == naming.EXIT else naming.stage_input_name(1)
    details = (
        Interpreter(model_content=bytes(data))
        .get_signature_runner(first)
        .get_input_details()[input_name]
    )
    scale, zero_point = details["quantization"]
    quantized = details["dtype"] != np.float32
    return {
        "name": input_name,
        "shape": [int(d) for d in network.inputs[0].shape[1:]],
        "dtype": np.dtype(details["dtype"]).name,
        "scale": float(scale) if quantized else None,
        "zero_point": int(zero_point) if quantized else None,
        "mean": normalisation["mean"] if normalisation else None,
        "std": normalisation["std"] if normalisation else None,
        "normalised_in_model": input_normalisation.included_normalisation(network),
    }


def weights_digest(network):
    """A short hash of a (stripped) network's weight values, in layer order.

    Stored in every export so that a file can be matched to the network it
    came from: two networks of one architecture share MACs and class count
    (a policy's fingerprint) but not weights."""
    digest = hashlib.sha256()
    for weight in network.weights:
        values = np.asarray(weight.numpy(), dtype=np.float32)
        digest.update(str(values.shape).encode())
        digest.update(values.tobytes())
    return digest.hexdigest()[:16]


def _metadata(structure, names, quantize, data, policy, normalisation, labels):
    """The "tfee" metadata document (docs/tflite_metadata.md)."""
    network, infos = structure.network, structure.exits
    exits = [
        litert.exit_description(
            k,
            len(infos),
            info.name,
            names,
            info.confidence is not None,
            int(info.cumulative_macs),
            cascading=info.cascading,
        )
        for k, info in enumerate(infos, start=1)
    ]
    return {
        "format": litert.metadata_format(exits),
        "tfee_version": version.__version__,
        "num_exits": len(infos),
        "exits": exits,
        "full_macs": int(cost.analyze(structure).full_macs),
        "policy": None if policy is None else policy.to_dict(),
        "input": _input_description(data, network, names, normalisation),
        "num_classes": structure.num_classes,
        "labels": labels,
        "weights_digest": weights_digest(network),
        "quantize": quantize,
        "signatures": names,
    }


def set_policy(path, policy):
    """Embeds `policy` in an exported .tflite, replacing the file atomically.

    Calibrate on the file's own outputs (`Cascade(path).collect_outputs`),
    then store the result where every client reads it, without converting
    again. The weights and signatures are left as they are.

    Args:
      path: a .tflite written by `tfee.export.tflite`.
      policy: a tfee policy for the file's exits, or None to remove it.

    Raises:
      FileNotFoundError: no file at `path`.
      ValueError: a file without tfee metadata, or a policy for another
        network. The file is unchanged.

    Example:
      >>> outputs = tfee.Cascade("net.tflite").collect_outputs(x, y)
      >>> tfee.export.set_policy("net.tflite", tfee.calibrate(outputs, 0.9))
    """
    api = "tfee.export.set_policy"
    metadata = litert.read_metadata(path)
    if not metadata:
        raise ValueError(
            f"{api}: {path} has no tfee metadata; embed policies in files "
            "written by tfee.export.tflite."
        )
    exits = metadata["exits"]
    if policy is not None:
        learned = [e["confidence"] is not None for e in exits]
        compatibility.check_policy(
            policy,
            len(exits),
            learned,
            api,
            exit_macs=[e["cumulative_macs"] for e in exits],
        )
    metadata["policy"] = None if policy is None else policy.to_dict()
    with open(path, "rb") as f:
        data = f.read()
    write_bytes_atomically(path, _flatbuffer.with_metadata(data, metadata))


def _handed_on(interpreter, k):
    """`naming.handed_on` for stage k of the converted file."""
    runner = interpreter.get_signature_runner(naming.stage_name(k + 1))
    return naming.handed_on(k, runner.get_input_details())


def _chained_stages(num_exits, names):
    """The k whose stage_k and stage_(k+1) are both exported."""
    return [
        k
        for k in range(1, num_exits)
        if naming.stage_name(k) in names and naming.stage_name(k + 1) in names
    ]


def _handed_on_ranges(data, num_exits, names):
    """{k: {input name: (min, max)}}: the int8 range in which stage_(k-1)
    writes each tensor that stage_k reads from it."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=bytes(data))
    ranges = {}
    for k in _chained_stages(num_exits, names):
        outputs = interpreter.get_signature_runner(
            naming.stage_name(k)
        ).get_output_details()
        for produced, consumed in _handed_on(interpreter, k):
            scale, zero_point = outputs[produced]["quantization"]
            ranges.setdefault(k + 1, {})[consumed] = (
                float((-128 - zero_point) * scale),
                float((127 - zero_point) * scale),
            )
    return ranges


def chain_features(data, num_exits, names, api="tfee.export.tflite"):
    """Makes what stage_k hands on leave it exactly as stage_(k+1) reads it.

    In int8, stage_k's features_k output (and, for a cascading stage k+1,
    its logits) and stage_(k+1)'s inputs must have the same scale and zero
    point, so that the int8 tensor is handed on unchanged. Both sides are
    calibrated on the same float values, so they agree up to float rounding
    of the scale; such a last-bit difference is repaired by giving
    stage_(k+1)'s input the producer's exact scale (a relative change below
    1e-5). Anything larger raises.

    Returns:
      The (possibly repaired) model bytes.

    Raises:
      ValueError: scales or zero points that really differ.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=bytes(data))
    repairs = []
    for k in _chained_stages(num_exits, names):
        outputs = interpreter.get_signature_runner(
            naming.stage_name(k)
        ).get_output_details()
        inputs = interpreter.get_signature_runner(
            naming.stage_name(k + 1)
        ).get_input_details()
        handed_on = [
            (
                input_name,
                outputs[output_name]["quantization"],
                inputs[input_name]["quantization"],
            )
            for output_name, input_name in _handed_on(interpreter, k)
        ]
        repairs += [
            (k, input_name, produced)
            for input_name, produced in _flatbuffer.chain_repairs(api, k, handed_on)
        ]
    if repairs:
        data = _flatbuffer.set_input_quantization(
            data,
            [
                (naming.stage_name(k + 1), input_name, produced)
                for k, input_name, produced in repairs
            ],
        )
    return data


def convert(
    structure, names, quantize, calibration, sparse, per_channel=True, input_ranges=None
):
    """Converts a stripped network (its `Structure`); returns the flatbuffer
    bytes. Its stage models are built once, for the stage signatures and
    int8's calibration inputs alike."""
    functions = _signatures.functions(structure, names, input_ranges=input_ranges)
    _signatures.check_ops(functions, "tfee.export.tflite")
    converter, directory = _signatures.converter(
        structure.network, functions, per_channel
    )
    try:
        optimizations = []
        if quantize != "float32":
            optimizations.append(tf.lite.Optimize.DEFAULT)
        if sparse:
            optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
        converter.optimizations = optimizations
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":
            inputs = _calibration.stage_inputs(structure, calibration)
            converter.representative_dataset = _calibration.generator(names, inputs)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        return _signatures.run(converter)
    finally:
        _signatures.remove(directory)


def tflite(
    network,
    path,
    quantize="float32",
    representative=None,
    signatures=None,
    calibration_samples=512,
    sparse=False,
    per_channel=True,
    policy=None,
    normalisation=None,
    labels=None,
):
    """Exports an early-exit network as one .tflite with exit and stage signatures.

    Signatures (k = 1..K, inputs and outputs keyed by name):
      exit_k:  image -> logits[, confidence]
      stage_k: image (k=1) or features_(k-1) [, logits_(k-1) where head k
               is cascading] -> logits[, confidence], features_k (all but
               the last stage)
    "confidence", shape (batch,), is the head's learned confidence, present
    where the head learns one. A client decides from the (dequantized)
    logits with the rule formulas of `tfee.rules`, as every tfee runtime
    does: no softmax output, whose int8 form saturates at 255/256, can make
    a device disagree with them. Inputs take any batch
    size. In int8 every input and output is int8 (read the scales from the
    signature's details) and features_k (plus exit k's logits for a
    cascading head k+1) chains unchanged into stage_(k+1): the export checks
    that scales and zero points match on both sides.

    tfmot pruning and clustering wrappers are stripped first; zeros and
    clusters stay in the weights and show in `gzipped_bytes`. The file is
    written atomically: a failed export leaves an existing file untouched.
    The file carries its own description in a JSON metadata entry named
    "tfee" (docs/tflite_metadata.md): per exit its signatures, output names
    and cumulative MACs, the policy, the input's shape, dtype, quantization
    and normalisation, and the class labels. `tfee.Cascade(path)`
    and a client with only LiteRT read everything from the file.

    Args:
      network: a tfee early-exit network (from `tfee.attach_exits`), or its
        quantization-aware form (`tfee.compress.quantization_aware_training`),
        which exports as int8 with the ranges it learned: every stage input
        reads features in the range the previous stage writes them.
      path: the .tflite file to write.
      quantize: "float32", "float16" (weights), "dynamic" (int8 weights,
        float activations) or "int8" (full integer, needs `representative`).
      representative: for "int8": a tf.data.Dataset of preprocessed float
        images (or (images, labels) tuples), batched or not, or an array.
      signatures: names to export (default: every exit_k and stage_k).
      calibration_samples: how many representative images calibrate int8.
      sparse: also store sparse weights in TFLite's sparse format (phones
        with XNNPack only; TFLite Micro cannot read it).
      per_channel: int8 and dynamic weights get one scale per output channel
        (the converter's default). False uses one scale per kernel: a
        clustered kernel then keeps at most its cluster count of distinct
        int8 values (per-channel scales turn each centroid into a different
        value in every channel), so its gzipped file is much smaller.
      policy: the exit policy to embed (e.g. from `tfee.calibrate`), or None;
        `set_policy` replaces it later without converting again.
      normalisation: (mean, std) a client applies to raw images before the
        input (`(x - mean) / std`, per channel or scalar), or None when the
        network takes its input as it comes. A network that normalises its
        input itself (`tfee.include_normalisation`) takes raw images: its
        statistics are recorded as `normalised_in_model`, and passing
        `normalisation` too is an error.
      labels: class names, one per logit, or None.

    Returns:
      An `ExportReport`.

    Raises:
      TypeError: `network` is not a tf_keras functional model, or the
        representative images are not floating point.
      ValueError: unknown `quantize` or signature names, missing or
        wrongly shaped representative data, a policy for another network,
        bad normalisation or labels, a `path` that is a directory, or int8
        features whose scales do not chain. All but the last are raised
        before conversion starts.

    Example:
      >>> report = tfee.export.tflite(net, "net.tflite", quantize="int8",
      ...                             representative=val_ds)
      >>> report.bytes, report.gzipped_bytes
    """
    api = "tfee.export.tflite"
    _check_quantize(quantize, api)
    _check_positive(calibration_samples, "calibration_samples", api)
    check_output_path(path, api)
    structure = _signatures.stripped_structure(network, api)
    stripped, infos = structure.network, structure.exits
    if compress.is_quantization_aware(stripped) and quantize != "int8":
        raise ValueError(
            f"{api}: a quantization-aware network (tfee.compress."
            "quantize_preserving_clusters) exports as quantize='int8', with the "
            f"ranges it learned. Received: quantize={quantize!r}"
        )
    names = _signatures.select_signatures(signatures, len(infos), api)
    if policy is not None:
        compatibility.check_policy_for(policy, structure, api)
    channels = int(stripped.inputs[0].shape[-1])
    normalisation = input_normalisation.check_normalisation(
        normalisation, channels, api
    )
    if normalisation and input_normalisation.included_normalisation(stripped):
        raise ValueError(
            f"{api}: `network` normalises its input itself (tfee."
            "include_normalisation), so clients feed raw images; a "
            "`normalisation` for them to apply first would normalise twice. "
            f"Received: normalisation={normalisation!r}"
        )
    labels = _check_labels(labels, structure.num_classes, api)
    calibration = None
    if quantize == "int8":
        if representative is None:
            raise ValueError(
                f"{api}: quantize='int8' needs `representative` images to "
                "calibrate activations. Received: representative=None"
            )
        calibration = _checks.check_images(
            representative, stripped, calibration_samples, api
        )
    _checks.check_bool(per_channel, "per_channel", api)
    data = convert(structure, names, quantize, calibration, sparse, per_channel)
    if quantize == "int8" and compress.is_quantization_aware(stripped):
        # The stages write features in the ranges QAT learned, but their
        # inputs were calibrated: convert again with each stage input held
        # to the range its producer writes.
        ranges = _handed_on_ranges(data, len(infos), names)
        data = convert(
            structure, names, quantize, calibration, sparse, per_channel, ranges
        )
    if quantize == "int8":
        data = chain_features(data, len(infos), names, api)
    data = _flatbuffer.with_metadata(
        data,
        _metadata(structure, names, quantize, data, policy, normalisation, labels),
    )
    write_bytes_atomically(path, data)
    statistics = _flatbuffer.weight_statistics(data)
    return ExportReport(
        path=path,
        quantize=quantize,
        signatures=tuple(names),
        bytes=len(data),
        gzipped_bytes=gzipped_size(data),
        zero_fraction=statistics["zero_fraction"],
        max_unique_values=statistics["max_unique_values"],
        max_unique_values_per_channel=statistics["max_unique_values_per_channel"],
    )
