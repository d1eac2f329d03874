"""examples/train_early_exit.py trains, saves and reports on the digits."""

import json
import os

import numpy as np
import pytest
from absl.testing import flagsaver

import tfee
from examples import train_early_exit
from tfee import keras


@pytest.mark.slow
# eenet covers the post-trained path (backbone first, then frozen), here with
# cascading heads and learned confidences together; joint runs in
# tests/examples/test_shell_chain.py, distill and post_trained share the rest
# with tests/training.
@pytest.mark.parametrize("mode", ["eenet"])
def test_main_writes_a_loadable_model_and_per_exit_accuracies(tmp_path, mode):
    with flagsaver.flagsaver(
        mode=mode,
        epochs=1,
        batch_size=256,
        exits=["block1_out", "block2_out"],
        head="linear",
        cascading=True,
        output_dir=str(tmp_path),
    ):
        train_early_exit.FLAGS(["train_early_exit"])
        train_early_exit.main([])
    with open(tmp_path / "training_summary.json") as f:
        summary = json.load(f)
    assert summary["mode"] == mode and summary["cascading"] is True
    assert list(summary["exit_test_accuracy"]) == ["exit_1", "exit_2", "exit_3"]
    assert all(0 <= a <= 1 for a in summary["exit_test_accuracy"].values())
    network = keras.models.load_model(os.path.join(tmp_path, "network.keras"))
    assert [e.name for e in tfee.exits(network)] == ["exit_1", "exit_2", "exit_3"]
    assert ("confidence_1" in network.output_names) == (mode == "eenet")
    assert [e.cascading for e in tfee.exits(network)] == [False, True, False]


def test_fractions_and_layer_names_both_place_exits():
    assert isinstance(train_early_exit.parse_placement(["0.2"]), tfee.FlopsFractions)
    assert isinstance(train_early_exit.parse_placement(["block1_out"]), tfee.Layers)


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode must be one of"):
        train_early_exit.train(tfee.data.load("digits"), mode="sequential")


@pytest.mark.slow
@pytest.mark.parametrize("api", ["tf_keras", "keras3"])
def test_model_attaches_exits_to_the_users_own_keras_file_and_trains_them(
    tmp_path, api
):
    # Issue 31, item 3: --model was ignored and small_cnn trained instead.
    # Issue 32: a file Keras 3 saved (`import keras`) comes in as well.
    import keras as keras3

    k = keras3 if api == "keras3" else keras
    inputs = k.Input((8, 8, 1))
    x = k.layers.Conv2D(6, 3, padding="same", activation="relu")(inputs)
    x = k.layers.MaxPooling2D(name="my_block")(x)
    x = k.layers.Conv2D(12, 3, padding="same", activation="relu", name="mine")(x)
    x = k.layers.GlobalAveragePooling2D()(x)
    own = k.Model(inputs, k.layers.Dense(10)(x))  # names tfee did not choose
    path = str(tmp_path / "mine.keras")
    own.save(path)
    with flagsaver.flagsaver(
        model=path,
        mode="post_trained",
        epochs=1,
        batch_size=256,
        exits=["my_block"],
        output_dir=str(tmp_path / "out"),
    ):
        train_early_exit.FLAGS(["train_early_exit"])
        train_early_exit.main([])
    with open(tmp_path / "out" / "training_summary.json") as f:
        summary = json.load(f)
    assert summary["model"] == path and summary["backbone"] == path
    network = keras.models.load_model(str(tmp_path / "out" / "network.keras"))
    assert [e.name for e in tfee.exits(network)] == ["exit_1", "exit_2"]
    # Post-trained: the given model was taken as trained, its weights kept.
    np.testing.assert_array_equal(
        network.get_layer("mine").kernel.numpy(),
        np.asarray(own.get_layer("mine").kernel.numpy()),
    )


@pytest.mark.parametrize(
    "extra,message",
    [({"backbone": "vgg"}, "both name the network"), ({}, "answers 3 classes")],
)
def test_model_with_a_backbone_or_other_classes_fails_in_one_line(
    tmp_path, extra, message
):
    path = str(tmp_path / "mine.keras")
    tfee.backbones.small_cnn(3, (8, 8, 1)).save(path)
    with flagsaver.flagsaver(model=path, output_dir=str(tmp_path), **extra):
        train_early_exit.FLAGS(
            ["train_early_exit"] + [f"--{k}={v}" for k, v in extra.items()]
        )
        with pytest.raises(train_early_exit.shell.CommandError, match=message):
            train_early_exit.main([])


def test_numbers_that_are_not_fractions_are_refused_as_fractions():
    # Issue 31: --exits=1.5 was taken for a layer name ("unknown layer 1.5").
    with pytest.raises(
        train_early_exit.shell.CommandError, match=r"--exits=1.5: MACs fractions"
    ):
        train_early_exit.parse_placement(["1.5"])


def test_an_interrupted_training_resumes_from_its_last_finished_epoch(
    tmp_path, monkeypatch
):
    # Issue 31: Ctrl-C in train_early_exit.py lost every epoch.
    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    data = tfee.data.load("digits", batch_size=256)
    backup, original = str(tmp_path / "backup"), train_early_exit._backup
    monkeypatch.setattr(
        train_early_exit, "_backup", lambda *a: original(*a) + [Interrupt()]
    )
    with pytest.raises(KeyboardInterrupt):
        train_early_exit.train(data, epochs=3, verbose=0, backup_dir=backup)
    history = keras.callbacks.History()
    monkeypatch.setattr(
        train_early_exit, "_backup", lambda *a: original(*a) + [history]
    )
    train_early_exit.train(data, epochs=3, verbose=0, backup_dir=backup)
    assert history.epoch == [2]  # Epochs 0 and 1 were kept; only 2 ran again.
