"""Trains an early-exit network in one of tfee's modes and saves it.

Modes: joint (SDN's ramped per-exit weights), post_trained (PTEENet: train
the backbone, freeze it, train only the heads), eenet (PTEENet's post-trained
heads with learned confidences and EENet's cost-aware loss) and distill
(self-distillation from the deepest exit). Writes OUTPUT_DIR/network.keras,
training_summary.json (per-exit test accuracy and MACs) and exits.png. With
--normalise the saved network normalises its input itself (the training
split's per-channel statistics), so every later step takes raw images:

    .venv/bin/python examples/train_early_exit.py --data=../shared/datasets/cifar10 \
        --backbone=resnet_cifar --epochs=5 --output_dir=/tmp/tfee-chain

With --model=my.keras the exits go on your own saved Keras model instead of
a --backbone (--exits: its layer names or MACs fractions), trained as the
mode says: joint and distill fine-tune it with its exits, post_trained and
eenet take it as trained and train only the heads on it frozen:

    .venv/bin/python examples/train_early_exit.py --model=my.keras \
        --exits=block2_out,block4_out --mode=post_trained --data=my_images/
"""

import os
import sys

from absl import flags

if not __package__:  # Run as a script: make `examples` importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from examples import shell  # noqa: E402

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(shell)  # --help lists the shared flags too
BINARY = "train_early_exit"
MODES = ("joint", "post_trained", "eenet", "distill")
BACKBONES = ("small_cnn", "resnet_cifar", "vgg")

flags.DEFINE_enum("backbone", "small_cnn", BACKBONES, "Backbone architecture.")
flags.DEFINE_list(
    "exits",
    ["0.3", "0.6"],
    "Exit placement: MACs fractions in (0, 1) (e.g. 0.15,0.3) or layer names.",
)
flags.DEFINE_enum("mode", "joint", MODES, "Training mode.")
flags.DEFINE_float("learning_rate", 3e-3, "Adam learning rate.")
flags.DEFINE_float("cost_lambda", 0.9, "EENet's cost penalty lambda (mode eenet).")
flags.DEFINE_float("kd_temperature", 3.0, "Distillation temperature (mode distill).")
flags.DEFINE_float("kd_weight", 0.3, "Distillation share in [0, 1] (mode distill).")
flags.DEFINE_bool(
    "cascading",
    False,
    "Zero Time Waste's cascading heads: every head after the first also reads "
    "the previous exit's logits (tfee.attach_exits(cascading=True)).",
)
flags.DEFINE_bool(
    "normalise",
    False,
    "Train on per-channel normalised images (statistics from the training "
    "split) and save the network with that normalisation inside it, so the "
    "later binaries, the exported files and the cascade take raw images.",
)

DEFAULT_EPOCHS = 10


def build_backbone(name, num_classes, input_shape):
    """One of the reference backbones, sized for the data."""
    import tfee

    if name == "small_cnn":
        return tfee.backbones.small_cnn(num_classes, input_shape)
    if name == "resnet_cifar":
        return tfee.backbones.resnet_cifar(20, num_classes, input_shape)
    if name == "vgg":
        return tfee.backbones.vgg(num_classes, input_shape)
    raise ValueError(f"backbone must be one of {BACKBONES}. Received: {name!r}")


def parse_placement(exits):
    """MACs fractions when every entry is a number, else layer names."""
    import tfee

    try:
        fractions = [float(e) for e in exits]
    except ValueError:
        return tfee.Layers(list(exits))
    try:
        return tfee.FlopsFractions(fractions)
    except ValueError as error:  # Numbers, but not fractions: say so.
        raise shell.CommandError(
            f"--exits={','.join(exits)}: MACs fractions must lie in (0, 1), "
            f"increasing ({error})"
        ) from None


def own_model(data_shape=None):
    """The Keras model at --model, checked to be a classifier without exits."""
    import tfee

    model = shell.load_keras_model()
    if tfee.is_early_exit(model):
        raise shell.CommandError(
            f"--model={FLAGS.model} already has exits "
            f"({[e.name for e in tfee.exits(model)]}); give the model without "
            "them (tfee.detach_exits) or train it further with tfee.recipes.fit"
        )
    if FLAGS["backbone"].present:
        raise shell.CommandError(
            f"--backbone={FLAGS.backbone} and --model={FLAGS.model} both name the "
            "network to train; give one"
        )
    return model


def train(
    data,
    backbone="small_cnn",
    exits=("0.3", "0.6"),
    head="sdn",
    mode="joint",
    epochs=DEFAULT_EPOCHS,
    learning_rate=3e-3,
    cost_lambda=0.9,
    temperature=3.0,
    kd_weight=0.3,
    cascading=False,
    seed=0,
    verbose=2,
    backup_dir=None,
):
    """Builds and trains a network on `data` (a `tfee.data.DataSplits`).

    Args:
      backbone: one of `BACKBONES`, built for the data, or a Keras model
        (the user's own, taken as trained: post_trained and eenet train only
        the heads on it).
      backup_dir: where `keras.callbacks.BackupAndRestore` keeps each
        phase's last finished epoch, so that an interrupted run (Ctrl-C)
        resumes there when run again with the same arguments; None keeps no
        backup.

    Returns:
      The trained early-exit network.
    """
    import tfee
    from tfee import keras

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}. Received: mode={mode!r}")
    keras.utils.set_random_seed(seed)
    given = isinstance(backbone, keras.Model)
    if given:
        model = backbone
        shell.check_classes(model.output_shape[-1], data)
    else:
        model = build_backbone(backbone, data.num_classes, data.input_shape)
    placement = parse_placement(exits)
    post_trained = mode in ("post_trained", "eenet")
    if post_trained and given:
        shell.progress(BINARY, "phase 1/2: your model, taken as trained (frozen)")
    elif post_trained:
        # PTEENet: the backbone is trained first and then frozen.
        shell.progress(BINARY, f"phase 1/2: backbone alone, {epochs} epochs")
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        model.fit(
            data.train,
            validation_data=data.validation,
            epochs=epochs,
            verbose=verbose,
            callbacks=_backup(backup_dir, "backbone"),
        )
    network = tfee.attach_exits(
        model,
        placement,
        head=head,
        with_confidence=mode == "eenet",
        cascading=cascading,
        freeze_backbone=post_trained,
    )
    phase = "phase 2/2: heads on the frozen backbone" if post_trained else mode
    shell.progress(BINARY, f"{phase}, {epochs} epochs")
    tfee.recipes.fit(
        network,
        data.train,
        data.validation,
        mode={"post_trained": "joint"}.get(mode, mode),
        epochs=epochs,
        optimizer=keras.optimizers.Adam(learning_rate),
        weights="uniform" if mode == "post_trained" else "sdn",
        lam=cost_lambda,
        targets="backbone",
        temperature=temperature,
        kd_weight=kd_weight,
        verbose=verbose,
        callbacks=_backup(backup_dir, "exits"),
    )
    return network


def _backup(backup_dir, phase):
    """BackupAndRestore for one training phase (each phase its own folder)."""
    from tfee import keras

    if backup_dir is None:
        return []
    return [keras.callbacks.BackupAndRestore(os.path.join(backup_dir, phase))]


def summarize(network, data):
    """Per-exit test accuracy and MACs share, as the summary JSON holds them."""
    import tfee

    accuracies = tfee.exit_accuracy(network, data.test).exits
    costs = {e.name: e.fraction_of_full for e in tfee.cost.analyze(network).exits}
    return {"exit_test_accuracy": accuracies, "exit_cost_fraction": costs}


def plot_exits(path, summary, title):
    """Test accuracy against MACs share, one point per exit."""
    from tfee import report

    names = list(summary["exit_test_accuracy"])
    report.plot_exits(
        path,
        names,
        [summary["exit_cost_fraction"][n] for n in names],
        [summary["exit_test_accuracy"][n] for n in names],
        title=title,
    )


def main(argv):
    shell.no_arguments(argv)
    shell.check_head()
    output_dir = shell.output_dir(BINARY)
    model = own_model() if FLAGS.model else None
    data = shell.load_data(
        None if model is None else model.input_shape[1:], normalise=FLAGS.normalise
    )
    network = train(
        data,
        backbone=FLAGS.backbone if model is None else model,
        exits=FLAGS.exits,
        head=FLAGS.head,
        mode=FLAGS.mode,
        epochs=shell.epochs(DEFAULT_EPOCHS),
        learning_rate=FLAGS.learning_rate,
        cost_lambda=FLAGS.cost_lambda,
        temperature=FLAGS.kd_temperature,
        kd_weight=FLAGS.kd_weight,
        cascading=FLAGS.cascading,
        seed=FLAGS.seed,
        verbose=FLAGS.keras_verbose,
        backup_dir=os.path.join(output_dir, "backup"),
    )
    summary = {
        **shell.labels(BINARY, "test"),
        "backbone": FLAGS.backbone if model is None else FLAGS.model,
        "mode": FLAGS.mode,
        "cascading": FLAGS.cascading,
        "epochs": shell.epochs(DEFAULT_EPOCHS),
        "saved_model": os.path.join(output_dir, "network.keras"),
        "normalised_in_model": None,
        **summarize(network, data),
    }
    if data.normalisation:
        import tfee

        network = tfee.include_normalisation(network, data.normalisation)
        summary["normalised_in_model"] = tfee.included_normalisation(network)
    model_path = summary["saved_model"]
    shell.save_network(network, model_path, data.class_names)
    shell.write_summary(output_dir, "training_summary.json", summary)
    plot_exits(
        os.path.join(output_dir, "exits.png"),
        summary,
        f"{FLAGS.backbone if model is None else 'exits'} ({FLAGS.mode}) on "
        f"{shell.title(BINARY, 'test')}",
    )
    print(f"\n{FLAGS.mode} training on {FLAGS.data}: test accuracy")
    for name, accuracy in summary["exit_test_accuracy"].items():
        cost = summary["exit_cost_fraction"][name]
        print(
            f"  {name}: {100 * accuracy:5.1f}%  at {100 * cost:5.1f}% of the full "
            "network's MACs"
        )
    print(
        f"saved {model_path}; its class names, training_summary.json and exits.png "
        "beside it"
    )


if __name__ == "__main__":
    shell.run(main)
