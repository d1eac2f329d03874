"""PTEENet's claim, reproduced: post-trained exits on a frozen backbone (issue 18).

Lahiany & Aperstein (IEEE Access 2022; PAPERS.md section 2) attach conv
branches with learned confidences to a trained backbone whose weights do not
change, place them by cumulative cost, train only the branches with EENet's
cost-aware loss, and exit at the first branch whose confidence passes 0.5.
Sweeping the cost penalty lambda trades accuracy for compute; the authors'
sweep (ResNet-110, 10 branches) gives 26.9% of the compute saved at 97.2% of
the backbone's accuracy, 42.8% at 93.6% and 55.5% at 89.3%.

Here, with tfee on the reference setup (shared/BENCHMARK.md): the backbone is
beyond_sdn's (a), the ResNet-20 trained alone (no exits) for --beyond_epochs
of the reference recipe, read from (or trained into) the same cache. For each
lambda of --pteenet_lambdas, `tfee.attach_exits(backbone,
tfee.PTEENet(rule, n), head="conv", with_confidence=True,
freeze_backbone=True)` is trained with Adam for --pteenet_epochs (the paper's
optimiser and learning rate, fewer epochs than its 30): first
--pteenet_warmup_epochs of cross-entropy on every branch, shared by every
lambda (EENet's two-stage schedule: with the cost-aware loss alone from the
start, the confidences fell to 0 while the branches were still guessing and
the branches never learned, 19% at exit 1 after 3 epochs at lambda 0.5; 0
runs the paper's one-stage recipe), then `tfee.EENet(net, lam)`.
Reported per lambda, on test: each exit's accuracy;
at the paper's rule (learned confidence >= --pteenet_threshold) the accuracy,
the accuracy relative to the backbone's and the compute saved (1 - mean MACs
/ the full network's MACs, the backbone alone; an exit's MACs include every
branch evaluated on the way, so a sample that reaches the end costs more than
the backbone alone);
the same for a sweep of that threshold (the curve); and whether every
backbone weight and BatchNormalization statistic is bit-identical to the
backbone's before training. Each trained network is cached under --cache_dir
and backs up every epoch: an interrupted run resumes where it stopped.

    .venv/bin/python -m benchmarks.pteenet            # about 40 min on 2 cores
    .venv/bin/python -m benchmarks.pteenet --quick    # smoke check only
"""

import hashlib
import os
import time

import numpy as np
from absl import app
from absl import flags

import tfee
import tfee.policy
from benchmarks import beyond_sdn
from benchmarks import common
from tfee import keras
from tfee._files import write_atomically

FLAGS = flags.FLAGS
flags.DEFINE_list(
    "pteenet_lambdas", ["0.5", "0.9", "1.3", "1.5"], "EENet cost penalties swept."
)
flags.DEFINE_integer("pteenet_epochs", 3, "Training epochs of the branches per lambda.")
flags.DEFINE_enum(
    "pteenet_rule", "pareto", ["fine", "pareto", "linear", "golden"], "Placement."
)
flags.DEFINE_integer(
    "pteenet_exits", 4, "Branches (the backbone's classifier not counted)."
)
flags.DEFINE_float("pteenet_learning_rate", 5e-4, "Adam learning rate (PTEENet: 5e-4).")
flags.DEFINE_enum("pteenet_loss", "v2", ["v1", "v2"], "EENet loss version.")
flags.DEFINE_float(
    "pteenet_threshold", 0.5, "Exit when the learned confidence reaches this."
)
flags.DEFINE_integer(
    "pteenet_warmup_epochs",
    1,
    "EENet's two-stage schedule: epochs of plain cross-entropy on every branch "
    "(confidences untrained) before the cost-aware loss, out of "
    "--pteenet_epochs; 0 is the paper's one-stage recipe.",
)
flags.DEFINE_string(
    "pteenet_result_name", "pteenet", "The JSON's name (without _full.json)."
)

SEED = 0
# (compute saved, accuracy relative to the backbone): the authors' sweep.
PAPER = ((0.269, 0.972), (0.428, 0.936), (0.555, 0.893))
SWEEP = tuple(round(t, 2) for t in np.linspace(0.05, 0.95, 19))


def _check_schedule():
    if not 0 <= FLAGS.pteenet_warmup_epochs < FLAGS.pteenet_epochs:
        raise app.UsageError(
            "--pteenet_warmup_epochs must be >= 0 and below --pteenet_epochs "
            f"({FLAGS.pteenet_epochs}). Received: {FLAGS.pteenet_warmup_epochs}"
        )


def _lambdas():
    try:
        values = [float(v) for v in FLAGS.pteenet_lambdas]
    except ValueError:
        values = None
    if not values or any(not np.isfinite(v) or v < 0 for v in values):
        raise app.UsageError(
            "--pteenet_lambdas must be numbers >= 0. "
            f"Received: {FLAGS.pteenet_lambdas}"
        )
    return values


def _recipe():
    """What the cached networks depend on besides lambda: a changed recipe
    never resumes or reuses what the old one trained."""
    text = (
        f"{FLAGS.pteenet_rule} {FLAGS.pteenet_exits} conv confidence frozen "
        f"Adam {FLAGS.pteenet_learning_rate:g} {FLAGS.pteenet_loss} labels "
        f"backbone plain {FLAGS.beyond_epochs}"
    )
    if FLAGS.pteenet_warmup_epochs:
        text += f" warmup {FLAGS.pteenet_warmup_epochs}"
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def post_trained(backbone, data, lam):
    """The branches trained on the frozen `backbone` for `lam`: from the
    cache, or trained now (resumable); (network, seconds per epoch)."""
    tag = "quick" if FLAGS.quick else "full"
    stem = os.path.join(
        FLAGS.cache_dir,
        f"pteenet_{tag}_{_recipe()}_lam{lam:g}_{FLAGS.pteenet_epochs}",
    )
    if os.path.exists(stem + ".keras"):
        print(f"lambda {lam:g}: cached {stem}.keras", flush=True)
        return tfee.load_model(stem + ".keras"), None
    keras.utils.set_random_seed(SEED)
    network = tfee.attach_exits(
        backbone,
        tfee.PTEENet(FLAGS.pteenet_rule, FLAGS.pteenet_exits),
        head="conv",
        with_confidence=True,
        freeze_backbone=True,
    )
    train = data.pipeline("train", training=True)
    warmup = FLAGS.pteenet_warmup_epochs
    if warmup:
        # EENet's first stage: every branch learns to classify before the
        # confidences decide which answers count (the cost-aware loss alone
        # lets confidences fall to 0 while the branches are still guessing,
        # and a branch whose confidence is 0 gets no gradient).
        # The warm-up does not depend on lambda: every lambda starts from it.
        warmed = os.path.join(
            FLAGS.cache_dir,
            f"pteenet_{tag}_{_recipe()}_warmup{warmup}.weights.h5",
        )
        if os.path.exists(warmed):
            network.load_weights(warmed)
        else:
            network.compile(
                optimizer=keras.optimizers.Adam(FLAGS.pteenet_learning_rate),
                loss=tfee.losses.joint(network),
            )
            print(f"{warmup} warm-up epochs (every lambda starts here) ...", flush=True)
            network.fit(train, epochs=warmup, verbose=2)
            write_atomically(warmed, network.save_weights)
    trainer = tfee.EENet(network, lam=lam, version=FLAGS.pteenet_loss)
    trainer.compile(optimizer=keras.optimizers.Adam(FLAGS.pteenet_learning_rate))
    epochs = FLAGS.pteenet_epochs - warmup
    print(f"lambda {lam:g}: training {epochs} epochs ...", flush=True)
    tick = time.time()
    trainer.fit(
        train,
        epochs=epochs,
        callbacks=[keras.callbacks.BackupAndRestore(stem + "_backup")],
        verbose=2,
    )
    seconds = (time.time() - tick) / epochs  # EENet's epochs, in this process
    write_atomically(stem + ".keras", network.save)
    return network, seconds


def backbone_unchanged(backbone, network):
    """Whether every weight of every backbone layer (BN statistics included)
    is bit-identical in `network`."""
    for layer in backbone.layers:
        before = layer.get_weights()
        after = network.get_layer(layer.name).get_weights()
        if len(before) != len(after) or any(
            b.shape != a.shape or b.tobytes() != a.tobytes()
            for b, a in zip(before, after)
        ):
            return False
    return True


def _point(outputs, threshold, backbone_accuracy):
    policy = tfee.ThresholdPolicy.shared(threshold, outputs.num_exits, rule="learned")
    evaluation = tfee.evaluate(outputs, policy=policy)
    return {
        "threshold": threshold,
        "accuracy": round(100 * evaluation.accuracy, 2),
        "accuracy_relative_to_backbone": round(
            evaluation.accuracy / backbone_accuracy, 4
        ),
        "compute_saved": round(1 - evaluation.macs_fraction, 4),
        "exit_fractions": [round(f, 4) for f in evaluation.exit_fractions],
    }


def measure(network, backbone, data, backbone_accuracy):
    test = tfee.collect_outputs(network, data.pipeline("test"))
    per_exit = tfee.policy.ExitAccuracy.from_logits(test.logits, test.labels)
    return {
        "placement": [e.attach_layer for e in tfee.exits(network)[:-1]],
        "exit_macs_fraction_of_backbone": [
            round(m / test.full_macs, 4) for m in test.exit_macs.tolist()
        ],
        "test_accuracy_per_exit": {
            k: round(100 * v, 2) for k, v in per_exit.exits.items()
        },
        "at_threshold": _point(test, FLAGS.pteenet_threshold, backbone_accuracy),
        "threshold_sweep": [_point(test, t, backbone_accuracy) for t in SWEEP],
        "backbone_weights_bit_identical": backbone_unchanged(backbone, network),
    }


def run(argv=None):
    lambdas = _lambdas()
    _check_schedule()
    data = common.reference_data()
    started = time.time()
    backbone, _ = beyond_sdn.trained("plain", data)
    backbone_accuracy = beyond_sdn.plain_accuracy(
        backbone, (data.normalised("test"), data.test[1])
    )
    rows = []
    for lam in lambdas:
        network, seconds = post_trained(backbone, data, lam)
        rows.append(
            {
                "lambda": lam,
                "seconds_per_epoch": None if seconds is None else round(seconds, 1),
                **measure(network, backbone, data, backbone_accuracy),
            }
        )
    result = {
        "setup": common.setup(),
        "budget": {
            "backbone": f"beyond_sdn (a): ResNet-20 trained alone, "
            f"{FLAGS.beyond_epochs} epochs of the reference recipe",
            "branches": f"{FLAGS.pteenet_exits} conv heads (2 x conv3x3-BN-ReLU, "
            f"pool, dense, learned confidence), PTEENet {FLAGS.pteenet_rule!r} "
            "placement, backbone frozen",
            "training": f"{FLAGS.pteenet_epochs} epochs per lambda (the paper: "
            f"30): {FLAGS.pteenet_warmup_epochs} of cross-entropy on every branch "
            "(EENet's two-stage schedule; the paper: none), then EENet "
            f"{FLAGS.pteenet_loss} with labels as targets; "
            f"Adam({FLAGS.pteenet_learning_rate:g}), crop + flip, seed 0",
            "exit_rule": "learned confidence >= threshold (the paper: 0.5)",
        },
        "backbone_test_accuracy": round(100 * backbone_accuracy, 2),
        "lambdas": rows,
        "paper": [
            {"compute_saved": saved, "accuracy_relative_to_backbone": relative}
            for saved, relative in PAPER
        ],
        "seconds": round(time.time() - started, 1),
        "record": common.machine_record(argv),
    }
    _plot(result)
    return common.finish(
        FLAGS.pteenet_result_name, result, ["backbone_test_accuracy", "lambdas"]
    )


def _plot(result):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.6))
    axes = figure.subplots()
    for index, row in enumerate(result["lambdas"]):
        colour = f"C{index}"
        sweep = row["threshold_sweep"]
        axes.plot(
            [100 * p["compute_saved"] for p in sweep],
            [100 * p["accuracy_relative_to_backbone"] for p in sweep],
            "-",
            color=colour,
            alpha=0.4,
        )
        point = row["at_threshold"]
        axes.plot(
            100 * point["compute_saved"],
            100 * point["accuracy_relative_to_backbone"],
            "o",
            color=colour,
            label=f"tfee, lambda {row['lambda']:g}",
        )
    axes.plot(
        [100 * p["compute_saved"] for p in result["paper"]],
        [100 * p["accuracy_relative_to_backbone"] for p in result["paper"]],
        "kx--",
        label="PTEENet paper (ResNet-110)",
    )
    axes.axhline(100, ls=":", c="k")
    axes.set_xlabel("compute saved (% of the full network's MACs)")
    axes.set_ylabel("test accuracy (% of the backbone's)")
    common.save_plot(
        figure,
        axes,
        FLAGS.pteenet_result_name,
        f"PTEENet: frozen backbone, threshold {FLAGS.pteenet_threshold:g} (dots; "
        "lines: threshold swept)",
    )


def main(argv):
    run(argv)


if __name__ == "__main__":
    app.run(main)
