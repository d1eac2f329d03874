"""Trains an early-exit network in one of tfee's modes and saves it.

Modes: joint (SDN's ramped per-exit weights), post_trained (PTEENet: train
the backbone, freeze it, train only the heads), eenet (PTEENet's post-trained
heads with learned confidences and EENet's cost-aware loss) and distill
(self-distillation from the deepest exit). Writes `<save_dir>/network.keras`
and `<save_dir>/exit_accuracy.json`. Runs offline on the embedded digits:

    .venv/bin/python examples/train_early_exit.py --mode=eenet --num_epochs=5
"""

import json
import os

from absl import app
from absl import flags

import tfee
from tfee import keras

FLAGS = flags.FLAGS

MODES = ("joint", "post_trained", "eenet", "distill")
BACKBONES = ("small_cnn", "resnet_cifar", "vgg")

flags.DEFINE_string(
    "dataset", "digits", "'digits', an image folder, or a TFDS name (offline)."
)
flags.DEFINE_string("data_dir", None, "TFDS data_dir for TFDS names.")
flags.DEFINE_enum("backbone", "small_cnn", BACKBONES, "Backbone architecture.")
flags.DEFINE_list(
    "exits",
    ["0.3", "0.6"],
    "Exit placement: MACs fractions in (0, 1) (e.g. 0.15,0.3) or layer names.",
)
flags.DEFINE_enum("exit_head", "sdn", sorted(tfee.layers.HEAD_TYPES), "Exit head type.")
flags.DEFINE_enum("mode", "joint", MODES, "Training mode.")
flags.DEFINE_integer("num_epochs", 10, "Training epochs (per phase).")
flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_float("learning_rate", 3e-3, "Adam learning rate.")
flags.DEFINE_float("cost_lambda", 0.9, "EENet's cost penalty lambda (mode eenet).")
flags.DEFINE_float("kd_temperature", 3.0, "Distillation temperature (mode distill).")
flags.DEFINE_float("kd_weight", 0.3, "Distillation share in [0, 1] (mode distill).")
flags.DEFINE_string(
    "save_dir", "/tmp/tfee-train-early-exit", "Where the model and JSON go."
)
flags.DEFINE_integer("training_seed", 0, "Random seed of weights and data.")


def build_backbone(name, num_classes, input_shape):
    """One of the reference backbones, sized for the data."""
    if name == "small_cnn":
        return tfee.backbones.small_cnn(num_classes, input_shape)
    if name == "resnet_cifar":
        return tfee.backbones.resnet_cifar(20, num_classes, input_shape)
    if name == "vgg":
        return tfee.backbones.vgg(num_classes, input_shape)
    raise ValueError(f"backbone must be one of {BACKBONES}. Received: {name!r}")


def parse_placement(exits):
    """MACs fractions when every entry is a number, else layer names."""
    try:
        return tfee.FlopsFractions([float(e) for e in exits])
    except ValueError:
        return tfee.Layers(list(exits))


def train(
    dataset="digits",
    data_dir=None,
    backbone="small_cnn",
    exits=("0.3", "0.6"),
    head="sdn",
    mode="joint",
    epochs=10,
    batch_size=64,
    learning_rate=3e-3,
    cost_lambda=0.9,
    temperature=3.0,
    kd_weight=0.3,
    save_dir="/tmp/tfee-train-early-exit",
    seed=0,
):
    """Loads data, builds and trains the network, saves it; returns the summary.

    Returns:
      A dict with the mode, the saved model's path and every exit's test
      accuracy (also written to `save_dir/exit_accuracy.json`).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}. Received: mode={mode!r}")
    keras.utils.set_random_seed(seed)
    data = tfee.data.load(dataset, data_dir=data_dir, batch_size=batch_size, seed=seed)
    model = build_backbone(backbone, data.num_classes, data.input_shape)
    placement = parse_placement(exits)
    post_trained = mode in ("post_trained", "eenet")
    if post_trained:
        # PTEENet: the backbone is trained first and then frozen.
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        model.fit(data.train, validation_data=data.validation, epochs=epochs, verbose=2)
    network = tfee.attach_exits(
        model,
        placement,
        head=head,
        with_confidence=mode == "eenet",
        freeze_backbone=post_trained,
    )
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
        verbose=2,
    )
    accuracies = tfee.policy.exit_accuracy(network, data.test).exits
    os.makedirs(save_dir, exist_ok=True)
    model_path = os.path.join(save_dir, "network.keras")
    partial = os.path.join(save_dir, "network.partial.keras")
    network.save(partial)
    os.replace(partial, model_path)
    summary = {
        "dataset": dataset,
        "backbone": backbone,
        "mode": mode,
        "epochs": epochs,
        "model": model_path,
        "exit_test_accuracy": accuracies,
        "exit_cost_fraction": {
            e.name: e.fraction_of_full for e in tfee.cost.analyze(network).exits
        },
    }
    json_path = os.path.join(save_dir, "exit_accuracy.json")
    with open(json_path + ".partial", "w") as f:
        json.dump(summary, f, indent=2)
    os.replace(json_path + ".partial", json_path)
    return summary


def main(argv):
    del argv
    summary = train(
        dataset=FLAGS.dataset,
        data_dir=FLAGS.data_dir,
        backbone=FLAGS.backbone,
        exits=FLAGS.exits,
        head=FLAGS.exit_head,
        mode=FLAGS.mode,
        epochs=FLAGS.num_epochs,
        batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate,
        cost_lambda=FLAGS.cost_lambda,
        temperature=FLAGS.kd_temperature,
        kd_weight=FLAGS.kd_weight,
        save_dir=FLAGS.save_dir,
        seed=FLAGS.training_seed,
    )
    print(f"\n{summary['mode']} training on {summary['dataset']}: test accuracy")
    for name, accuracy in summary["exit_test_accuracy"].items():
        cost = summary["exit_cost_fraction"][name]
        print(f"  {name}: {100 * accuracy:5.1f}%  at {100 * cost:5.1f}% of full MACs")
    print(f"saved {summary['model']} and exit_accuracy.json beside it")


if __name__ == "__main__":
    app.run(main)
