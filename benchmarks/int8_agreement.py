"""Full-int8 export of the reference network: agreement of every signature with Keras.

Exports the cached reference network (never trains it) to one int8 .tflite
with every exit_k and stage_k signature, calibrated on the first
--int8_calibration validation images, and runs `tfee.export.verify` on
--int8_samples other validation images: top-1 agreement with the Keras
network per signature (issue 5's criterion: at least 99%), and which share
of the disagreements are near-ties: samples whose two top Keras logits lie
less than two steps of the int8 logits' scale apart.

    .venv/bin/python -m benchmarks.int8_agreement
"""

import os
import tempfile

import numpy as np
from absl import app
from absl import flags

import tfee
import tfee.export
from benchmarks import reference

FLAGS = flags.FLAGS
flags.DEFINE_integer("int8_calibration", 512, "Validation images for calibration.")
flags.DEFINE_integer("int8_samples", 512, "Other validation images compared.")


def near_tie_share(path, network, images):
    """{exit_k: share of int8/Keras disagreements that are near-ties}."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    keras_logits = network.predict(images, verbose=0)[: len(tfee.exits(network))]
    shares = {}
    for k, expected in enumerate(keras_logits, start=1):
        runner = interpreter.get_signature_runner(f"exit_{k}")
        image_details = runner.get_input_details()["image"]
        logits_details = runner.get_output_details()["logits"]
        got = np.concatenate(
            [
                tfee.export.runtime.dequantize_output(
                    runner(
                        image=tfee.export.runtime.quantize_input(
                            images[i : i + 1], image_details
                        )
                    )["logits"],
                    logits_details,
                )
                for i in range(len(images))
            ]
        )
        top2 = np.sort(expected, axis=-1)[:, -2:]
        near = top2[:, 1] - top2[:, 0] < 2 * logits_details["quantization"][0]
        differ = np.argmax(got, -1) != np.argmax(expected, -1)
        shares[f"exit_{k}"] = float(near[differ].mean()) if differ.any() else None
    return shares


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
        near_ties = near_tie_share(tflite_path, network, compared)
    print(verification)
    print(f"disagreements that are near-ties (within two int8 steps): {near_ties}")
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
        "disagreements_within_two_int8_steps": {
            "definition": "per exit_k signature: the share of the samples whose "
            "int8 top-1 differs from Keras' that have Keras' two top logits less "
            "than two steps of the int8 logits' scale apart (near-ties int8 "
            "logits cannot resolve)",
            "share": near_ties,
        },
        "record": reference.machine_record(argv),
    }
    out = os.path.join(reference.RESULTS, f"int8_agreement_{tag}.json")
    tfee.report.write_json(out, result)
    print(f"written: {out}")


if __name__ == "__main__":
    app.run(main)
