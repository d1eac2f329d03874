"""Calibrate exit thresholds on validation data and report them on test data.

Loads a saved early-exit network (--model: a .keras, or a .tflite from
`tfee.export.tflite`, whose own, e.g. int8, outputs are then calibrated on:
what its cascade computes on a device), runs it once over --data's validation
and test splits, chooses thresholds for an accuracy or MACs target on
validation, and writes OUTPUT_DIR/policy.json with a table, JSON and PNG plots
for the test split:

    .venv/bin/python examples/calibrate.py --model=/tmp/tfee-chain/network.keras \
        --data=../shared/datasets/cifar10 --output_dir=/tmp/tfee-chain

With no --model it trains a small network on --data first.
"""

import os
import sys

from absl import app
from absl import flags

if not __package__:  # Run as a script: make `examples` importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from examples import shell  # noqa: E402

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(shell)  # --help lists the shared flags too
BINARY = "calibrate"

flags.DEFINE_string(
    "rule",
    "max_softmax",
    "Exit rule: max_softmax, entropy, margin, learned, patience or decision "
    "(a learned decision over the exits' signals, fitted on validation).",
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
flags.DEFINE_bool(
    "ensemble",
    False,
    "Also fit Zero Time Waste's learned ensemble (each exit answers with a learned "
    "combination of the exits so far; tfee.calibrate(ensemble=True)).",
)
flags.DEFINE_float(
    "calibration_confidence",
    None,
    "Meet the target at this upper confidence bound, a probability in [0.5, 1) "
    "(tfee.calibrate(confidence=...)); default: on validation as measured.",
)


def collect(source, split):
    """Every exit's outputs on (images, labels), from a network or a file."""
    import tfee

    if isinstance(source, tfee.Cascade):
        return source.collect_outputs(*split, batch_size=256)
    return tfee.collect_outputs(source, split)


def run_calibration(
    network,
    validation,
    test,
    report_dir,
    rule,
    max_accuracy_drop=0.005,
    macs_budget=None,
    confidence=None,
    title=None,
    labels=None,
    ensemble=False,
):
    """Calibrates on validation, evaluates on test, writes the report files.

    Args:
      network: a Keras early-exit network, or a `tfee.Cascade` over a
        .tflite (then its outputs are calibrated on).
      validation, test: (images, labels) arrays.
      confidence, ensemble: see `tfee.calibrate`.
      title: the plots' title; labels: what the JSON records about the run.

    Returns:
      (policy, test Evaluation, validation Evaluation, paths written).
    """
    import tfee
    from tfee import report

    val_outputs = collect(network, validation)
    test_outputs = collect(network, test)
    target = (
        {"macs_budget": macs_budget}
        if macs_budget is not None
        else {"max_accuracy_drop": max_accuracy_drop}
    )
    if confidence is not None:
        target["confidence"] = confidence
    policy = tfee.calibrate(val_outputs, rule=rule, ensemble=ensemble, **target)
    # The front over the answers the samples get (the ensemble's, with one).
    front_outputs = policy.ensemble.outputs(test_outputs) if ensemble else test_outputs
    val_result = tfee.evaluate(val_outputs, policy=policy)
    test_result = tfee.evaluate(test_outputs, policy=policy)
    paths = report.write_report(
        report_dir,
        test_result,
        tfee.policy.front(front_outputs, rule=rule),
        extra={
            **(labels or {}),
            "target": target,
            "ensemble": ensemble,
            "policy": policy.to_dict(),
            "validation": val_result,
        },
        prefix="test_",
        title=title,
    )
    policy_path = os.path.join(report_dir, "policy.json")
    policy.save(policy_path)
    paths["policy"] = policy_path
    return policy, test_result, val_result, paths


def _network_and_data():
    import tfee

    if FLAGS.model.endswith(".tflite"):
        if not os.path.isfile(FLAGS.model):
            raise shell.CommandError(f"--model: no such file: {FLAGS.model}")
        network = tfee.Cascade(FLAGS.model)
        data = shell.load_data(tuple(network.input_shape))
        return network, shell.check_classes(network.num_classes, data)
    return shell.model_and_data(BINARY)


def main(argv):
    import tfee

    shell.no_arguments(argv)
    rules = list(tfee.policy.RULES) + ["patience", tfee.rules.DECISION]
    if FLAGS.rule not in rules:
        raise app.UsageError(f"--rule must be one of {rules}. Received: {FLAGS.rule!r}")
    output_dir = shell.output_dir(BINARY)
    network, data = _network_and_data()
    shell.progress(BINARY, "collecting every exit's outputs on validation and test")
    policy, test_result, val_result, paths = run_calibration(
        network,
        shell.arrays(data.validation),
        shell.arrays(data.test),
        output_dir,
        FLAGS.rule,
        FLAGS.max_accuracy_drop,
        FLAGS.macs_budget,
        FLAGS.calibration_confidence,
        title=shell.title(BINARY, "test"),
        labels=shell.labels(BINARY, "test"),
        ensemble=FLAGS.ensemble,
    )
    print(f"\nCalibrated on validation ({val_result.num_samples} samples): {policy!r}")
    print(
        f"validation: accuracy {100 * val_result.accuracy:.2f}% at "
        f"{100 * val_result.macs_fraction:.1f}% of the full network's MACs"
    )
    print(f"\nOn test ({test_result.num_samples} samples):")
    print(tfee.report.text_table(test_result))
    print("\nWrote " + ", ".join(sorted(paths.values())))


if __name__ == "__main__":
    shell.run(main)
