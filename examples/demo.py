"""End-to-end demo on embedded data: backbone -> exits -> training -> policy.

Runs offline in about a minute on 2 CPU cores:

    python3 dev.py demo            # or: .venv/bin/python examples/demo.py
"""

from absl import app
from absl import flags

import tfee

FLAGS = flags.FLAGS
flags.DEFINE_integer("epochs", 40, "Training epochs.")
flags.DEFINE_enum("head", "sdn", sorted(tfee.layers.HEAD_TYPES), "Exit head type.")
flags.DEFINE_integer("seed", 0, "Random seed for weights and data splits.")


def run_demo(epochs, head, seed):
    """Trains a small CNN with two early exits on the digits.

    Returns:
      (rows, full_macs, evaluation): per-exit (ExitInfo, test accuracy) rows,
      the backbone's MACs, and the test `Evaluation` of a max-softmax policy
      calibrated on the validation split for at most 1 point of accuracy loss.
    """
    network = tfee.recipes.train_digits_network(epochs, head=head, seed=seed)
    _, validation, test = tfee.data.digits(seed=seed)

    accuracy = tfee.exit_accuracy(network, test)
    rows = list(zip(tfee.exits(network), accuracy.exits.values()))
    policy = tfee.calibrate(network, validation, max_accuracy_drop=0.01)
    evaluation = tfee.evaluate(network, test, policy)
    return rows, tfee.cost.analyze(network).full_macs, evaluation


def format_table(rows, full_macs):
    lines = [
        f"{'exit':<8}{'attached after':<16}{'head':<10}{'MACs':>10}{'% of full':>11}"
        f"{'test accuracy':>15}"
    ]
    for info, accuracy in rows:
        lines.append(
            f"{info.name:<8}{info.attach_layer:<16}{info.head_type:<10}"
            f"{info.cumulative_macs:>10,}{100 * info.cumulative_macs / full_macs:>10.1f}%"
            f"{100 * accuracy:>14.1f}%"
        )
    lines.append(f"full network (backbone only): {full_macs:,} MACs per image")
    return "\n".join(lines)


def main(argv):
    del argv
    rows, full_macs, evaluation = run_demo(FLAGS.epochs, FLAGS.head, FLAGS.seed)
    print(
        f"\nPer-exit accuracy on the held-out digits ({evaluation.num_samples} images):"
    )
    print(format_table(rows, full_macs))
    print("\nEarly exit with thresholds calibrated on the validation split:")
    print(evaluation)


if __name__ == "__main__":
    app.run(main)
