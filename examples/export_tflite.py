"""Export an early-exit network to TFLite for phones and microcontrollers.

Writes `net_<quantize>.tflite` (exit_k and stage_k signatures) for every
requested variant, verifies each against Keras, and with --micro writes one
int8 model per stage with C arrays and the C++ cascade:

    .venv/bin/python examples/export_tflite.py --export_dir /tmp/tfee-export

Without --model_path it first trains a small CNN with two exits on the embedded
digits (about a minute on 2 cores).
"""

import os

import numpy as np
from absl import app
from absl import flags

import tfee
import tfee.export
from tfee import keras

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "model_path",
    "",
    "A saved .keras early-exit network; empty trains one on the digits.",
)
flags.DEFINE_string("export_dir", "/tmp/tfee-export", "Where to write the files.")
flags.DEFINE_list(
    "quantize",
    list(tfee.export.QUANTIZATIONS),
    "Variants: float32,float16,dynamic,int8.",
)
flags.DEFINE_bool("micro", True, "Also export int8 stage models for TFLite Micro.")
flags.DEFINE_enum(
    "calibration_data",
    "digits",
    ["digits", "random"],
    "Calibration data (random: smoke tests).",
)
flags.DEFINE_integer("train_epochs", 20, "Training epochs when --model_path is empty.")
flags.DEFINE_integer("train_seed", 0, "Random seed of training and data.")


def calibration_images(network, data, seed, count=256):
    """Preprocessed float images for calibration and verification."""
    if data == "random":
        shape = (count,) + tuple(network.inputs[0].shape[1:])
        return np.random.default_rng(seed).random(shape, dtype=np.float32)
    _, validation, _ = tfee.data.digits(seed=seed)
    return np.concatenate([x for x, _ in validation])[:count]


def export_all(network, output_dir, quantizations, micro, images):
    """Exports every variant (and the Micro stages); returns printable lines."""
    lines = []
    for quantize in quantizations:
        path = os.path.join(output_dir, f"net_{quantize}.tflite")
        report = tfee.export.tflite(
            network, path, quantize=quantize, representative=images
        )
        check = tfee.export.verify(path, network, images)
        lines.append(
            f"{quantize:<8} {report.bytes:>9,} bytes  {report.gzipped_bytes:>9,} "
            f"gzipped  zeros {100 * report.zero_fraction:5.1f}%  "
            f"{'verified' if check.passed else 'VERIFICATION FAILED'}"
        )
        if not check.passed:
            lines.append(str(check))
    if micro:
        result = tfee.export.micro(
            network, os.path.join(output_dir, "micro"), representative=images
        )
        for stage in result.stages:
            lines.append(
                f"micro stage_{stage.index}: {stage.bytes:,} bytes, arena "
                f"{stage.arena_bytes:,} bytes, ops {', '.join(stage.ops)}"
            )
        lines.append(
            f"shared arena: {result.arena_bytes:,} bytes (RAM for every stage)"
        )
        lines.append(f"cascade loop: {result.cascade_path} ({result.header_path})")
    return lines


def main(argv):
    del argv
    unknown = [q for q in FLAGS.quantize if q not in tfee.export.QUANTIZATIONS]
    if unknown:
        raise app.UsageError(
            f"--quantize accepts {tfee.export.QUANTIZATIONS}; received {unknown}"
        )
    if FLAGS.model_path:
        network = keras.models.load_model(FLAGS.model_path)
    else:
        network = tfee.recipes.train_digits_network(
            FLAGS.train_epochs, seed=FLAGS.train_seed
        )
    images = calibration_images(network, FLAGS.calibration_data, FLAGS.train_seed)
    for line in export_all(
        network, FLAGS.export_dir, FLAGS.quantize, FLAGS.micro, images
    ):
        print(line)


if __name__ == "__main__":
    app.run(main)
