"""Full-int8 export of the reference network: agreement of every signature with Keras.

Exports the cached reference network (never trains it) to one int8 .tflite
with every exit_k and stage_k signature, calibrated on the first
--int8_calibration validation images, and runs `tfee.export.verify` on
--int8_samples other validation images: top-1 agreement with the Keras
network per signature (issue 5's criterion: at least 99%), and which share
of the disagreements are near-ties: samples whose two top Keras logits lie
less than two steps of the int8 logits' scale apart.

    .venv/bin/python -m benchmarks.int8_agreement
    .venv/bin/python -m benchmarks.int8_agreement --quick    # smoke check only
"""

import os
import tempfile

import numpy as np
from absl import app
from absl import flags

import tfee
import tfee.export
from benchmarks import common
from tfee import naming

FLAGS = flags.FLAGS
flags.DEFINE_integer("int8_calibration", 512, "Validation images for calibration.")
flags.DEFINE_integer("int8_samples", 512, "Other validation images compared.")


def near_tie_share(path, network, images):
    """{exit_k: share of int8/Keras disagreements that are near-ties}."""
    keras_logits = network.predict(images, verbose=0)[: len(tfee.exits(network))]
    shares = {}
    for k, expected in enumerate(keras_logits, start=1):
        name = naming.exit_name(k)
        call = common.signature_function(path, name)
        got = np.concatenate([call(images[i : i + 1]) for i in range(len(images))])
        step = call.logits_details["quantization"][0]
        top2 = np.sort(expected, axis=-1)[:, -2:]
        near = top2[:, 1] - top2[:, 0] < 2 * step
        differ = np.argmax(got, -1) != np.argmax(expected, -1)
        shares[name] = float(near[differ].mean()) if differ.any() else None
    return shares


def run(argv=None):
    """Exports, verifies and writes int8_agreement_<tag>.json."""
    network, data = common.reference()
    images = data.normalised("validation")
    # At most half the images calibrate, so that some are left to compare
    # (the quick stand-in has only a few).
    split = min(FLAGS.int8_calibration, len(images) // 2)
    calibration = images[:split]
    compared = images[split : split + FLAGS.int8_samples]
    with tempfile.TemporaryDirectory() as directory:
        tflite_path = os.path.join(directory, "reference_int8.tflite")
        export = tfee.export.tflite(
            network, tflite_path, quantize="int8", representative=calibration
        )
        verification = tfee.export.verify(
            tflite_path, network, compared, samples=len(compared)
        )
        near_ties = near_tie_share(tflite_path, network, compared)
    print(verification)
    print(f"disagreements that are near-ties (within two int8 steps): {near_ties}")
    result = {
        "setup": common.setup(),
        "calibration_images": len(calibration),
        "compared_images": len(compared),
        "file_bytes": export.bytes,
        "file_gzipped_bytes": export.gzipped_bytes,
        "criterion": verification.criterion,
        "passed": verification.passed,
        "signatures": {
            c.signature: {
                "top1_agreement": c.top1_agreement,
                "max_abs_difference": c.max_abs_difference,
                "passed": c.passed,
            }
            for c in verification.checks
        },
        "disagreements_within_two_int8_steps": {
            "definition": "per exit_k signature: the share of the samples whose "
            "int8 top-1 differs from Keras' that have Keras' two top logits less "
            "than two steps of the int8 logits' scale apart (near-ties int8 "
            "logits cannot resolve)",
            "share": near_ties,
        },
        "record": common.machine_record(argv),
    }
    return common.finish("int8_agreement", result, ["passed"])


def main(argv):
    run(argv)


if __name__ == "__main__":
    app.run(main)
