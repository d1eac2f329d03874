"""Pruning the reference network "together" vs "ordered" (PAPERS.md section 1).

Görmez & Koyuncu (2022) prune an early-exit ResNet in rounds of (prune,
fine-tune) under one global magnitude threshold, either the backbone and the
heads at once ("together") or the backbone first and then the heads with the
backbone frozen ("ordered"). This benchmark does both on the trained
reference network (shared/BENCHMARK.md) at 50/70/80/90% global sparsity. The
levels are the rounds: each level starts from the previous level's pruned
network (the smallest weights are already zero) and prunes once to the new
target, then fine-tunes for --pruning_steps batches per phase ("ordered" has
two phases: backbone with the deepest exit's loss only, then the heads with
the backbone frozen). That is a far smaller fine-tuning budget than the
paper's (20 rounds, several epochs each), chosen to fit the shared 2-core
machine; the JSON records it.

For every (order, level) it reports each exit's test accuracy, the
sparsity-aware MACs to each exit (non-zero weights only; also as a fraction of
the full network's MACs, the dense backbone alone: the `_fraction_of_dense_full`
keys, plotted and printed as "% of the full network's MACs"), and a max-softmax
cascade calibrated on validation for the same target (--pruning_target_drop
below the network's own deepest exit), evaluated on test. Pruned networks
are cached under --cache_dir for benchmarks/clustering.py.

    .venv/bin/python -m benchmarks.pruning            # the reference network
    .venv/bin/python -m benchmarks.pruning --quick --pruning_levels=0.5 --pruning_steps=2
"""

import os
import time
import warnings

import numpy as np
from absl import app
from absl import flags

import tfee
import tfee.compress
import tfee.policy
from benchmarks import common
from tfee import keras
from tfee._files import write_atomically

FLAGS = flags.FLAGS
flags.DEFINE_list("pruning_levels", ["0.5", "0.7", "0.8", "0.9"], "Global sparsities.")
flags.DEFINE_integer(
    "pruning_steps", 120, "Fine-tuning batches (of 128) per phase per level."
)
flags.DEFINE_float("pruning_learning_rate", 1e-4, "Adam learning rate for fine-tuning.")
flags.DEFINE_float(
    "pruning_target_drop",
    0.01,
    "Calibration target: accuracy drop vs the network's own deepest exit.",
)
flags.DEFINE_alias("pruning_results_dir", "results_dir")
flags.DEFINE_alias("pruning_wait_minutes", "wait_minutes")

ORDERS = ("together", "ordered")
# The reference training ends with SDN's ramped weights; fine-tuning keeps them.
SDN_FINAL_WEIGHTS = (*tfee.losses.SDN_MAX_WEIGHTS, 1.0)


def fine_tuning_weights(network):
    """SDN's final weights for the reference's 7 exits; uniform for the quick
    stand-in, which has fewer."""
    if len(tfee.exits(network)) == len(SDN_FINAL_WEIGHTS):
        return SDN_FINAL_WEIGHTS
    return "uniform"


def pruned_path(cache_dir, quick, order, level):
    tag = "quick" if quick else "full"
    return os.path.join(cache_dir, f"pruned_{tag}_{order}_{round(100 * level)}.keras")


def measure(network, validation, test, dense_full_macs, target_drop):
    """Per-exit accuracy, sparse MACs and a calibrated cascade, on test."""
    val_outputs = tfee.collect_outputs(network, validation, sparse=True)
    test_outputs = tfee.collect_outputs(network, test, sparse=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", tfee.policy.UnreachableTargetWarning)
        policy = tfee.calibrate(val_outputs, max_accuracy_drop=target_drop)
    result = tfee.evaluate(test_outputs, policy=policy)
    sparsity = tfee.compress.sparsity_report(network)
    return {
        "overall_sparsity": sparsity.overall,
        "head_sparsity": sparsity.heads,
        "section_sparsity": [s["total"] for s in sparsity.sections],
        "exit_test_accuracy": list(result.single_exit_accuracy),
        "exit_sparse_macs": [int(m) for m in test_outputs.exit_macs],
        "exit_sparse_macs_fraction_of_dense_full": [
            float(m) / dense_full_macs for m in test_outputs.exit_macs
        ],
        "cascade": {
            "policy": policy.to_dict(),
            "target_reached_on_validation": not caught,
            "test_accuracy": result.accuracy,
            "test_deepest_accuracy": result.deepest_accuracy,
            "test_mean_sparse_macs": result.mean_macs,
            "test_mean_sparse_macs_fraction_of_dense_full": result.mean_macs
            / dense_full_macs,
            "test_exit_fractions": [c / result.num_samples for c in result.exit_counts],
        },
    }


def plot(path, result):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2))
    left, right = figure.subplots(1, 2)
    dense = result["dense"]

    def percent_of_full(row):
        return 100 * np.array(row["exit_sparse_macs_fraction_of_dense_full"])

    left.plot(
        percent_of_full(dense),
        100 * np.array(dense["exit_test_accuracy"]),
        "k-o",
        label="dense",
    )
    styles = {"together": "-", "ordered": "--"}
    colours = {}
    for order in ORDERS:
        if order not in result["orders"]:
            continue
        for row in result["orders"][order]:
            colour = colours.setdefault(row["level"], f"C{len(colours)}")
            left.plot(
                percent_of_full(row),
                100 * np.array(row["exit_test_accuracy"]),
                styles[order],
                color=colour,
                marker=".",
                label=f"{order} {100 * row['level']:.0f}%",
            )
        right.plot(
            [
                100 * r["cascade"]["test_mean_sparse_macs_fraction_of_dense_full"]
                for r in result["orders"][order]
            ],
            [100 * r["cascade"]["test_accuracy"] for r in result["orders"][order]],
            styles[order],
            marker="o",
            color="C0" if order == "together" else "C3",
            label=order,
        )
        for r in result["orders"][order]:
            right.annotate(
                f"{100 * r['level']:.0f}%",
                (
                    100 * r["cascade"]["test_mean_sparse_macs_fraction_of_dense_full"],
                    100 * r["cascade"]["test_accuracy"],
                ),
                fontsize=7,
            )
    right.plot(
        [100 * dense["cascade"]["test_mean_sparse_macs_fraction_of_dense_full"]],
        [100 * dense["cascade"]["test_accuracy"]],
        "k*",
        markersize=10,
        label="dense",
    )
    left.set_xlabel("non-zero MACs to the exit (% of the full network's MACs)")
    left.set_ylabel("test accuracy (%)")
    left.set_title("exits 1..7, each on every test sample")
    left.legend(fontsize=6, ncol=2)
    right.set_xlabel("mean non-zero MACs (% of the full network's MACs)")
    right.set_ylabel("test accuracy (%)")
    right.set_title("cascade calibrated on validation (same target)")
    right.legend(fontsize=8)
    figure.tight_layout()
    write_atomically(path, lambda partial: figure.savefig(partial, dpi=120))


def run(levels, steps, learning_rate, target_drop, argv=None):
    """Prunes both orders level by level; rewrites pruning.json/.png after each."""
    quick, cache_dir = FLAGS.quick, FLAGS.cache_dir
    network, data = common.reference()
    train = data.pipeline("train", training=True)
    validation = data.pipeline("validation")
    test = data.pipeline("test")
    weights = fine_tuning_weights(network)
    dense_full = tfee.cost.analyze(network).full_macs
    started = time.time()
    print("measuring the dense network ...", flush=True)
    result = {
        "setup": common.setup(),
        "method": "global magnitude threshold; levels are the rounds, each "
        "continuing from the previous level and pruning once to its target, then "
        "fine-tuning; ordered = backbone phase (heads frozen, deepest loss only) "
        "then heads phase (backbone frozen)",
        "budget": {
            "levels": levels,
            "fine_tuning_batches_per_phase_per_level": steps,
            "batch": tfee.recipes.BATCH,
            "images_per_phase_per_level": steps * tfee.recipes.BATCH,
            "train_images": len(data.train[1]),
            "optimizer": f"Adam({learning_rate:g})",
            "loss": f"tfee.losses.joint(weights={list(weights)!r}) "
            "(SDN's ramped-up weights)",
            "augmentation": "crop+flip (reference pipeline)",
            "batch_norm": "together: BN trains with the weights; ordered: the "
            "frozen backbone's BN statistics re-estimated from training images "
            "when the heads' phase begins (tfee.compress.prune's default)",
        },
        "calibration": {
            "rule": "max_softmax",
            "max_accuracy_drop_vs_own_deepest_exit": target_drop,
            "calibrated_on": "validation",
            "reported_on": "test",
        },
        "dense_full_macs": dense_full,
        "dense": measure(network, validation, test, dense_full, target_drop),
        "orders": {},
    }
    for order in ORDERS:
        current = network
        rows = []
        for level in levels:
            print(f"{order}: pruning to {100 * level:.0f}% ...", flush=True)
            tick = time.time()
            current = tfee.compress.prune(
                current,
                train,
                level,
                scope="global",
                order=order,
                epochs=1,
                steps_per_epoch=steps,
                optimizer=keras.optimizers.Adam(learning_rate),
                loss=tfee.losses.joint(current, weights=weights),
                verbose=2,
            )
            train_seconds = time.time() - tick
            path = pruned_path(cache_dir, quick, order, level)
            write_atomically(path, current.save)
            row = {"level": level, "fine_tuning_seconds": round(train_seconds, 1)}
            row.update(measure(current, validation, test, dense_full, target_drop))
            rows.append(row)
            accuracies = " ".join(f"{100 * a:.1f}" for a in row["exit_test_accuracy"])
            print(
                f"{order} {100 * level:.0f}%: sparsity "
                f"{100 * row['overall_sparsity']:.1f}%, exits {accuracies}; cascade "
                f"{100 * row['cascade']['test_accuracy']:.2f}% at "
                f"{100 * row['cascade']['test_mean_sparse_macs_fraction_of_dense_full']:.1f}"
                "% of the full network's MACs (non-zero MACs)",
                flush=True,
            )
            result["orders"][order] = rows
            result["seconds"] = round(time.time() - started, 1)
            write(result, quick, argv)
    return result


def write(result, quick, argv=None):
    """JSON and PNG of what is measured so far (rewritten after every level)."""
    result["record"] = common.machine_record(argv)
    tag = "_quick" if quick else ""
    common.write_result(f"pruning{tag}", result)
    plot(os.path.join(common.results_dir(), f"pruning{tag}.png"), result)


def main(argv):
    run(
        [float(level) for level in FLAGS.pruning_levels],
        FLAGS.pruning_steps,
        FLAGS.pruning_learning_rate,
        FLAGS.pruning_target_drop,
        argv,
    )


if __name__ == "__main__":
    app.run(main)
