"""LiteRT latency of the early-exit cascade against the full model (BENCHMARK.md).

Loads the trained reference network (never trains it: it stops while
/tmp/tfee-reference/reference_full.keras is missing) and, for float32 and
full int8 in one run: exports one .tflite with the stage signatures and
exit_K, calibrates max-softmax thresholds on the FILE's own validation
outputs (`Cascade(path).collect_outputs`: what the device computes; int8
logits differ from Keras') for at most --latency_target_drop accuracy loss
versus the file's deepest exit, and embeds that policy in the file
(`tfee.export.set_policy`). It then times on LiteRT, batch 1, one thread,
over --samples test images, all four calls alternating sample by sample:
each file's cascade (`tfee.runtime.Cascade(path).predict(image,
batch_size=1)`, engine and policy included) and its full model (the single
exit_K signature). A cascade's MACs ratio is the mean MACs of the exits it
took over the full network's MACs. Goal (issue 14, for int8; float32
reported beside it): cascade mean latency / full mean latency <= MACs ratio
+ 0.10.

    .venv/bin/python -m benchmarks.tflite_latency            # reference network
    .venv/bin/python -m benchmarks.tflite_latency --quick    # smoke check only
"""

import os
import statistics
import tempfile

import numpy as np
from absl import app
from absl import flags

import tfee
import tfee.export
import tfee.policy
import tfee.runtime
from benchmarks import common
from benchmarks import timing
from tfee import naming

FLAGS = flags.FLAGS
flags.DEFINE_float(
    "latency_target_drop", 0.005, "Accepted accuracy drop vs the deepest exit."
)
flags.DEFINE_integer("samples", 2000, "Test samples timed (at least 1,000).")
flags.DEFINE_alias("latency_results_dir", "results_dir")

GOAL_MARGIN = 0.10
WARMUP = 20
VARIANTS = ("float32", "int8")


def _variant(network, quantize, path, validation, test_x):
    """Exports, calibrates on the file's own outputs and embeds the policy.

    Returns:
      (cascade, full exit_K call, export report, policy).
    """
    num_exits = len(tfee.exits(network))
    deepest = naming.exit_name(num_exits)
    names = [deepest] + [naming.stage_name(k) for k in range(1, num_exits + 1)]
    print(f"exporting {quantize} .tflite ...", flush=True)
    export = tfee.export.tflite(
        network,
        path,
        quantize=quantize,
        representative=validation[0][:256],
        signatures=names,
    )
    print(f"calibrating on the {quantize} file's validation outputs ...", flush=True)
    outputs = tfee.runtime.Cascade(path).collect_outputs(*validation, batch_size=256)
    policy = tfee.policy.calibrate(outputs, max_accuracy_drop=FLAGS.latency_target_drop)
    tfee.export.set_policy(path, policy)
    print(f"{quantize} policy: {policy}", flush=True)
    cascade = tfee.runtime.Cascade(path, num_threads=1)
    return cascade, common.signature_function(path, deepest), export, policy


def _report(network, cascade, full, export, times, test_x, test_y, policy):
    """The JSON entry of one variant (its cascade and full timings)."""
    answers = cascade.predict(test_x, batch_size=1)
    full_predictions = np.concatenate(
        [np.argmax(full(test_x[i : i + 1]), -1) for i in range(len(test_x))]
    )
    num_exits = len(tfee.exits(network))
    full_macs = tfee.cost.analyze(network).full_macs
    cumulative = np.array([e.cumulative_macs for e in tfee.exits(network)], float)
    macs_ratio = float(np.mean(cumulative[answers.exit_indices]) / full_macs)
    full_times, cascade_times = times
    full_mean = statistics.mean(full_times)
    cascade_mean = statistics.mean(cascade_times)
    ratio = cascade_mean / full_mean
    full_median = statistics.median(full_times)
    cascade_median = statistics.median(cascade_times)
    return {
        "policy": policy.to_dict(),
        "file_bytes": export.bytes,
        "file_gzipped_bytes": export.gzipped_bytes,
        "cascade_accuracy": float(np.mean(answers.predictions == test_y)),
        "full_accuracy": float(np.mean(full_predictions == test_y)),
        "exit_histogram": np.bincount(
            answers.exit_indices, minlength=num_exits
        ).tolist(),
        "full_latency_ms": {"median": 1e3 * full_median, "mean": 1e3 * full_mean},
        "cascade_latency_ms": {
            "median": 1e3 * cascade_median,
            "mean": 1e3 * cascade_mean,
        },
        "latency_ratio_of_means": ratio,
        "latency_ratio_of_medians": cascade_median / full_median,
        "macs_ratio": macs_ratio,
        "goal": f"latency_ratio_of_means <= macs_ratio + {GOAL_MARGIN}",
        "goal_met": bool(ratio <= macs_ratio + GOAL_MARGIN),
    }


def run(argv=None):
    """Exports, calibrates and times both variants; writes tflite_latency_<tag>.json."""
    network, data = common.reference()
    validation = (data.normalised("validation"), data.validation[1])
    # The test folder is sorted by class: time a seeded sample of all classes.
    chosen = np.random.default_rng(0).permutation(len(data.test[1]))[: FLAGS.samples]
    test_x = data.normalised("test")[chosen]
    test_y = data.test[1][chosen]
    result = {
        "setup": common.setup(),
        "runtime": "LiteRT (ai-edge-litert) CPU, batch 1, 1 thread",
        "samples": len(test_x),
        "operating_point": {
            "calibrated_on": "validation outputs of each file itself",
            "max_accuracy_drop": FLAGS.latency_target_drop,
        },
    }
    with tempfile.TemporaryDirectory() as directory:
        variants = {
            q: _variant(
                network, q, os.path.join(directory, f"{q}.tflite"), validation, test_x
            )
            for q in VARIANTS
        }
        calls = {}
        for q, (cascade, full, _, _) in variants.items():
            calls[f"{q}_full"] = lambda i, full=full: full(test_x[i : i + 1])
            calls[f"{q}_cascade"] = lambda i, c=cascade: c.predict(
                test_x[i : i + 1], batch_size=1
            )
        print(f"timing {len(test_x)} samples, all four alternating ...", flush=True)
        times = timing.time_alternately(calls, range(len(test_x)), warmup=WARMUP)
        for q, (cascade, full, export, policy) in variants.items():
            result[q] = _report(
                network,
                cascade,
                full,
                export,
                (times[f"{q}_full"], times[f"{q}_cascade"]),
                test_x,
                test_y,
                policy,
            )
    result["record"] = common.machine_record(argv)
    for q in VARIANTS:
        entry = result[q]
        print(
            f"{q}: full median {entry['full_latency_ms']['median']:.3f} ms, cascade "
            f"median {entry['cascade_latency_ms']['median']:.3f} ms; latency ratio "
            f"(means) {entry['latency_ratio_of_means']:.3f}, MACs ratio "
            f"{entry['macs_ratio']:.3f}, goal <= "
            f"{entry['macs_ratio'] + GOAL_MARGIN:.3f}: "
            f"{'met' if entry['goal_met'] else 'NOT met'}; accuracy cascade "
            f"{100 * entry['cascade_accuracy']:.2f}%, full "
            f"{100 * entry['full_accuracy']:.2f}%; exits {entry['exit_histogram']}"
        )
    return common.finish("tflite_latency", result, list(VARIANTS))


def main(argv):
    run(argv)


if __name__ == "__main__":
    app.run(main)
