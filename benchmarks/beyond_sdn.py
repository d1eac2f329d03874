"""Beyond SDN: early-exit options side by side, one run, one budget (issue 17).

Every variant trains from scratch on the reference data (shared/BENCHMARK.md)
with the same seed and the same budget, --beyond_epochs of the reference
recipe (SGD momentum 0.9, lr 0.1 in a cosine over the budget, weight decay
5e-4, batch 128, crop + flip), instead of the reference network's 30 epochs:

  plain        (a) the ResNet-20 backbone alone: what a user would deploy
               without exits;
  sdn          (b) + 6 SDN heads at 15..90% of the full network's MACs, SDN's
               joint loss and weight ramp (today's reference recipe);
  sdn_distill  (c) (b) with self-distillation (`tfee.Distiller(weights="sdn")`
               with SDN's ramp: teacher = the network's own deepest exit,
               T = 3, kd_weight 0.3);
  ztw          (d) (c) with Zero Time Waste's cascading heads
               (`attach_exits(cascading=True)`: head k also reads exit
               k-1's logits, stop-gradient and softmax, through its own
               classes x classes kernel);
  ztw_post     (d') ZTW's own setting: the same cascading heads post-trained
               on (a)'s frozen backbone (`freeze_backbone=True`; only the
               heads train, for the budget's epochs on top of (a)'s).

Every network with exits is measured under each exit rule of --beyond_rules:
max_softmax (SDN's thresholds) and decision (the learned exit decision,
`tfee.DecisionPolicy`: a logistic model per exit over the signals of the
exits so far, including the geometric ensemble of their softmaxes, fitted
on validation; it is variant (e) when applied to the best network). Every
network is also measured with ZTW's learned ensemble, the other half of (d)
(`tfee.policy.ExitEnsemble`, fitted on validation: exit k answers with a
learned combination of the log-softmax of exits 1..k) under each rule
(`<rule>+ensemble`, what `calibrate(..., ensemble=True)` deploys), with the
ensemble's per-exit test accuracy under `ensemble`.

For every network and rule, calibrated on validation and reported on test:
each exit's accuracy; the accuracy at 25, 50 and 75%
of the full network's MACs (`calibrate(macs_budget=...)`); the MACs ratio at a <= 0.5
point drop against the network's own deepest exit (`max_accuracy_drop`) and
against (a) (the cheapest setting on the validation front within 0.5 points
of (a)'s validation accuracy); the oracle's MACs at the policy's test
accuracy. Plus every variant's training seconds per epoch. The plot draws,
per network and rule, the validation front's policies evaluated on test (no
setting is chosen on test). Training cost: each variant's
seconds per epoch as it trained, and, comparable across variants, training
images/s measured side by side (fresh copies, timed windows alternating
between the variants in one process, medians). Each trained
variant is cached under --cache_dir and backs up every epoch, so an
interrupted run resumes where it stopped; the JSON records the budget.

    .venv/bin/python -m benchmarks.beyond_sdn                 # about 2 h on 2 cores
    .venv/bin/python -m benchmarks.beyond_sdn --quick         # smoke check only
"""

import functools
import hashlib
import json
import os
import time
import warnings

import numpy as np
from absl import app
from absl import flags

import tfee
import tfee.policy
from benchmarks import common
from benchmarks import training_throughput
from tfee import backbones
from tfee import keras
from tfee import recipes
from tfee import report
from tfee._files import write_atomically

FLAGS = flags.FLAGS
flags.DEFINE_integer("beyond_epochs", 3, "Training epochs of every variant.")
flags.DEFINE_list(
    "beyond_variants",
    ["plain", "sdn", "sdn_distill", "ztw", "ztw_post"],
    "Variants to train and compare.",
)
flags.DEFINE_list(
    "beyond_rules",
    ["max_softmax", tfee.rules.DECISION],
    "Exit rules every network is calibrated with.",
)

flags.DEFINE_integer(
    "beyond_throughput_windows",
    5,
    "Timed training windows per variant, alternating in one process (median); "
    "0 skips the measurement.",
)
flags.DEFINE_integer("beyond_throughput_steps", 10, "Training steps per timed window.")

SEED = 0
DROP = 0.005
ENSEMBLE = "ensemble"
ENSEMBLE_SUFFIX = "+ensemble"
MACS_POINTS = (0.25, 0.5, 0.75)


def _size():
    """Depth, width and exit fractions: the reference's, or the quick stand-in's."""
    if FLAGS.quick:
        return dict(common.TINY_NETWORK)
    return {"depth": 20, "width": 16, "fractions": recipes.SDN_FRACTIONS}


def _plain(data):
    size = _size()
    model = backbones.resnet_cifar(
        depth=size["depth"],
        num_classes=int(np.max(data.train[1])) + 1,
        input_shape=data.train[0].shape[1:],
        width=size["width"],
        weight_decay=recipes.L2,
    )
    return model, model


def _with_exits(data, cascading=False):
    network = recipes.build_reference_network(
        num_classes=int(np.max(data.train[1])) + 1,
        input_shape=data.train[0].shape[1:],
        cascading=cascading,
        **_size(),
    )
    return network, network


def _self_distilled(data, cascading=False):
    network, _ = _with_exits(data, cascading)
    # (b)'s loss, weights and ramp included, plus the distillation term.
    return network, tfee.Distiller(
        network, temperature=3.0, kd_weight=0.3, weights="sdn"
    )


def _cascading(data):
    return _self_distilled(data, cascading=True)


def _post_trained_cascading(data):
    # ZTW's own setting: heads on a trained backbone that stays frozen, so
    # the deepest exit is (a)'s.
    backbone, _ = trained("plain", data)
    network = tfee.attach_exits(
        backbone,
        tfee.FlopsFractions(list(_size()["fractions"])),
        head="sdn",
        cascading=True,
        freeze_backbone=True,
    )
    return network, network


# name -> (what it is, builder returning (network, the model `fit` trains)).
VARIANTS = {
    "plain": ("(a) backbone alone, no exits", _plain),
    "sdn": ("(b) SDN heads, SDN joint loss and weight ramp", _with_exits),
    "sdn_distill": (
        "(c) SDN heads, SDN weights and ramp + self-distillation T=3 kd 0.3",
        _self_distilled,
    ),
    "ztw": (
        "(d) (c) with ZTW's cascading heads: head k also reads exit k-1's "
        "logits (stop-gradient, softmax, its own kernel)",
        _cascading,
    ),
    "ztw_post": (
        "(d') ZTW's setting: cascading SDN heads trained on (a)'s frozen "
        "backbone (heads only, the budget's epochs on top of (a)'s), SDN "
        "joint loss and ramp",
        _post_trained_cascading,
    ),
}


def _compile(name, network, trainer, steps):
    optimizer = recipes.reference_optimizer(steps, FLAGS.beyond_epochs)
    if name == "plain":
        trainer.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    elif trainer is network:
        recipes.compile_for_training(network, steps, FLAGS.beyond_epochs)
    else:
        trainer.compile(optimizer=optimizer)


def trained(name, data):
    """(network, seconds per epoch): from the cache, or trained now (resumable)."""
    tag = "quick" if FLAGS.quick else "full"
    # The recipe's description is part of the key: a changed recipe never
    # resumes or reuses what the old one trained.
    recipe = hashlib.sha256(VARIANTS[name][0].encode()).hexdigest()[:8]
    stem = os.path.join(
        FLAGS.cache_dir, f"beyond_sdn_{tag}_{name}_{recipe}_{FLAGS.beyond_epochs}"
    )
    if os.path.exists(stem + ".keras") and os.path.exists(stem + ".json"):
        with open(stem + ".json") as f:
            seconds = json.load(f)["seconds_per_epoch"]
        print(f"{name}: cached {stem}.keras", flush=True)
        return tfee.load_model(stem + ".keras"), seconds
    keras.utils.set_random_seed(SEED)
    network, trainer = VARIANTS[name][1](data)
    train = data.pipeline("train", training=True)
    _compile(name, network, trainer, len(train))
    callbacks = [keras.callbacks.BackupAndRestore(stem + "_backup")]
    if name != "plain":
        callbacks.insert(0, tfee.callbacks.SDNRamp())
    print(f"{name}: training {FLAGS.beyond_epochs} epochs ...", flush=True)

    class EpochTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.time()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.time() - self.started)

    times = []
    trainer.fit(
        train,
        epochs=FLAGS.beyond_epochs,
        callbacks=[*callbacks, EpochTimes()],
        verbose=2,
    )
    # Epochs run in this process only (a resumed run timed fewer).
    seconds = float(np.median(times)) if times else None
    write_atomically(stem + ".keras", network.save)
    with open(stem + ".json", "w") as f:
        json.dump({"seconds_per_epoch": seconds}, f)
    return network, seconds


def plain_accuracy(model, split):
    images, labels = split
    logits = model.predict(images, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(logits, -1) == labels))


def _on_test(policy, test):
    """A validation-calibrated policy's test figures, beside the oracle's MACs
    at the same test accuracy."""
    evaluation = tfee.evaluate(test, policy=policy)
    oracle = tfee.policy.oracle_macs_at_accuracy(test, evaluation.accuracy)
    return {
        "accuracy": round(100 * evaluation.accuracy, 2),
        "macs_fraction": round(evaluation.macs_fraction, 4),
        "oracle_macs_fraction_at_this_accuracy": (
            None if oracle is None else round(oracle / test.full_macs, 4)
        ),
        "cost_vs_oracle": (
            None if not oracle else round(evaluation.mean_macs / oracle, 3)
        ),
    }


def _under_rule(rule, validation, test, plain_validation_accuracy):
    """One rule's figures (policies calibrated on validation, run on test),
    and its curve: the validation front's policies evaluated on test."""
    calibrate = functools.partial(tfee.calibrate, validation, rule=rule)
    result = {}
    with warnings.catch_warnings():
        # An unreachable budget returns the closest setting; the figure says so.
        warnings.simplefilter("ignore", tfee.policy.UnreachableTargetWarning)
        for fraction in MACS_POINTS:
            policy = calibrate(macs_budget=fraction)
            result[f"at_{round(100 * fraction)}pct_macs"] = _on_test(policy, test)
        policy = calibrate(max_accuracy_drop=DROP)
    result["drop_0.5pt_vs_own_deepest"] = _on_test(policy, test)
    front = tfee.policy.front(validation, rule=rule, refine=True)
    good = [p for p in front.points if p.accuracy >= plain_validation_accuracy - DROP]
    result["drop_0.5pt_vs_plain"] = (
        _on_test(min(good, key=lambda p: p.mean_macs).policy, test)
        if good
        else "no setting on the validation front comes within 0.5 points of (a)"
    )
    curve = [tfee.evaluate(test, policy=p.policy) for p in front.points]
    return result, [(e.macs_fraction, e.accuracy) for e in curve]


def measure(network, data, plain_validation_accuracy):
    """The figures of one network with exits (see the module docstring), and
    its curves per rule."""
    validation = tfee.collect_outputs(network, data.pipeline("validation"))
    test = tfee.collect_outputs(network, data.pipeline("test"))
    per_exit = tfee.policy.ExitAccuracy.from_logits(test.logits, test.labels)
    result = {
        "test_accuracy_per_exit": {
            k: round(100 * v, 2) for k, v in per_exit.exits.items()
        },
        "exit_macs_fraction": [
            round(m / test.full_macs, 4) for m in test.exit_macs.tolist()
        ],
    }
    curves = {}
    for rule in FLAGS.beyond_rules:
        result[rule], curves[rule] = _under_rule(
            rule, validation, test, plain_validation_accuracy
        )
    # (d) ZTW's learned ensemble (fitted on validation), under every rule:
    # calibrating on its answers is what calibrate(..., ensemble=True) does.
    ensemble = tfee.policy.ExitEnsemble.fit(validation)
    answered = ensemble.outputs(test)
    result[ENSEMBLE] = {
        "test_accuracy_per_exit": [
            round(100 * a, 2) for a in answered.exit_accuracy().per_exit().tolist()
        ]
    }
    for rule in FLAGS.beyond_rules:
        name = f"{rule}{ENSEMBLE_SUFFIX}"
        result[name], curves[name] = _under_rule(
            rule, ensemble.outputs(validation), answered, plain_validation_accuracy
        )
    return result, curves


def side_by_side_throughput(data):
    """Training images/s of every variant, each built fresh and compiled as
    it trains, in timed windows that alternate between the variants in this
    one process (so a busy machine slows all alike); medians, and each
    variant's median over (b)'s."""
    windows, steps = FLAGS.beyond_throughput_windows, FLAGS.beyond_throughput_steps
    if not windows:
        return "not measured (--beyond_throughput_windows=0)"
    if FLAGS.quick:
        windows, steps = 2, 1
    dataset = data.pipeline("train", training=True).repeat()
    trainers = {}
    for name in FLAGS.beyond_variants:
        keras.utils.set_random_seed(SEED)
        network, trainer = VARIANTS[name][1](data)
        _compile(name, network, trainer, steps)
        trainers[name] = trainer
    rates = training_throughput.measure(
        trainers,
        dataset,
        windows=windows,
        window_steps=steps,
        warmup_steps=2,
        batch=recipes.BATCH,
    )
    medians = {name: float(np.median(r)) for name, r in rates.items()}
    result = {
        "windows": windows,
        "steps_per_window": steps,
        "batch": recipes.BATCH,
        "images_per_second_median": {n: round(m, 1) for n, m in medians.items()},
    }
    if "sdn" in medians:
        # Time per epoch relative to (b): the inverse of the throughput ratio.
        result["time_per_epoch_vs_sdn"] = {
            n: round(medians["sdn"] / m, 3) for n, m in medians.items()
        }
    return result


def run(argv=None):
    rules = tfee.policy.RULES + (tfee.rules.DECISION,)
    if not FLAGS.beyond_rules or set(FLAGS.beyond_rules) - set(rules):
        raise app.UsageError(
            f"--beyond_rules must name some of {rules}. Received: {FLAGS.beyond_rules}"
        )
    unknown = sorted(set(FLAGS.beyond_variants) - set(VARIANTS))
    if unknown or "plain" not in FLAGS.beyond_variants:
        raise app.UsageError(
            f"--beyond_variants must include 'plain' and name only {sorted(VARIANTS)}. "
            f"Received: {FLAGS.beyond_variants}"
        )
    data = common.reference_data()
    started = time.time()
    variants, fronts = {}, {}
    plain, plain_seconds = trained("plain", data)
    plain_scores = {
        split: plain_accuracy(plain, (data.normalised(split), data.split(split)[1]))
        for split in ("validation", "test")
    }
    variants["plain"] = {
        "what": VARIANTS["plain"][0],
        "test_accuracy": round(100 * plain_scores["test"], 2),
        "seconds_per_epoch": plain_seconds,
    }
    for name in FLAGS.beyond_variants:
        if name == "plain":
            continue
        network, seconds = trained(name, data)
        figures, curves = measure(network, data, plain_scores["validation"])
        for rule, curve in curves.items():
            fronts[f"{name}, {rule}"] = curve
        deepest = list(figures["test_accuracy_per_exit"].values())[-1]
        variants[name] = {
            "what": VARIANTS[name][0],
            **figures,
            "deepest_exit_minus_plain_points": round(
                deepest - variants["plain"]["test_accuracy"], 2
            ),
            "seconds_per_epoch": seconds,
        }
    if "sdn" in variants:
        for name, entry in variants.items():
            if name != "plain" and entry["seconds_per_epoch"]:
                reference = variants["sdn"]["seconds_per_epoch"]
                entry["seconds_per_epoch_vs_sdn"] = (
                    round(entry["seconds_per_epoch"] / reference, 3)
                    if reference
                    else None
                )
    throughput = side_by_side_throughput(data)
    result = {
        "setup": common.setup(),
        "budget": {
            "epochs_per_variant": FLAGS.beyond_epochs,
            "recipe": "SGD momentum 0.9, lr 0.1 cosine over the budget, weight "
            f"decay 5e-4, batch {recipes.BATCH}, crop + flip, seed {SEED}",
            "calibration": f"rules {FLAGS.beyond_rules} calibrated (and the "
            "decision fitted) on validation, figures on test",
        },
        "variants": variants,
        # Per-epoch times come from whenever each variant trained (other
        # jobs beside some); this is the comparable figure.
        "training_throughput_side_by_side": throughput,
        "seconds": round(time.time() - started, 1),
        "record": common.machine_record(argv),
    }
    _plot(fronts, variants)
    return common.finish("beyond_sdn", result, ["variants"])


def _plot(fronts, variants):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.6))
    axes = figure.subplots()
    for name, curve in fronts.items():
        axes.plot(
            [100 * macs for macs, _ in curve],
            [100 * accuracy for _, accuracy in curve],
            ("--" if tfee.rules.DECISION in name else "-")
            + ("." if name.endswith(ENSEMBLE_SUFFIX) else ""),
            label=name,
        )
    axes.axhline(variants["plain"]["test_accuracy"], ls=":", c="k", label="plain")
    axes.set_xlabel("mean MACs (% of the full network's MACs)")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(
        f"Beyond SDN, {FLAGS.beyond_epochs} epochs each"
        + (" (quick)" if FLAGS.quick else "")
    )
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    tag = "quick" if FLAGS.quick else "full"
    report.save_figure(
        figure, os.path.join(common.results_dir(), f"beyond_sdn_{tag}.png")
    )


def main(argv):
    run(argv)


if __name__ == "__main__":
    app.run(main)
