"""Trains the reference network every tfee figure is measured on (shared/BENCHMARK.md).

The recipe is `tfee.recipes.reference_network`: CIFAR-10 from the shared
archive split 45,000 / 5,000 / 10,000, per-channel normalisation, crop+flip
augmentation; a CIFAR ResNet-20 with SDN heads at about 15..90% of its MACs
(7 exits), trained jointly with SDN's weight ramp, SGD momentum 0.9, weight
decay 5e-4, batch 128, lr 0.1 cosine, 30 epochs, seed 0. The network is
cached (default /tmp/tfee-reference) with the normalisation it was trained
with, and an interrupted run resumes at its last epoch. When it trains, this
script writes reference_network_full.json (per-exit test accuracy, exits,
MACs, training time); when the network is already cached it only loads it.

    .venv/bin/python -m benchmarks.reference --archive ../shared/datasets/cifar10-images.tar.gz
    .venv/bin/python -m benchmarks.reference --quick    # smoke check only
"""

import os
import time

from absl import app
from absl import flags

import tfee
from benchmarks import common
from tfee import recipes

FLAGS = flags.FLAGS
flags.DEFINE_integer("reference_epochs", 30, "Training epochs (the reference is 30).")


def run(argv=None):
    """Trains (or loads) the reference network; returns the result, or None
    when the network was already cached."""
    trained_now = not os.path.exists(common.network_path())
    started = time.time()
    if FLAGS.quick:
        network, data = common.reference()
    else:
        network = recipes.reference_network(
            FLAGS.archive, FLAGS.cache_dir, epochs=FLAGS.reference_epochs
        )
        data = recipes.reference_data(FLAGS.archive, FLAGS.cache_dir)
    if not trained_now:
        print(f"the reference network is cached: {common.network_path()}")
        return None
    seconds = time.time() - started
    accuracy = tfee.policy.exit_accuracy(network, data.pipeline("test"))
    result = {
        "setup": common.setup(),
        "epochs": 1 if FLAGS.quick else FLAGS.reference_epochs,
        "weight_decay": f"L2 {recipes.L2:g} on convolution kernels (SGD weight "
        f"decay {2 * recipes.L2:g} as PyTorch applies it)",
        "train_seconds": round(seconds, 1),
        "test_exit_accuracy": list(accuracy.exits.values()),
        "exits": [
            {
                "name": e.name,
                "attach_layer": e.attach_layer,
                "cumulative_macs": e.cumulative_macs,
            }
            for e in tfee.exits(network)
        ],
        "full_macs": tfee.cost.analyze(network).full_macs,
        "normalisation": {"mean": data.mean.tolist(), "std": data.std.tolist()},
        "record": common.machine_record(argv),
    }
    return common.finish(
        "reference_network", result, ["test_exit_accuracy", "train_seconds"]
    )


def main(argv):
    run(argv)


if __name__ == "__main__":
    app.run(main)
