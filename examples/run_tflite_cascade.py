"""Run an exported .tflite as an early-exit cascade on LiteRT.

    .venv/bin/python examples/run_tflite_cascade.py \
        --tflite /tmp/tfee-export/net_int8.tflite --max_softmax_threshold 0.9

Prints accuracy (with labels), how many samples each exit answered and the
mean MACs relative to the deepest exit. The policy is --policy_path (a policy
saved by `policy.save(...)`) when given, else the one embedded in the file
(`tfee.export.tflite(policy=...)`), else a shared --max_softmax_threshold.
"""

import numpy as np
from absl import app
from absl import flags

import tfee
import tfee.export
from tfee.policy import ThresholdPolicy
from tfee.policy import load_policy

FLAGS = flags.FLAGS
flags.DEFINE_string("tflite", "/tmp/tfee-export/net_float32.tflite", "The .tflite.")
flags.DEFINE_string(
    "policy_path", "", "A saved policy JSON; overrides --max_softmax_threshold."
)
flags.DEFINE_float(
    "max_softmax_threshold",
    0.9,
    "Shared max-softmax threshold, for files that embed no policy.",
)
flags.DEFINE_enum(
    "test_data", "digits", ["digits", "random"], "Test images (random: smoke tests)."
)
flags.DEFINE_integer("cascade_batch", 1, "Samples run together (1 = on device).")
flags.DEFINE_integer("data_seed", 0, "Seed of the digits split / random images.")


def load_test_data(data, input_shape, seed, count=64):
    """(images, labels or None)."""
    if data == "random":
        rng = np.random.default_rng(seed)
        return rng.random((count,) + tuple(input_shape), dtype=np.float32), None
    _, _, test = tfee.data.digits(seed=seed)
    images = np.concatenate([x for x, _ in test])
    labels = np.concatenate([y for _, y in test])
    return images, labels


def summarize(cascade, result, labels):
    """Printable lines: accuracy, exits, mean MACs fraction."""
    lines = []
    if labels is not None:
        lines.append(f"accuracy: {100 * np.mean(result.predictions == labels):.2f}%")
    counts = np.bincount(result.exit_indices, minlength=cascade.num_exits)
    for k, count in enumerate(counts, start=1):
        lines.append(f"exit_{k}: {count} samples")
    macs = [e["cumulative_macs"] for e in cascade.metadata["exits"]]
    if None not in macs:
        mean = result.mean_macs
        lines.append(f"mean MACs: {mean:,.0f} ({100 * mean / macs[-1]:.1f}% of exit_K)")
    return lines


def main(argv):
    del argv
    metadata = tfee.runtime.read_metadata(FLAGS.tflite)
    if FLAGS.policy_path:
        policy = load_policy(FLAGS.policy_path)
    elif metadata.get("policy") is not None:
        policy = None  # The cascade uses the file's own.
    else:
        exits = metadata.get("num_exits", 2)
        policy = ThresholdPolicy.shared(FLAGS.max_softmax_threshold, exits)
    cascade = tfee.runtime.Cascade(FLAGS.tflite, policy)
    print(f"policy: {cascade.policy!r}")
    images, labels = load_test_data(
        FLAGS.test_data, cascade.input_shape, FLAGS.data_seed
    )
    result = cascade.predict(images, batch_size=FLAGS.cascade_batch)
    for line in summarize(cascade, result, labels):
        print(line)


if __name__ == "__main__":
    app.run(main)
