"""Trains the reference network every tfee figure is measured on (shared/BENCHMARK.md).

The recipe is `tfee.recipes.reference_network`: CIFAR-10 from the shared
archive split 45,000 / 5,000 / 10,000, per-channel normalisation, crop+flip
augmentation; a CIFAR ResNet-20 with SDN heads at about 15..90% of the full
network's MACs (7 exits), trained jointly with SDN's weight ramp, SGD momentum
0.9, weight decay 5e-4, batch 128, lr 0.1 cosine, 30 epochs, seed 0. The network is
cached (default /tmp/tfee-reference) with the normalisation it was trained
with, and an interrupted run resumes at its last epoch. When it trains, this
script writes reference_network_full.json (per-exit test accuracy, exits,
MACs, training time); when the network is already cached it only loads it.

    .venv/bin/python -m benchmarks.reference --archive ../shared/datasets/cifar10-images.tar.gz
    .venv/bin/python -m benchmarks.reference --quick    # smoke check only
"""

import json
import os
import time

from absl import app
from absl import flags

import tfee
from benchmarks import common
from tfee import recipes

FLAGS = flags.FLAGS
flags.DEFINE_integer("reference_epochs", 30, "Training epochs (the reference is 30).")
flags.DEFINE_bool(
    "reference_retrain",
    False,
    "Train again (resuming a backup in --cache_dir), whatever is cached or "
    "committed with tfee.",
)
flags.DEFINE_bool(
    "reference_commit",
    False,
    "Write the trained network as the reference tfee ships "
    "(tfee/_reference, recipes.COMMITTED_REFERENCE); its test accuracy must "
    "be the one its results JSON records.",
)


def _trains():
    """Whether this run trains (else it loads the cached or committed one)."""
    if FLAGS.quick:
        return not os.path.exists(common.network_path())
    committed = recipes.committed_reference()
    uses_committed = committed is not None and (
        committed["epochs"] == FLAGS.reference_epochs
    )
    return FLAGS.reference_retrain or not (
        os.path.exists(common.network_path()) or uses_committed
    )


def run(argv=None):
    """Trains (or loads) the reference network; returns the result, or None
    when the network was already cached or committed."""
    if FLAGS.quick and FLAGS.reference_commit:
        raise SystemExit("--reference_commit: the quick stand-in is no reference")
    trained_now = _trains()
    started = time.time()
    if FLAGS.quick:
        network, data = common.reference()
    else:
        network = recipes.reference_network(
            FLAGS.archive,
            FLAGS.cache_dir,
            epochs=FLAGS.reference_epochs,
            retrain=FLAGS.reference_retrain,
        )
        data = recipes.reference_data(FLAGS.archive, FLAGS.cache_dir)
        common.record_reference(network)
    if not trained_now:
        print(f"the reference network is cached: {common.network_path()}")
        if FLAGS.reference_commit:
            commit(network, data, _recorded_result())
        return None
    seconds = time.time() - started
    accuracy = tfee.exit_accuracy(network, data.pipeline("test"))
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
    common.finish("reference_network", result, ["test_exit_accuracy", "train_seconds"])
    if FLAGS.reference_commit:
        commit(network, data, result)
    return result


def _recorded_result():
    """The results JSON of the run that trained the cached network."""
    path = os.path.join(common.results_dir(), "reference_network_full.json")
    if not os.path.exists(path):
        raise SystemExit(f"--reference_commit: no {path} records how it was trained")
    with open(path) as f:
        return json.load(f)


def commit(network, data, result):
    """Writes `network` as the committed reference, with `result` (this
    training's JSON) as its record of how it was trained, after checking that
    the network's test accuracy is the one `result` records."""
    accuracy = list(tfee.exit_accuracy(network, data.pipeline("test")).exits.values())
    if accuracy != result["test_exit_accuracy"]:
        raise SystemExit(
            "--reference_commit: the network's test accuracy per exit "
            f"{accuracy} is not its results JSON's {result['test_exit_accuracy']}: "
            "that JSON records another training"
        )
    recipes.save_committed_reference(
        network,
        {
            "depth": 20,
            "width": 16,
            "fractions": list(recipes.SDN_FRACTIONS),
            "num_classes": int(network.outputs[0].shape[-1]),
            "input_shape": list(data.train[0].shape[1:]),
        },
        data.mean,
        data.std,
        result["epochs"],
        {
            key: result[key]
            for key in ("test_exit_accuracy", "train_seconds", "weight_decay", "record")
        },
    )
    print(f"committed: {recipes.COMMITTED_REFERENCE}")


def main(argv):
    run(argv)


if __name__ == "__main__":
    app.run(main)
