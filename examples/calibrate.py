"""Calibrate exit thresholds on validation data and report them on test data.

Loads a saved early-exit network (.keras), runs it once over the validation
and test splits, chooses thresholds for an accuracy or MACs target on
validation, and writes a table, JSON and PNG plots for the test split:

    .venv/bin/python examples/calibrate.py --keras_model net.keras \
        --calibrate_data digits --report_dir /tmp/tfee-calibrate

With no --keras_model it trains a small network on the embedded digits first
(offline, under a minute). --calibrate_tflite calibrates on a file from
`tfee.export.tflite` instead: its own (e.g. int8) outputs, which is what its
cascade will compute on a device. --calibrate_data may be "digits" or an image
folder (class sub-folders); the folder is split into validation and test.
"""

import os

import numpy as np
from absl import app
from absl import flags

import tfee
import tfee.export
import tfee.policy
from tfee import keras
from tfee import report
from tfee import tf

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "keras_model",
    "",
    "A saved .keras early-exit network; empty trains one on the digits.",
)
flags.DEFINE_string(
    "calibrate_tflite",
    "",
    "A .tflite with stage signatures (tfee.export.tflite): calibrate on the "
    "file's own outputs instead of a Keras network.",
)
flags.DEFINE_string(
    "calibrate_data",
    "digits",
    "'digits' or an image folder (one sub-folder per class).",
)
flags.DEFINE_string("report_dir", "/tmp/tfee-calibrate", "Where the report files go.")
flags.DEFINE_enum(
    "confidence_rule",
    "max_softmax",
    list(tfee.policy.RULES) + ["patience"],
    "Exit rule.",
)
flags.DEFINE_float(
    "max_accuracy_drop",
    0.005,
    "Accepted accuracy loss vs the deepest exit (0.005 = 0.5 points).",
)
flags.DEFINE_float(
    "macs_budget",
    None,
    "Mean MACs as a fraction of the full network; replaces the accuracy target.",
)
flags.DEFINE_float(
    "calibrate_confidence",
    None,
    "Meet the target at this upper confidence bound, a probability in [0.5, 1) "
    "(tfee.policy.calibrate(confidence=...)); default: on validation as measured.",
)
flags.DEFINE_float(
    "validation_fraction",
    0.5,
    "Share of an image folder used for calibration (rest: test).",
)
flags.DEFINE_integer(
    "calibrate_train_epochs", 10, "Epochs when --keras_model is empty."
)


def load_splits(data, input_shape, validation_fraction, seed=0):
    """(validation, test) as (images, labels) arrays shaped for the network."""
    if data == "digits":
        _, validation, test = tfee.data.digits(seed=seed)
        return tuple(
            (np.concatenate([x for x, _ in ds]), np.concatenate([y for _, y in ds]))
            for ds in (validation, test)
        )
    if not os.path.isdir(data):
        raise ValueError(
            "--calibrate_data must be 'digits' or an existing image folder. "
            f"Received: {data!r}"
        )
    if not 0 < validation_fraction < 1:
        raise ValueError(
            "--validation_fraction must lie in (0, 1). "
            f"Received: {validation_fraction!r}"
        )
    images, labels, _ = tfee.data.load_image_folder(data)
    images = tf.image.resize(images.astype("float32") / 255.0, input_shape[:2]).numpy()
    if input_shape[-1] == 1 and images.shape[-1] == 3:
        images = images.mean(axis=-1, keepdims=True)
    return tuple(
        tfee.data.split_arrays(
            images, labels, (validation_fraction, 1 - validation_fraction), seed
        )
    )


def collect(source, split):
    """Every exit's outputs on (images, labels), from a network or a file."""
    if isinstance(source, tfee.runtime.Cascade):
        return source.collect_outputs(*split, batch_size=256)
    return tfee.policy.collect_outputs(source, split)


def run_calibration(
    network,
    data,
    report_dir,
    rule,
    max_accuracy_drop,
    macs_budget,
    validation_fraction,
    confidence=None,
):
    """Calibrates on validation, evaluates on test, writes the report files.

    Args:
      network: a Keras early-exit network, or a `tfee.runtime.Cascade` over a
        .tflite (then its outputs are calibrated on).
      confidence: see `tfee.policy.calibrate`.

    Returns:
      (policy, test Evaluation, validation Evaluation, paths written).
    """
    input_shape = (
        network.input_shape
        if isinstance(network, tfee.runtime.Cascade)
        else network.input_shape[1:]
    )
    validation, test = load_splits(data, input_shape, validation_fraction)
    val_outputs = collect(network, validation)
    test_outputs = collect(network, test)
    target = (
        {"macs_budget": macs_budget}
        if macs_budget is not None
        else {"max_accuracy_drop": max_accuracy_drop}
    )
    if confidence is not None:
        target["confidence"] = confidence
    policy = tfee.policy.calibrate(val_outputs, rule=rule, **target)
    val_result = tfee.policy.evaluate(val_outputs, policy=policy)
    test_result = tfee.policy.evaluate(test_outputs, policy=policy)
    front_rule = rule
    paths = report.write_report(
        report_dir,
        test_result,
        tfee.policy.front(test_outputs, rule=front_rule),
        extra={
            "target": target,
            "policy": policy.to_dict(),
            "validation": val_result,
            "data": data,
        },
        prefix="test_",
    )
    policy_path = os.path.join(report_dir, "policy.json")
    policy.save(policy_path)
    paths["policy"] = policy_path
    return policy, test_result, val_result, paths


def main(argv):
    del argv
    if FLAGS.calibrate_tflite and FLAGS.keras_model:
        raise app.UsageError("Pass --calibrate_tflite or --keras_model, not both.")
    if FLAGS.calibrate_tflite:
        if not os.path.isfile(FLAGS.calibrate_tflite):
            raise app.UsageError(
                f"--calibrate_tflite: no such file: {FLAGS.calibrate_tflite}"
            )
        network = tfee.runtime.Cascade(FLAGS.calibrate_tflite)
    elif FLAGS.keras_model:
        if not os.path.exists(FLAGS.keras_model):
            raise app.UsageError(f"--keras_model: no such file: {FLAGS.keras_model}")
        network = keras.models.load_model(FLAGS.keras_model)
    else:
        network = tfee.recipes.train_digits_network(FLAGS.calibrate_train_epochs)
    policy, test_result, val_result, paths = run_calibration(
        network,
        FLAGS.calibrate_data,
        FLAGS.report_dir,
        FLAGS.confidence_rule,
        FLAGS.max_accuracy_drop,
        FLAGS.macs_budget,
        FLAGS.validation_fraction,
        FLAGS.calibrate_confidence,
    )
    print(f"\nCalibrated on validation ({val_result.num_samples} samples): {policy!r}")
    print(
        f"validation: accuracy {100 * val_result.accuracy:.2f}% at "
        f"{100 * val_result.macs_fraction:.1f}% of the full MACs"
    )
    print(f"\nOn test ({test_result.num_samples} samples):")
    print(report.text_table(test_result))
    print("\nWrote " + ", ".join(sorted(paths.values())))


if __name__ == "__main__":
    app.run(main)
