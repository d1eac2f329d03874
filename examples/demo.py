"""End-to-end demo on embedded data: backbone -> exits -> training -> policy.

Runs offline in under a minute on 2 CPU cores and writes the accuracy-vs-MACs
plot of the calibrated cascade to OUTPUT_DIR (default /tmp/tfee-demo). Its
exits use light linear heads (global pooling + dense) unless --head says
otherwise: the shallow exit is then right on the easy digits only, so the
calibrated cascade sends samples to every exit and trades a little accuracy
for much less compute (with SDN heads every digit leaves at exit 1):

    python3 dev.py demo            # or: .venv/bin/python examples/demo.py
"""

import os
import sys

from absl import flags

if not __package__:  # Run as a script: make `examples` importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from examples import shell  # noqa: E402

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(shell)  # --help lists the shared flags too
BINARY = "demo"
DEFAULT_EPOCHS = 40
DEFAULT_HEAD = "linear"


def run_demo(data, epochs, head, seed, output_dir=None, verbose=2, title=None):
    """Trains a small CNN with two early exits on `data`.

    Returns:
      (rows, full_macs, evaluation): per-exit (ExitInfo, test accuracy) rows,
      the backbone's MACs, and the test `Evaluation` of a max-softmax policy
      calibrated on the validation split for at most 1 point of accuracy loss.
      With `output_dir`, the report (table, JSON, accuracy-vs-MACs plot and
      exit histogram) is written there.
    """
    import tfee

    network = tfee.recipes.train_small_network(
        data, epochs, head=head, seed=seed, verbose=verbose
    )
    accuracy = tfee.exit_accuracy(network, data.test)
    rows = list(zip(tfee.exits(network), accuracy.exits.values()))
    policy = tfee.calibrate(network, data.validation, max_accuracy_drop=0.01)
    test_outputs = tfee.collect_outputs(network, data.test)
    evaluation = tfee.evaluate(test_outputs, policy=policy)
    if output_dir:
        tfee.report.write_report(
            output_dir,
            evaluation,
            tfee.policy.front(test_outputs, rule=policy.rule),
            extra={"policy": policy.to_dict()},
            prefix="test_",
            title=title,
        )
    return rows, tfee.cost.analyze(network).full_macs, evaluation


def format_table(rows, full_macs):
    lines = [
        f"{'exit':<8}{'attached after':<16}{'head':<10}{'MACs':>10}{'% full MACs':>13}"
        f"{'test accuracy':>15}"
    ]
    for info, accuracy in rows:
        lines.append(
            f"{info.name:<8}{info.attach_layer:<16}{info.head_type:<10}"
            f"{info.cumulative_macs:>10,}"
            f"{100 * info.cumulative_macs / full_macs:>12.1f}%"
            f"{100 * accuracy:>14.1f}%"
        )
    lines.append(f"full network (backbone only): {full_macs:,} MACs per image")
    return "\n".join(lines)


def main(argv):
    shell.no_arguments(argv)
    head = FLAGS.head if FLAGS["head"].present else DEFAULT_HEAD
    shell.check_head(head)
    output_dir = shell.output_dir(BINARY)
    data = shell.load_data()
    shell.progress(
        BINARY, f"training on {FLAGS.data} for {shell.epochs(DEFAULT_EPOCHS)} epochs"
    )
    rows, full_macs, evaluation = run_demo(
        data,
        shell.epochs(DEFAULT_EPOCHS),
        head,
        FLAGS.seed,
        output_dir=output_dir,
        verbose=FLAGS.keras_verbose,
        title=shell.title(BINARY, "test"),
    )
    print(f"\nPer-exit accuracy on the held-out images ({evaluation.num_samples}):")
    print(format_table(rows, full_macs))
    print("\nEarly exit with thresholds calibrated on the validation split:")
    print(evaluation)
    shares = ", ".join(
        f"exit_{k}: {count}" for k, count in enumerate(evaluation.exit_counts, 1)
    )
    print(f"\nsamples leaving at each exit: {shares}")
    print(
        f"\naccuracy-vs-MACs plot: {os.path.join(output_dir, 'test_accuracy_vs_macs.png')}"
    )


if __name__ == "__main__":
    shell.run(main)
