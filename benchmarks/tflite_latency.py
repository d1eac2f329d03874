"""LiteRT latency of the early-exit cascade against the full model (BENCHMARK.md).

Loads the trained reference network (never trains it: it stops while
/tmp/tfee-reference/reference_full.keras is missing), calibrates max-softmax
thresholds on the validation split for at most --latency_target_drop
accuracy loss versus the deepest exit (the operating point of
benchmarks/calibration.py), exports one float32 .tflite with the stage
signatures and exit_K, and times on LiteRT, batch 1, one thread, over
--samples test images: the cascade (`tfee.export.Cascade`, policy included)
and the full model (the single exit_K signature), alternating the two sample
by sample, medians and means. A third timing, "stages_only", replays the
stage signatures each sample ran in the cascade without the Python policy
between them: the staging cost an on-device loop pays, apart from this
Python runner's bookkeeping. The cascade's MACs ratio is the mean MACs of
the exits it actually took over the full network's MACs. Goal: cascade mean
latency / full mean latency <= MACs ratio + 0.10.

    .venv/bin/python -m benchmarks.tflite_latency            # reference network
    .venv/bin/python -m benchmarks.tflite_latency --quick    # smoke check only
"""

import os
import statistics
import tempfile
import time

import numpy as np
from absl import app
from absl import flags

import tfee
import tfee.export
import tfee.policy
from benchmarks import reference
from tfee.export._litert import SignatureCall

FLAGS = flags.FLAGS
flags.DEFINE_float(
    "latency_target_drop", 0.005, "Accepted accuracy drop vs the deepest exit."
)
flags.DEFINE_integer("samples", 2000, "Test samples timed (at least 1,000).")
flags.DEFINE_enum(
    "latency_quantize", "float32", list(tfee.export.QUANTIZATIONS), "Model variant."
)
flags.DEFINE_string("latency_results_dir", reference.RESULTS, "Where the JSON goes.")

GOAL_MARGIN = 0.10


def normalised(images, mean, std):
    return ((images.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)


def time_alternately(runs, images, warmup=20):
    """Per-sample seconds of each `runs[name](i, batch)`, rotating their order."""
    names = list(runs)
    for i, image in enumerate(images[:warmup]):
        for name in names:
            runs[name](i, image[None])
    times = {name: [] for name in names}
    for i, image in enumerate(images):
        batch = image[None]
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            runs[name](i, batch)
            times[name].append(time.perf_counter() - start)
    return times


def main(argv):
    from ai_edge_litert.interpreter import Interpreter

    tag = "quick" if FLAGS.quick else "full"
    path = reference.wait_for_network(FLAGS.cache_dir, FLAGS.quick)
    network = tfee.keras.models.load_model(path)
    splits, mean, std = reference.reference_data(
        FLAGS.archive, FLAGS.cache_dir, FLAGS.quick
    )
    validation = (
        normalised(splits["validation"][0], mean, std),
        splits["validation"][1],
    )
    # The test folder is sorted by class: time a seeded sample of all classes.
    chosen = np.random.default_rng(0).permutation(len(splits["test"][1]))[
        : FLAGS.samples
    ]
    test_x = normalised(splits["test"][0][chosen], mean, std)
    test_y = splits["test"][1][chosen]
    print(f"calibrating on {len(validation[1])} validation images ...", flush=True)
    policy = tfee.policy.calibrate(
        tfee.policy.collect_outputs(network, validation),
        max_accuracy_drop=FLAGS.latency_target_drop,
    )
    print(f"policy: {policy}", flush=True)
    num_exits = len(tfee.exits(network))
    with tempfile.TemporaryDirectory() as directory:
        tflite_path = os.path.join(directory, "reference.tflite")
        names = [f"exit_{num_exits}"] + [f"stage_{k}" for k in range(1, num_exits + 1)]
        print(f"exporting {FLAGS.latency_quantize} .tflite ...", flush=True)
        export = tfee.export.tflite(
            network,
            tflite_path,
            quantize=FLAGS.latency_quantize,
            representative=validation[0][:256],
            signatures=names,
        )
        cascade = tfee.export.Cascade(tflite_path, policy, num_threads=1)
        # Full model, cascade and stage replay all call LiteRT the same lean
        # way (tfee.export._litert.SignatureCall), so the ratio compares
        # the networks, not two ways of calling them.
        interpreter = Interpreter(model_path=tflite_path, num_threads=1)
        full_call = SignatureCall(interpreter, f"exit_{num_exits}", "image", ["logits"])
        image_details = full_call.input_details
        logits_details = full_call.output_details["logits"]

        def full(batch):
            values = tfee.export.runtime.quantize_input(batch, image_details)
            return tfee.export.runtime.dequantize_output(
                full_call(values)[0], logits_details
            )

        predictions, exit_indices = cascade.predict(test_x, batch_size=1)
        full_predictions = np.concatenate(
            [np.argmax(full(test_x[i : i + 1]), -1) for i in range(len(test_x))]
        )
        stage_calls = [
            SignatureCall(
                interpreter,
                f"stage_{k}",
                "image" if k == 1 else f"features_{k - 1}",
                [f"features_{k}"] if k < num_exits else ["logits"],
            )
            for k in range(1, num_exits + 1)
        ]

        def stages_only(index, batch):
            # The stage signatures the cascade ran for this sample, with no
            # Python policy between them: what an on-device loop pays.
            values = tfee.export.runtime.quantize_input(batch, image_details)
            for k in range(exit_indices[index] + 1):
                values = stage_calls[k](values)[0]

        print(f"timing {len(test_x)} samples, alternating ...", flush=True)
        times = time_alternately(
            {
                "full": lambda i, batch: full(batch),
                "cascade": lambda i, batch: cascade.run_batch(batch),
                "stages_only": stages_only,
            },
            test_x,
        )
        full_times, cascade_times = times["full"], times["cascade"]
        stage_times = times["stages_only"]
    exits = tfee.exits(network)
    full_macs = tfee.cost.analyze(network).full_macs
    cumulative = np.array([e.cumulative_macs for e in exits], np.float64)
    macs_ratio = float(np.mean(cumulative[exit_indices]) / full_macs)
    full_mean, cascade_mean = statistics.mean(full_times), statistics.mean(
        cascade_times
    )
    ratio = cascade_mean / full_mean
    result = {
        "setup": (
            "reference" if not FLAGS.quick else "quick (smoke check only, not a result)"
        ),
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
        "cascade_accuracy": float(np.mean(predictions == test_y)),
        "full_accuracy": float(np.mean(full_predictions == test_y)),
        "exit_histogram": np.bincount(exit_indices, minlength=num_exits).tolist(),
        "full_latency_ms": {
            "median": 1e3 * statistics.median(full_times),
            "mean": 1e3 * full_mean,
        },
        "cascade_latency_ms": {
            "median": 1e3 * statistics.median(cascade_times),
            "mean": 1e3 * cascade_mean,
        },
        "stages_only_latency_ms": {
            "median": 1e3 * statistics.median(stage_times),
            "mean": 1e3 * statistics.mean(stage_times),
        },
        "stages_only_ratio_of_means": statistics.mean(stage_times) / full_mean,
        "latency_ratio_of_means": ratio,
        "latency_ratio_of_medians": statistics.median(cascade_times)
        / statistics.median(full_times),
        "macs_ratio": macs_ratio,
        "goal": f"latency_ratio_of_means <= macs_ratio + {GOAL_MARGIN}",
        "goal_met": bool(ratio <= macs_ratio + GOAL_MARGIN),
        "record": reference.machine_record(argv),
    }
    os.makedirs(FLAGS.latency_results_dir, exist_ok=True)
    out = os.path.join(FLAGS.latency_results_dir, f"tflite_latency_{tag}.json")
    tfee.report.write_json(out, result)
    print(
        f"\nfull (exit_{num_exits}): median {result['full_latency_ms']['median']:.3f} ms, "
        f"mean {result['full_latency_ms']['mean']:.3f} ms\n"
        f"cascade:        median {result['cascade_latency_ms']['median']:.3f} ms, "
        f"mean {result['cascade_latency_ms']['mean']:.3f} ms\n"
        f"latency ratio (means) {ratio:.3f}, MACs ratio {macs_ratio:.3f}, goal "
        f"<= {macs_ratio + GOAL_MARGIN:.3f}: {'met' if result['goal_met'] else 'NOT met'}\n"
        f"stage signatures alone (no Python policy): mean "
        f"{result['stages_only_latency_ms']['mean']:.3f} ms, ratio "
        f"{result['stages_only_ratio_of_means']:.3f}\n"
        f"accuracy: cascade {100 * result['cascade_accuracy']:.2f}%, full "
        f"{100 * result['full_accuracy']:.2f}%; exits {result['exit_histogram']}\n"
        f"written: {out}"
    )


if __name__ == "__main__":
    app.run(main)
