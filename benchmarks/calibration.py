"""Calibration and dynamic inference on the reference network (shared/BENCHMARK.md).

Loads the trained reference network (never trains it: fails, or waits with
--wait_minutes, while /tmp/tfee-reference/reference_full.keras is missing),
runs it once over the validation and test splits, calibrates max-softmax
thresholds on validation for at most --target_drop accuracy loss versus the
deepest exit (and, separately, for a --macs_budget), and reports on test:
accuracy, mean MACs as a share of the full network, the exit histogram, the
oracle, and the oracle at the same accuracy. Then it times dynamic inference
in TensorFlow (`tfee.DynamicPredictor`) against the full model at
batch 1 and batch 128, alternating the two, medians. Last, it exports the
stage signatures as full int8 and calibrates on that file's own outputs
(`tfee.Cascade.collect_outputs`), beside the Keras-calibrated policy
run on the same file: what a device would do.

"Oracle at the same accuracy": the least mean MACs of any per-sample exit
assignment chosen with the labels that is right on at least as many test
samples as the calibrated policy (`tfee.policy.oracle_macs_at_accuracy`):
samples it does not need leave at the first exit, the needed ones at their
earliest correct exit, cheapest first. No policy can be cheaper at that
accuracy; the plain oracle (hopeless samples at the deepest exit) is reported
beside it.

    .venv/bin/python -m benchmarks.calibration            # the reference network
    .venv/bin/python -m benchmarks.calibration --quick    # smoke check only
"""

import os
import shutil
import tempfile
import time
import warnings

import numpy as np
from absl import app
from absl import flags

import tfee
import tfee.export
import tfee.policy
import tfee.runtime
from benchmarks import common
from benchmarks import timing
from tfee import report
from tfee import tf

FLAGS = flags.FLAGS
flags.DEFINE_float("target_drop", 0.005, "Accepted accuracy drop vs the deepest exit.")
flags.DEFINE_float(
    "budget_fraction",
    0.6,
    "MACs budget for the second target, as a fraction of the full network's MACs.",
)
flags.DEFINE_float(
    "confidence",
    0.9,
    "A third calibration: the drop target at this upper confidence bound "
    "(tfee.calibrate(confidence=...)).",
)
flags.DEFINE_integer("batch1_samples", 1000, "Test samples timed one at a time.")
flags.DEFINE_integer("batch128_batches", 30, "Batches of 128 timed.")

MAX_MACS_FRACTION = 0.60
MAX_ORACLE_RATIO = 1.5


def resampled(outputs, samples, seed=0):
    """`samples` samples drawn with replacement (timing only)."""
    picked = np.random.default_rng(seed).choice(outputs.num_samples, samples)
    confidences = (
        None if outputs.confidences is None else outputs.confidences[:, picked]
    )
    return tfee.policy.ExitOutputs(
        outputs.logits[:, picked],
        confidences,
        outputs.labels[picked],
        outputs.exit_macs,
        outputs.full_macs,
    )


def over_oracle(outputs, result):
    """Mean MACs over the oracle's at the same accuracy (None: unreachable)."""
    oracle = tfee.policy.oracle_macs_at_accuracy(outputs, result.accuracy)
    return None if oracle is None else result.mean_macs / oracle


def summary(result):
    return {
        "accuracy": result.accuracy,
        "deepest_accuracy": result.deepest_accuracy,
        "accuracy_drop_points": 100 * result.accuracy_drop,
        "mean_macs": result.mean_macs,
        "macs_fraction": result.macs_fraction,
        "exit_fractions": result.exit_fractions,
    }


def int8_file_section(
    network,
    val_images,
    val_labels,
    test_images,
    test_labels,
    keras_policy,
    target_drop,
    keras_test,
):
    """What the device sees: a policy calibrated on the int8 file's own
    validation outputs, and the Keras-calibrated policy, both run on the
    file's test outputs (`tfee.Cascade.collect_outputs`)."""
    stages = [tfee.naming.stage_name(k) for k in range(1, len(tfee.exits(network)) + 1)]
    directory = tempfile.mkdtemp(prefix="tfee-calibration-")
    try:
        path = os.path.join(directory, "int8.tflite")
        tfee.export.tflite(
            network,
            path,
            quantize="int8",
            representative=val_images[:512],
            signatures=stages,
        )
        cascade = tfee.Cascade(path)
        val_outputs = cascade.collect_outputs(val_images, val_labels, batch_size=500)
        test_outputs = cascade.collect_outputs(test_images, test_labels, batch_size=500)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    own = tfee.calibrate(val_outputs, max_accuracy_drop=target_drop)
    own_test = tfee.evaluate(test_outputs, policy=own)
    keras_on_file = tfee.evaluate(test_outputs, policy=keras_policy)
    return {
        "note": "full-int8 stage_k signatures (per-channel scales, 512 validation "
        "images for calibration); accuracy drops are vs the file's own deepest exit",
        "test_single_exit_accuracy": test_outputs.exit_accuracy().per_exit().tolist(),
        "calibrated_on_the_files_validation_outputs": {
            "policy": own.to_dict(),
            "test": summary(own_test),
            "test_drop_vs_keras_deepest_points": 100
            * (keras_test.deepest_accuracy - own_test.accuracy),
        },
        "keras_calibrated_policy_on_the_file": {
            "test": summary(keras_on_file),
            "test_drop_vs_keras_deepest_points": 100
            * (keras_test.deepest_accuracy - keras_on_file.accuracy),
        },
    }


def run(target_drop, budget_fraction, argv=None):
    """Calibrates, evaluates and times; writes calibration.json and two PNGs."""
    quick = FLAGS.quick
    network, data = common.reference()
    print("collecting outputs (one pass over validation and test) ...", flush=True)
    val_outputs = tfee.collect_outputs(network, data.pipeline("validation"))
    test_outputs = tfee.collect_outputs(network, data.pipeline("test"))

    print("calibrating ...", flush=True)
    started = time.perf_counter()
    policy = tfee.calibrate(val_outputs, max_accuracy_drop=target_drop)
    val_seconds = time.perf_counter() - started
    val_result = tfee.evaluate(val_outputs, policy=policy)
    test_result = tfee.evaluate(test_outputs, policy=policy)
    oracle_macs = tfee.policy.oracle_macs_at_accuracy(
        test_outputs, test_result.accuracy
    )
    oracle_macs_deepest = tfee.policy.oracle_macs_at_accuracy(
        test_outputs, test_result.accuracy, hopeless_at_deepest=True
    )
    budget_policy = tfee.calibrate(val_outputs, macs_budget=budget_fraction)
    budget_test = tfee.evaluate(test_outputs, policy=budget_policy)
    budget_ratio = over_oracle(test_outputs, budget_test)
    shared_policy = tfee.calibrate(
        val_outputs, max_accuracy_drop=target_drop, refine=False
    )
    shared_test = tfee.evaluate(test_outputs, policy=shared_policy)
    # The same target under the other logit rules (learned needs such heads)
    # and the learned decision (fitted on validation, like the thresholds).
    # With ZTW's learned ensemble (`+ensemble`) the drop is measured against
    # the ensemble's own deepest answer.
    other_rules = {}
    for name in (
        "entropy",
        "margin",
        tfee.rules.DECISION,
        "max_softmax+ensemble",
        f"{tfee.rules.DECISION}+ensemble",
    ):
        rule, ensemble = name.split("+")[0], name.endswith("+ensemble")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", tfee.policy.UnreachableTargetWarning)
            ruled = tfee.calibrate(
                val_outputs, rule=rule, max_accuracy_drop=target_drop, ensemble=ensemble
            )
        evaluated = tfee.evaluate(test_outputs, policy=ruled)
        # The oracle over the answers the samples get (the ensemble's, if any).
        answered = ruled.ensemble.outputs(test_outputs) if ensemble else test_outputs
        other_rules[name] = {
            "policy": ruled.to_dict(),
            "test": summary(evaluated),
            "policy_over_oracle_macs_at_its_accuracy": over_oracle(answered, evaluated),
        }
    confident_policy = tfee.calibrate(
        val_outputs, max_accuracy_drop=target_drop, confidence=FLAGS.confidence
    )
    confident_test = tfee.evaluate(test_outputs, policy=confident_policy)
    confident_ratio = over_oracle(test_outputs, confident_test)
    # Every logit rule (and patience) fitted to the test labels themselves:
    # how close to the oracle calibration could come if it knew the test set.
    hindsight = {}
    for rule in ("max_softmax", "entropy", "margin", "patience", tfee.rules.DECISION):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", tfee.policy.UnreachableTargetWarning)
            fitted = tfee.calibrate(
                test_outputs, rule=rule, max_accuracy_drop=target_drop
            )
        evaluated = tfee.evaluate(test_outputs, policy=fitted)
        hindsight[rule] = {
            "test": summary(evaluated),
            "policy_over_oracle_macs_at_its_accuracy": over_oracle(
                test_outputs, evaluated
            ),
        }
    timing_outputs = (
        test_outputs
        if test_outputs.num_samples == 10000
        else resampled(test_outputs, 10000)
    )
    seconds_10k = timing.median_seconds(
        lambda: tfee.calibrate(timing_outputs, max_accuracy_drop=target_drop)
    )

    print("timing dynamic inference against the full model ...", flush=True)
    test_images = data.normalised("test")
    predictor = tfee.DynamicPredictor(network, policy)
    spec = tf.TensorSpec([None, *network.input_shape[1:]], tf.float32)
    full = tf.function(lambda x: network(x, training=False), input_signature=[spec])

    backbone = tfee.detach_exits(network)
    plain = tf.function(lambda x: backbone(x, training=False), input_signature=[spec])

    def run_full(batch):
        return [o.numpy() for o in full(batch)]

    def run_backbone(batch):
        return plain(batch).numpy()

    def run_dynamic(batch):
        return predictor.predict_batch(batch)

    for size in (1, 128):
        run_full(test_images[:size])
        run_backbone(test_images[:size])
        run_dynamic(test_images[:size])
    ones = [
        test_images[i : i + 1]
        for i in range(min(FLAGS.batch1_samples, len(test_images)))
    ]
    timed = {"dynamic": run_dynamic, "backbone": run_backbone, "full": run_full}
    dynamic_1, backbone_1, full_1 = timing.medians(
        timing.time_alternately(timed, ones)
    ).values()
    batches = [
        test_images[i : i + 128]
        for i in range(0, min(len(test_images), 128 * FLAGS.batch128_batches), 128)
        if len(test_images[i : i + 128]) == 128
    ]
    dynamic_128, backbone_128, full_128 = timing.medians(
        timing.time_alternately(timed, batches)
    ).values()
    check = predictor.predict(test_images[:512], batch_size=128)
    expected = policy.exit_indices(test_outputs.logits[:, :512])
    same_exits = float(np.mean(check.exit_indices == expected))
    check_1 = predictor.predict(test_images[:512], batch_size=1)
    same_exits_1 = float(np.mean(check_1.exit_indices == expected))

    print("calibrating on the int8 file's own outputs ...", flush=True)
    int8_file = int8_file_section(
        network,
        data.normalised("validation"),
        data.validation[1],
        test_images,
        data.test[1],
        policy,
        target_drop,
        test_result,
    )

    macs_fraction = test_result.macs_fraction
    ratio = None if oracle_macs is None else test_result.mean_macs / oracle_macs
    result = {
        "setup": common.setup(),
        "target": {"max_accuracy_drop": target_drop, "calibrated_on": "validation"},
        "policy": policy.to_dict(),
        "validation": summary(val_result),
        "test": summary(test_result),
        "test_exit_accuracy_of_leavers": test_result.exit_accuracy,
        "test_single_exit_accuracy": test_result.single_exit_accuracy,
        "test_oracle": {
            "accuracy": test_result.oracle.accuracy,
            "macs_fraction": test_result.oracle.macs_fraction,
        },
        "test_oracle_at_policy_accuracy": {
            "definition": "least mean MACs of any label-aware exit assignment with at "
            "least the policy's test accuracy (tfee.policy.oracle_macs_at_accuracy)",
            "macs_fraction": (
                None if oracle_macs is None else oracle_macs / test_outputs.full_macs
            ),
            "policy_over_oracle_macs": ratio,
            "with_hopeless_samples_at_deepest": {
                "definition": "the same, but samples no exit gets right pay the "
                "deepest exit (the plain oracle's convention); not a strict bound",
                "macs_fraction": (
                    None
                    if oracle_macs_deepest is None
                    else oracle_macs_deepest / test_outputs.full_macs
                ),
                "policy_over_oracle_macs": (
                    None
                    if oracle_macs_deepest is None
                    else test_result.mean_macs / oracle_macs_deepest
                ),
            },
            "policy_over_plain_oracle_macs": test_result.mean_macs
            / test_result.oracle.mean_macs,
        },
        "checks": {
            "test_drop_within_target_points": 100 * test_result.accuracy_drop
            <= 100 * target_drop + 1e-9,
            f"macs_fraction_at_most_{MAX_MACS_FRACTION}": macs_fraction
            <= MAX_MACS_FRACTION,
            f"oracle_ratio_at_most_{MAX_ORACLE_RATIO}": ratio is not None
            and ratio <= MAX_ORACLE_RATIO,
        },
        "shared_threshold_only": {
            "policy": shared_policy.to_dict(),
            "test": summary(shared_test),
        },
        "budget_target": {
            "macs_budget": budget_fraction,
            "policy": budget_policy.to_dict(),
            "validation_macs_fraction": tfee.evaluate(
                val_outputs, policy=budget_policy
            ).macs_fraction,
            "test": summary(budget_test),
            "policy_over_oracle_macs_at_its_accuracy": budget_ratio,
            "checks": {
                "test_drop_within_target_points": 100 * budget_test.accuracy_drop
                <= 100 * target_drop + 1e-9,
                f"macs_fraction_at_most_{MAX_MACS_FRACTION}": budget_test.macs_fraction
                <= MAX_MACS_FRACTION,
                f"oracle_ratio_at_most_{MAX_ORACLE_RATIO}": budget_ratio is not None
                and budget_ratio <= MAX_ORACLE_RATIO,
            },
        },
        "confidence_target": {
            "max_accuracy_drop": target_drop,
            "confidence": FLAGS.confidence,
            "policy": confident_policy.to_dict(),
            "validation": summary(tfee.evaluate(val_outputs, policy=confident_policy)),
            "test": summary(confident_test),
            "policy_over_oracle_macs_at_its_accuracy": confident_ratio,
            "checks": {
                "test_drop_within_target_points": 100 * confident_test.accuracy_drop
                <= 100 * target_drop + 1e-9,
                f"macs_fraction_at_most_{MAX_MACS_FRACTION}": (
                    confident_test.macs_fraction <= MAX_MACS_FRACTION
                ),
            },
        },
        "other_rules": other_rules,
        "hindsight_calibrated_on_test": {
            "note": "thresholds (or the patience) chosen on the test split itself "
            "for the same drop target: what calibration could reach at best, "
            "not a result",
            "rules": hindsight,
        },
        "calibration_seconds": {
            "validation": val_seconds,
            "validation_samples": val_outputs.num_samples,
            "samples_10000_exits_7_median_of_3": seconds_10k,
            "timing_data": (
                "test outputs"
                if timing_outputs is test_outputs
                else "10,000 samples resampled from the test outputs"
            ),
            "exits": test_outputs.num_exits,
        },
        "dynamic_inference": {
            "note": "TensorFlow on CPU: DynamicPredictor (batch 1: one XLA-compiled "
            "graph of tf.conds; batch 128: tf.function per stage, survivors only) vs "
            "the backbone without exits (the full model) and vs the full early-exit "
            "network (every head), tf.function each, order rotated, medians",
            "batch1_samples": len(ones),
            "batch1_dynamic_ms": 1000 * dynamic_1,
            "batch1_backbone_ms": 1000 * backbone_1,
            "batch1_all_exits_ms": 1000 * full_1,
            "batch1_speedup_vs_backbone": backbone_1 / dynamic_1,
            "batch128_batches": len(batches),
            "batch128_dynamic_ms": 1000 * dynamic_128,
            "batch128_backbone_ms": 1000 * backbone_128,
            "batch128_all_exits_ms": 1000 * full_128,
            "batch128_speedup_vs_backbone": backbone_128 / dynamic_128,
            "exit_indices_equal_policy_on_first_512": same_exits,
            "batch1_exit_indices_equal_policy_on_first_512": same_exits_1,
        },
        "int8_file": int8_file,
        "full_macs": test_outputs.full_macs,
        "exit_macs": test_outputs.exit_macs.tolist(),
        "record": common.machine_record(argv),
    }
    tag = "_quick" if quick else ""
    common.write_result(f"calibration{tag}", result)
    front = tfee.policy.front(test_outputs, refine=True)
    report.plot_front(
        os.path.join(common.results_dir(), f"calibration_accuracy_vs_macs{tag}.png"),
        test_result,
        front,
        title="CIFAR-10 ResNet-20, 7 SDN exits: test split"
        + (" (quick)" if quick else ""),
    )
    report.plot_exit_histogram(
        os.path.join(common.results_dir(), f"calibration_exit_histogram{tag}.png"),
        test_result,
        title="exits taken on test (policy calibrated on validation)",
    )
    print(report.text_table(test_result))
    print(
        common.summary_line(
            result,
            [
                "test",
                "test_oracle_at_policy_accuracy",
                "checks",
                "confidence_target",
                "calibration_seconds",
                "dynamic_inference",
            ],
        )
    )
    return result


def main(argv):
    run(FLAGS.target_drop, FLAGS.budget_fraction, argv)


if __name__ == "__main__":
    app.run(main)
