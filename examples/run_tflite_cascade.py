"""Run an exported .tflite as an early-exit cascade on LiteRT, on real data.

    .venv/bin/python examples/run_tflite_cascade.py \
        --model=/tmp/tfee-chain/net_int8.tflite --data=../shared/datasets/cifar10 \
        --output_dir=/tmp/tfee-chain

Runs --data's test split through the file's stage chain, one sample at a time
by default (as a device would), and reports accuracy, how many samples each
exit answered, the mean MACs as a percentage of the full network's MACs (the
file's `full_macs`: the backbone alone, no heads) and the mean
latency measured on this machine beside the full model's (`Cascade.profile`
times the file's exit_K on up to 200 test images); writes
cascade_summary.json and a plot of the exits' shares. The policy is --policy (a JSON
saved by calibrate.py) when given, else the one embedded in the file
(`tfee.export.tflite(policy=...)`), else a shared --threshold on max softmax.
"""

import os
import sys
import time

from absl import flags

if not __package__:  # Run as a script: make `examples` importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from examples import shell  # noqa: E402

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(shell)  # --help lists the shared flags too
BINARY = "run_tflite_cascade"

flags.DEFINE_float(
    "threshold",
    0.9,
    "Shared max-softmax threshold, for files that embed no policy and no --policy.",
)
flags.DEFINE_integer("cascade_batch", 1, "Samples run together (1 = on device).")


def summarize(cascade, result, labels):
    """The summary dict: accuracy, samples per exit, mean MACs and their
    fraction of the full network's MACs (the metadata's `full_macs`)."""
    import numpy as np

    counts = np.bincount(result.exit_indices, minlength=cascade.num_exits)
    summary = {
        "samples": int(len(labels)),
        "accuracy": float(np.mean(result.predictions == labels)),
        "samples_per_exit": {f"exit_{k}": int(c) for k, c in enumerate(counts, 1)},
    }
    macs = [e["cumulative_macs"] for e in cascade.metadata["exits"]]
    full_macs = cascade.metadata.get("full_macs")
    if None not in macs and full_macs:
        summary["mean_macs"] = float(result.mean_macs)
        summary["full_macs"] = int(full_macs)
        summary["macs_fraction"] = float(result.mean_macs / full_macs)
    return summary


def latency(cascade, images, seconds):
    """The measured mean latency per sample, and at batch 1 the full model's
    (exit_K, timed by `Cascade.profile` where the file has it)."""
    measured = {"mean_latency_ms": 1e3 * seconds / len(images)}
    if FLAGS.cascade_batch == 1:
        full = cascade.profile(images[:200], warmup=5).full_cost
        if full is not None:
            measured["full_model_ms"] = full
            measured["latency_fraction"] = measured["mean_latency_ms"] / full
    return measured


def summary_lines(summary):
    lines = [
        f"accuracy: {100 * summary['accuracy']:.2f}% on {summary['samples']} samples"
    ]
    for name, count in summary["samples_per_exit"].items():
        lines.append(f"{name}: {count} samples")
    if "mean_macs" in summary:
        lines.append(
            f"mean MACs: {summary['mean_macs']:,.0f} "
            f"({100 * summary['macs_fraction']:.1f}% of the full network's MACs)"
        )
    line = f"mean latency: {summary['mean_latency_ms']:.3f} ms per sample"
    if "full_model_ms" in summary:
        line += (
            f" ({100 * summary['latency_fraction']:.1f}% of the full model's "
            f"{summary['full_model_ms']:.3f} ms, measured on this machine)"
        )
    lines.append(line)
    return lines


def main(argv):
    import tfee
    from tfee.policy import ThresholdPolicy
    from tfee.policy import load_policy

    shell.no_arguments(argv)
    if not FLAGS.model.endswith(".tflite") or not os.path.isfile(FLAGS.model):
        raise shell.CommandError(
            f"--model must be an existing .tflite from export_tflite.py. "
            f"Received: {FLAGS.model!r}"
        )
    output_dir = shell.output_dir(BINARY)
    metadata = tfee.runtime.read_metadata(FLAGS.model)
    if FLAGS["threshold"].present and (FLAGS.policy or metadata.get("policy")):
        raise shell.CommandError(
            f"--threshold={FLAGS.threshold} applies only to files without a policy, "
            f"and {'--policy gives one' if FLAGS.policy else 'the file embeds one'}; "
            "give --threshold alone on a file without a policy, or replace the "
            "embedded one with tfee.export.set_policy"
        )
    if FLAGS.policy:
        policy = load_policy(FLAGS.policy)
    elif metadata.get("policy") is not None:
        policy = None  # The cascade uses the file's own.
    else:
        policy = ThresholdPolicy.shared(FLAGS.threshold, metadata.get("num_exits", 2))
    cascade = tfee.Cascade(FLAGS.model, policy)
    data = shell.check_classes(
        cascade.num_classes, shell.load_data(tuple(cascade.input_shape))
    )
    images, labels = shell.arrays(data.test)
    shell.progress(
        BINARY, f"running {len(images)} test samples, {FLAGS.cascade_batch} at a time"
    )
    started = time.perf_counter()
    result = cascade.predict(images, batch_size=FLAGS.cascade_batch)
    seconds = time.perf_counter() - started
    summary = {
        **shell.labels(BINARY, "test"),
        "policy": repr(cascade.policy),
        **summarize(cascade, result, labels),
        **latency(cascade, images, seconds),
    }
    shell.write_summary(output_dir, "cascade_summary.json", summary)
    tfee.report.plot_exit_shares(
        os.path.join(output_dir, "cascade_exits.png"),
        [c / summary["samples"] for c in summary["samples_per_exit"].values()],
        title=f"{shell.title(BINARY, 'test')}: accuracy "
        f"{100 * summary['accuracy']:.1f}%",
    )
    print(f"policy: {cascade.policy!r}")
    for line in summary_lines(summary):
        print(line)


if __name__ == "__main__":
    shell.run(main)
