"""Prunes one trained early-exit network "together" and "ordered" and plots
accuracy vs MFLOPs of both (Görmez & Koyuncu 2022) on the embedded digits.

    .venv/bin/python examples/prune_early_exit.py --prune_output_dir /tmp/prune_demo

Flag names are unique across tfee's examples (absl keeps one global set).
The cascade curve is a max-softmax threshold sweep (one threshold for every
exit; a sample leaves at the first exit whose max softmax reaches it).
"""

import json
import os
import tempfile

import numpy as np
from absl import app
from absl import flags

import tfee
import tfee.compress
from tfee import keras

FLAGS = flags.FLAGS
flags.DEFINE_integer("dense_epochs", 20, "Epochs to train the dense network.")
flags.DEFINE_integer(
    "prune_epochs", 2, "Fine-tuning epochs per phase (one round each)."
)
flags.DEFINE_float("sparsity", 0.8, "Target sparsity in [0, 1).")
flags.DEFINE_string(
    "prune_output_dir", "/tmp/tfee_prune_early_exit", "Where PNG and JSON go."
)
flags.DEFINE_integer("prune_seed", 0, "Random seed.")


def cascade_curve(logits, labels, exit_mflops, thresholds=None):
    """(accuracy, mean MFLOPs) of a max-softmax cascade for each threshold
    (default: 0, 0.05, ..., 1), one threshold shared by every exit."""
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
                float(np.mean(np.take(exit_mflops, chosen))),
            )
        )
    return points


def run(train_epochs, prune_epochs, sparsity, output_dir, seed):
    """Trains, prunes both ways, writes curves.png and curves.json; returns the JSON."""
    keras.utils.set_random_seed(seed)
    train, _, test = tfee.data.digits(seed=seed)
    backbone = tfee.backbones.small_cnn(num_classes=10, input_shape=(8, 8, 1))
    net = tfee.attach_exits(backbone, ["block1_out", "block2_out"], head="sdn")
    net.compile(keras.optimizers.Adam(3e-3), loss=tfee.losses.joint(net))
    net.fit(train, epochs=train_epochs, verbose=2)
    labels = np.concatenate([y for _, y in test])
    exit_names = [s.exit_name for s in tfee.sections(net)]
    result = {"sparsity": sparsity, "orders": {}}
    for order in ("together", "ordered"):
        pruned = tfee.compress.prune(
            net, train, sparsity, order=order, epochs=prune_epochs, verbose=2
        )
        report = tfee.compress.sparsity_report(pruned)
        outputs = dict(zip(pruned.output_names, pruned.predict(test, verbose=0)))
        logits = [outputs[name] for name in exit_names]
        mflops = [row["sparse_mflops"] for row in report.exits]
        result["orders"][order] = {
            "exit_accuracy": [float(np.mean(x.argmax(-1) == labels)) for x in logits],
            "exit_mflops": mflops,
            "overall_sparsity": report.overall,
            "cascade": cascade_curve(logits, labels, mflops),
        }
    _write(result, output_dir)
    return result


def _write(result, output_dir):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    os.makedirs(output_dir, exist_ok=True)
    figure, axis = pyplot.subplots(figsize=(5, 4))
    for order, row in result["orders"].items():
        accuracy, mflops = zip(*sorted(row["cascade"], key=lambda p: p[1]))
        axis.plot(mflops, accuracy, marker=".", label=f"{order} (cascade)")
        axis.scatter(row["exit_mflops"], row["exit_accuracy"], marker="x")
    axis.set_xlabel("MFLOPs per sample (sparse)")
    axis.set_ylabel("test accuracy")
    axis.set_title(f"pruned to {100 * result['sparsity']:.0f}% sparsity")
    axis.legend()
    for name, writer in (
        ("curves.png", lambda f: figure.savefig(f, format="png", dpi=120)),
        ("curves.json", lambda f: f.write(json.dumps(result, indent=2).encode())),
    ):
        handle, temporary = tempfile.mkstemp(dir=output_dir)
        with os.fdopen(handle, "wb") as f:
            writer(f)
        os.replace(temporary, os.path.join(output_dir, name))
    pyplot.close(figure)


def main(argv):
    del argv
    result = run(
        FLAGS.dense_epochs,
        FLAGS.prune_epochs,
        FLAGS.sparsity,
        FLAGS.prune_output_dir,
        FLAGS.prune_seed,
    )
    for order, row in result["orders"].items():
        accuracies = ", ".join(f"{100 * a:.1f}%" for a in row["exit_accuracy"])
        print(
            f"{order:<9} sparsity {100 * row['overall_sparsity']:.1f}%  exits: {accuracies}"
        )
    print(f"plot and JSON in {FLAGS.prune_output_dir}")


if __name__ == "__main__":
    app.run(main)
