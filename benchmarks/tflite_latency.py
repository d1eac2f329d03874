"""LiteRT latency of the early-exit cascade against the full model (BENCHMARK.md).

Loads the trained reference network (never trains it: it stops while
/tmp/tfee-reference/reference_full.keras is missing), calibrates max-softmax
thresholds on the validation split for at most --latency_target_drop
accuracy loss versus the deepest exit (the operating point of
benchmarks/calibration.py), exports one float32 .tflite with the stage
signatures and exit_K, and times on LiteRT, batch 1, one thread, over
--samples test images: the cascade (`tfee.runtime.Cascade(path,
policy).predict(image, batch_size=1)`, policy included) and the full model
(the single exit_K signature through LiteRT's signature runner), alternating
the two sample by sample, medians and means. The cascade's MACs ratio is
the mean MACs of the exits it actually took over the full network's MACs.
Goal: cascade mean latency / full mean latency <= MACs ratio + 0.10.

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
flags.DEFINE_enum(
    "latency_quantize", "float32", list(tfee.export.QUANTIZATIONS), "Model variant."
)
flags.DEFINE_alias("latency_results_dir", "results_dir")

GOAL_MARGIN = 0.10
WARMUP = 20


def run(argv=None):
    """Calibrates, exports and times; writes tflite_latency_<tag>.json."""
    network, data = common.reference()
    validation = (data.normalised("validation"), data.validation[1])
    # The test folder is sorted by class: time a seeded sample of all classes.
    chosen = np.random.default_rng(0).permutation(len(data.test[1]))[: FLAGS.samples]
    test_x = data.normalised("test")[chosen]
    test_y = data.test[1][chosen]
    print(f"calibrating on {len(validation[1])} validation images ...", flush=True)
    policy = tfee.policy.calibrate(
        tfee.policy.collect_outputs(network, validation),
        max_accuracy_drop=FLAGS.latency_target_drop,
    )
    print(f"policy: {policy}", flush=True)
    num_exits = len(tfee.exits(network))
    deepest = naming.exit_name(num_exits)
    with tempfile.TemporaryDirectory() as directory:
        tflite_path = os.path.join(directory, "reference.tflite")
        names = [deepest] + [naming.stage_name(k) for k in range(1, num_exits + 1)]
        print(f"exporting {FLAGS.latency_quantize} .tflite ...", flush=True)
        export = tfee.export.tflite(
            network,
            tflite_path,
            quantize=FLAGS.latency_quantize,
            representative=validation[0][:256],
            signatures=names,
        )
        cascade = tfee.runtime.Cascade(tflite_path, policy, num_threads=1)
        full = common.signature_function(tflite_path, deepest)
        answers = cascade.predict(test_x, batch_size=1)
        full_predictions = np.concatenate(
            [np.argmax(full(test_x[i : i + 1]), -1) for i in range(len(test_x))]
        )
        print(f"timing {len(test_x)} samples, alternating ...", flush=True)
        times = timing.time_alternately(
            {
                "full": lambda i: full(test_x[i : i + 1]),
                "cascade": lambda i: cascade.predict(test_x[i : i + 1], batch_size=1),
            },
            range(len(test_x)),
            warmup=WARMUP,
        )
    full_times, cascade_times = times["full"], times["cascade"]
    exit_indices = answers.exit_indices
    full_macs = tfee.cost.analyze(network).full_macs
    cumulative = np.array([e.cumulative_macs for e in tfee.exits(network)], float)
    macs_ratio = float(np.mean(cumulative[exit_indices]) / full_macs)
    full_mean = statistics.mean(full_times)
    cascade_mean = statistics.mean(cascade_times)
    ratio = cascade_mean / full_mean
    median = timing.medians(times)
    result = {
        "setup": common.setup(),
        "runtime": "LiteRT (ai-edge-litert) CPU, batch 1, 1 thread",
        "quantize": FLAGS.latency_quantize,
        "samples": len(test_x),
        "policy": policy.to_dict(),
        "operating_point": {
            "calibrated_on": "validation",
            "max_accuracy_drop": FLAGS.latency_target_drop,
        },
        "file_bytes": export.bytes,
        "file_gzipped_bytes": export.gzipped_bytes,
        "cascade_accuracy": float(np.mean(answers.predictions == test_y)),
        "full_accuracy": float(np.mean(full_predictions == test_y)),
        "exit_histogram": np.bincount(exit_indices, minlength=num_exits).tolist(),
        "full_latency_ms": {"median": 1e3 * median["full"], "mean": 1e3 * full_mean},
        "cascade_latency_ms": {
            "median": 1e3 * median["cascade"],
            "mean": 1e3 * cascade_mean,
        },
        "latency_ratio_of_means": ratio,
        "latency_ratio_of_medians": median["cascade"] / median["full"],
        "macs_ratio": macs_ratio,
        "goal": f"latency_ratio_of_means <= macs_ratio + {GOAL_MARGIN}",
        "goal_met": bool(ratio <= macs_ratio + GOAL_MARGIN),
        "record": common.machine_record(argv),
    }
    tag = "quick" if FLAGS.quick else "full"
    out = common.write_result(f"tflite_latency_{tag}", result)
    print(
        f"\nfull ({deepest}): median {result['full_latency_ms']['median']:.3f} ms, "
        f"mean {result['full_latency_ms']['mean']:.3f} ms\n"
        f"cascade:        median {result['cascade_latency_ms']['median']:.3f} ms, "
        f"mean {result['cascade_latency_ms']['mean']:.3f} ms\n"
        f"latency ratio (means) {ratio:.3f}, MACs ratio {macs_ratio:.3f}, goal "
        f"<= {macs_ratio + GOAL_MARGIN:.3f}: {'met' if result['goal_met'] else 'NOT met'}\n"
        f"accuracy: cascade {100 * result['cascade_accuracy']:.2f}%, full "
        f"{100 * result['full_accuracy']:.2f}%; exits {result['exit_histogram']}\n"
        f"written: {out}"
    )
    return result


def main(argv):
    run(argv)


if __name__ == "__main__":
    app.run(main)
