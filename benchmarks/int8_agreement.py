"""Full-int8 export of the reference network: agreement of every signature with Keras.

Exports the cached reference network (never trains it) to one int8 .tflite
with every exit_k and stage_k signature, calibrated on the first
--int8_calibration validation images, and runs `tfee.export.verify` on
--int8_samples other validation images: top-1 agreement with the Keras
network per signature (issue 5's criterion: at least 99%).

    .venv/bin/python -m benchmarks.int8_agreement
"""

import os
import tempfile

import numpy as np
from absl import app
from absl import flags

import tfee
from benchmarks import reference

FLAGS = flags.FLAGS
flags.DEFINE_integer("int8_calibration", 512, "Validation images for calibration.")
flags.DEFINE_integer("int8_samples", 512, "Other validation images compared.")


def main(argv):
    path = reference.wait_for_network(FLAGS.cache_dir, FLAGS.quick)
    network = tfee.keras.models.load_model(path)
    splits, mean, std = reference.reference_data(
        FLAGS.archive, FLAGS.cache_dir, FLAGS.quick
    )
    images = ((splits["validation"][0].astype(np.float32) / 255.0 - mean) / std).astype(
        np.float32
    )
    calibration = images[: FLAGS.int8_calibration]
    compared = images[
        FLAGS.int8_calibration : FLAGS.int8_calibration + FLAGS.int8_samples
    ]
    with tempfile.TemporaryDirectory() as directory:
        tflite_path = os.path.join(directory, "reference_int8.tflite")
        export = tfee.export.tflite(
            network, tflite_path, quantize="int8", representative=calibration
        )
        verification = tfee.export.verify(
            tflite_path, network, compared, samples=len(compared)
        )
    print(verification)
    tag = "quick" if FLAGS.quick else "full"
    result = {
        "setup": (
            "reference" if not FLAGS.quick else "quick (smoke check only, not a result)"
        ),
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
        "record": reference.machine_record(argv),
    }
    out = os.path.join(reference.RESULTS, f"int8_agreement_{tag}.json")
    tfee.report.write_json(out, result)
    print(f"written: {out}")


if __name__ == "__main__":
    app.run(main)
