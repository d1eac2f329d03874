import importlib.util
import os
import warnings

import numpy as np
import pytest

import tfee
from tests.training import _tiny
from tfee import keras


class _Interrupt(keras.callbacks.Callback):
    """Stops a fit by raising after epoch `after` (0-based), like a crash."""

    def __init__(self, after):
        super().__init__()
        self.after = after
        self.weights = None

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.after:
            self.weights = [w.copy() for w in self.model.get_weights()]
            raise RuntimeError("interrupted")


class _Record(keras.callbacks.Callback):
    def __init__(self, losses):
        super().__init__()
        self.losses = losses
        self.start_weights = None
        self.epochs = []

    def on_train_begin(self, logs=None):
        self.start_weights = self.model.get_weights()

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append((epoch, float(self.losses["exit_1"].weight.numpy())))


def _joint(net, weights="sdn"):
    loss = tfee.losses.joint(net, weights)
    net.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss=loss,
        metrics={name: ["accuracy"] for name in loss},
    )
    return loss


def test_backup_and_restore_resumes_epochs_weights_and_ramp(tmp_path):
    _, _, dataset = _tiny.data()
    backup = str(tmp_path / "backup")
    net = _tiny.network(seed=0)
    _joint(net)
    interrupt = _Interrupt(after=1)
    with pytest.raises(RuntimeError, match="interrupted"):
        net.fit(
            dataset,
            epochs=4,
            verbose=0,
            callbacks=[
                keras.callbacks.BackupAndRestore(backup),
                tfee.callbacks.SDNRamp(max_weights=[0.8]),
                interrupt,
            ],
        )

    resumed = _tiny.network(seed=1)
    losses = _joint(resumed)
    record = _Record(losses)
    history = resumed.fit(
        dataset,
        epochs=4,
        verbose=0,
        callbacks=[
            keras.callbacks.BackupAndRestore(backup),
            tfee.callbacks.SDNRamp(max_weights=[0.8]),
            record,
        ],
    )
    assert history.epoch == [2, 3]
    assert all(
        np.array_equal(a, b) for a, b in zip(interrupt.weights, record.start_weights)
    )
    assert record.epochs == [(2, pytest.approx(0.41)), (3, pytest.approx(0.61))]


def test_early_stopping_watches_one_exits_validation_accuracy():
    _, _, dataset = _tiny.data()
    net = _tiny.network()
    _joint(net, "uniform")
    # An unreachable baseline stops after the second epoch, but only if the
    # monitored name exists (a missing one only warns and never stops).
    stop = keras.callbacks.EarlyStopping(
        monitor="val_exit_2_accuracy", mode="max", baseline=1.5, patience=1
    )
    history = net.fit(
        dataset, validation_data=dataset, epochs=5, callbacks=[stop], verbose=0
    )
    assert len(history.epoch) == 2


def test_early_stopping_watches_a_wrappers_exit_metric():
    _, _, dataset = _tiny.data()
    distiller = tfee.Distiller(_tiny.network())
    distiller.compile(optimizer="adam")
    stop = keras.callbacks.EarlyStopping(
        monitor="val_exit_1_accuracy", mode="max", baseline=1.5, patience=1
    )
    history = distiller.fit(
        dataset, validation_data=dataset, epochs=5, callbacks=[stop], verbose=0
    )
    assert len(history.epoch) == 2


def test_model_checkpoint_saves_a_network_that_loads_back(tmp_path):
    images, _, dataset = _tiny.data()
    net = _tiny.network()
    _joint(net)
    path = str(tmp_path / "best.keras")
    net.fit(
        dataset,
        validation_data=dataset,
        epochs=1,
        verbose=0,
        callbacks=[
            tfee.callbacks.SDNRamp(),
            keras.callbacks.ModelCheckpoint(path, monitor="val_exit_2_accuracy"),
        ],
    )
    loaded = keras.models.load_model(path)
    for a, b in zip(loaded.predict(images, verbose=0), net.predict(images, verbose=0)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_model_checkpoint_saves_a_wrappers_weights(tmp_path):
    images, _, dataset = _tiny.data()
    trainer = tfee.EENet(_tiny.network(with_confidence=True))
    trainer.compile(optimizer="adam")
    path = str(tmp_path / "weights.ckpt")
    trainer.fit(
        dataset,
        epochs=1,
        verbose=0,
        callbacks=[keras.callbacks.ModelCheckpoint(path, save_weights_only=True)],
    )
    fresh = _tiny.network(seed=5, with_confidence=True)
    restored = tfee.EENet(fresh)
    restored.load_weights(path).expect_partial()
    np.testing.assert_allclose(
        fresh.predict(images, verbose=0)[0],
        trainer.network.predict(images, verbose=0)[0],
        rtol=1e-5,
    )


def test_tensorboard_writes_event_files_when_tensorboard_is_installed(tmp_path):
    _, _, dataset = _tiny.data()
    trainer = tfee.EENet(_tiny.network(with_confidence=True))
    trainer.compile(optimizer="adam")
    board = keras.callbacks.TensorBoard(str(tmp_path))
    if importlib.util.find_spec("tensorboard") is None:
        # TF 2.21 no longer ships tensorboard: tf.summary.scalar says so.
        with pytest.raises(Exception, match="TensorBoard is not installed"):
            trainer.fit(dataset, epochs=1, verbose=0, callbacks=[board])
        return
    trainer.fit(
        dataset, validation_data=dataset, epochs=1, verbose=0, callbacks=[board]
    )
    events = [
        name
        for _, _, files in os.walk(tmp_path)
        for name in files
        if name.startswith("events.out.tfevents")
    ]
    assert len(events) >= 2  # train and validation


def test_backup_and_restore_resumes_a_distillers_student(tmp_path):
    _, _, dataset = _tiny.data()
    backup = str(tmp_path / "backup")
    first = tfee.Distiller(_tiny.network(seed=0))
    first.compile(optimizer="adam")
    interrupt = _Interrupt(after=0)
    with pytest.raises(RuntimeError, match="interrupted"):
        first.fit(
            dataset,
            epochs=2,
            verbose=0,
            callbacks=[keras.callbacks.BackupAndRestore(backup), interrupt],
        )
    student = _tiny.network(seed=1)
    resumed = tfee.Distiller(student)
    resumed.compile(optimizer="adam")
    restored = []
    history = resumed.fit(
        dataset,
        epochs=2,
        verbose=0,
        callbacks=[
            keras.callbacks.BackupAndRestore(backup),
            keras.callbacks.LambdaCallback(
                on_train_begin=lambda logs: restored.append(resumed.get_weights())
            ),
        ],
    )
    assert history.epoch == [1]
    assert all(np.array_equal(a, b) for a, b in zip(interrupt.weights, restored[0]))


def test_the_ramp_logs_a_comparable_loss_and_warns_about_monitoring_the_ramped_one():
    """Issue 16: EarlyStopping/ModelCheckpoint on the ramped val_loss kept the
    worst epoch; the ramp now says so and logs what to monitor instead."""
    _, labels, dataset = _tiny.data()
    net = _tiny.network()
    net.compile(
        optimizer="adam",
        loss=tfee.losses.joint(net, "sdn"),
        metrics={name: "accuracy" for name in net.output_names},
    )
    seen = {}

    class Seen(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen[epoch] = dict(logs)

    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=5)
    with pytest.warns(UserWarning, match=r"EarlyStopping monitors 'val_loss'"):
        net.fit(
            dataset,
            validation_data=dataset,
            epochs=2,
            verbose=0,
            callbacks=[tfee.callbacks.SDNRamp(), stop, Seen()],
        )
    logs = seen[1]
    # The unweighted cross-entropy, averaged over the exits.
    outputs = net.predict(dataset, verbose=0)
    expected = np.mean(
        [
            keras.losses.sparse_categorical_crossentropy(
                labels, logits, from_logits=True
            )
            .numpy()
            .mean()
            for logits in outputs
        ]
    )
    assert logs["val_mean_exit_loss"] == pytest.approx(expected, rel=1e-3)
    assert logs["mean_exit_loss"] > 0
    assert logs["val_mean_exit_accuracy"] == pytest.approx(
        np.mean([logs["val_exit_1_accuracy"], logs["val_exit_2_accuracy"]])
    )


def test_monitoring_the_comparable_loss_does_not_warn():
    _, _, dataset = _tiny.data()
    net = _tiny.network()
    _joint(net)
    stop = keras.callbacks.EarlyStopping(monitor="val_mean_exit_loss", patience=5)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*SDNRamp.*")
        net.fit(
            dataset,
            validation_data=dataset,
            epochs=1,
            verbose=0,
            callbacks=[tfee.callbacks.SDNRamp(), stop],
        )


@pytest.mark.parametrize("wrapper", ["eenet", "distiller"])
def test_model_checkpoint_on_a_wrapper_saves_the_network_it_trains(wrapper, tmp_path):
    """Issue 16: the wrappers' .keras files could not be loaded back."""
    images, _, dataset = _tiny.data()
    net = _tiny.network(with_confidence=wrapper == "eenet")
    trainer = tfee.EENet(net) if wrapper == "eenet" else tfee.Distiller(net)
    trainer.compile(optimizer="adam")
    path = str(tmp_path / "best.keras")
    trainer.fit(
        dataset,
        epochs=1,
        verbose=0,
        callbacks=[keras.callbacks.ModelCheckpoint(path)],
    )
    loaded = keras.models.load_model(path)
    assert loaded.output_names == net.output_names
    for a, b in zip(loaded.predict(images, verbose=0), net.predict(images, verbose=0)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_backup_and_restore_does_not_call_a_wrapper_unbuilt(tmp_path, caplog):
    _, _, dataset = _tiny.data()
    trainer = tfee.Distiller(_tiny.network(seed=0))
    trainer.compile(optimizer="adam")
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with caplog.at_level("WARNING"):
        trainer.fit(dataset, epochs=1, verbose=0, callbacks=[backup])
    assert "must be built" not in caplog.text
