"""Prunes one trained early-exit network "together" and "ordered" and plots
accuracy vs non-zero MACs of both (Görmez & Koyuncu 2022).

    .venv/bin/python examples/prune_early_exit.py --model=/tmp/tfee-chain/network.keras \
        --data=../shared/datasets/cifar10 --output_dir=/tmp/tfee-chain

Writes OUTPUT_DIR/pruned_together.keras and pruned_ordered.keras (stripped,
ready for cluster_sections.py --preserve_sparsity), curves.png and
curves.json (test split). --epochs is the fine-tuning per phase (default 2);
without --model a small network is trained on --data first. The cascade curve
is a max-softmax threshold sweep (one threshold for every exit; a sample
leaves at the first exit whose max softmax reaches it). Costs are the non-zero
MACs as a percentage of the full network's MACs (the dense backbone alone, no
heads), as in every other tfee report.
"""

import os
import sys

from absl import flags

if not __package__:  # Run as a script: make `examples` importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from examples import shell  # noqa: E402

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(shell)  # --help lists the shared flags too
BINARY = "prune_early_exit"
DEFAULT_EPOCHS = 2
flags.DEFINE_float("sparsity", 0.8, "Target sparsity in [0, 1).")


def cascade_curve(logits, labels, exit_costs, thresholds=None):
    """(accuracy, mean cost) of a max-softmax cascade for each threshold
    (default: 0, 0.05, ..., 1), one threshold shared by every exit; `exit_costs`
    is what leaving at each exit costs (here its fraction of the full network's
    MACs)."""
    import numpy as np

    import tfee

    thresholds = np.linspace(0, 1, 21) if thresholds is None else thresholds
    logits = np.stack(logits)
    points = []
    for threshold in thresholds:
        policy = tfee.ThresholdPolicy.shared(float(threshold), len(logits))
        chosen = policy.exit_indices(logits)
        predicted = np.argmax(logits[chosen, np.arange(len(labels))], axis=-1)
        points.append(
            (
                float(np.mean(predicted == labels)),
                float(np.mean(np.take(exit_costs, chosen))),
            )
        )
    return points


def run(network, data, prune_epochs, sparsity, output_dir, verbose=2, labels=None):
    """Prunes both ways, saves both, writes curves.png and curves.json.

    Returns:
      The curves JSON as a dict.
    """
    import numpy as np

    import tfee
    import tfee.compress

    test_labels = np.concatenate([y for _, y in data.test])
    exit_names = [s.exit_name for s in tfee.sections(network)]
    result = {**(labels or {}), "sparsity": sparsity, "orders": {}}
    for order in ("together", "ordered"):
        shell.progress(
            BINARY,
            f"pruning {order} to {100 * sparsity:.0f}%, {prune_epochs} epochs per phase",
        )
        pruned = tfee.compress.prune(
            network,
            data.train,
            sparsity,
            order=order,
            epochs=prune_epochs,
            verbose=verbose,
        )
        path = os.path.join(output_dir, f"pruned_{order}.keras")
        shell.save_network(pruned, path, data.class_names)
        report = tfee.compress.sparsity_report(pruned)
        outputs = dict(zip(pruned.output_names, pruned.predict(data.test, verbose=0)))
        logits = [outputs[name] for name in exit_names]
        fractions = [row["fraction_of_full"] for row in report.exits]
        result["orders"][order] = {
            "saved_model": path,
            "exit_accuracy": [
                float(np.mean(x.argmax(-1) == test_labels)) for x in logits
            ],
            "exit_macs_fraction": fractions,
            "overall_sparsity": report.overall,
            "cascade": cascade_curve(logits, test_labels, fractions),
        }
    _write(result, output_dir)
    return result


def _write(result, output_dir):
    from matplotlib.figure import Figure

    from tfee import report

    figure = Figure(figsize=(5, 4))
    axis = figure.subplots()
    for order, row in result["orders"].items():
        accuracy, fractions = zip(*sorted(row["cascade"], key=lambda p: p[1]))
        axis.plot(
            [100 * f for f in fractions],
            [100 * a for a in accuracy],
            marker=".",
            label=f"{order} (cascade)",
        )
        axis.scatter(
            [100 * f for f in row["exit_macs_fraction"]],
            [100 * a for a in row["exit_accuracy"]],
            marker="x",
        )
    axis.set_xlabel("mean non-zero MACs (% of the full network's MACs)")
    axis.set_ylabel("test accuracy (%)")
    axis.set_title(
        f"{result.get('title', '')}\npruned to {100 * result['sparsity']:.0f}% sparsity",
        fontsize=9,
    )
    axis.legend()
    figure.tight_layout()
    report.save_figure(figure, os.path.join(output_dir, "curves.png"))
    report.write_json(os.path.join(output_dir, "curves.json"), result)


def main(argv):
    shell.no_arguments(argv)
    if not 0 <= FLAGS.sparsity < 1:
        from absl import app

        raise app.UsageError(
            f"--sparsity must be in [0, 1). Received: {FLAGS.sparsity}"
        )
    output_dir = shell.output_dir(BINARY)
    network, data = shell.model_and_data(BINARY)
    result = run(
        network,
        data,
        shell.epochs(DEFAULT_EPOCHS),
        FLAGS.sparsity,
        output_dir,
        verbose=FLAGS.keras_verbose,
        labels={**shell.labels(BINARY, "test"), "title": shell.title(BINARY, "test")},
    )
    for order, row in result["orders"].items():
        accuracies = ", ".join(f"{100 * a:.1f}%" for a in row["exit_accuracy"])
        print(
            f"{order:<9} sparsity {100 * row['overall_sparsity']:.1f}%  exits: {accuracies}"
        )
    print(f"pruned networks, curves.png and curves.json in {output_dir}")


if __name__ == "__main__":
    shell.run(main)
