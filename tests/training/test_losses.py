import warnings

import numpy as np
import pytest

import tfee
from tests.training import _tiny
from tfee import keras
from tfee._keras import tf


def _compile(net, weights):
    net.compile(
        optimizer=keras.optimizers.SGD(0.05),
        loss=tfee.losses.joint(net, weights),
        metrics={name: ["accuracy"] for name in net.output_names},
    )


def test_fit_on_tf_data_logs_every_exits_loss_and_accuracy_in_history():
    net = _tiny.network()
    _, _, dataset = _tiny.data()
    _compile(net, "uniform")
    history = net.fit(dataset, validation_data=dataset, epochs=2, verbose=0)
    for name in ("exit_1", "exit_2"):
        for key in (f"{name}_loss", f"{name}_accuracy", f"val_{name}_accuracy"):
            assert len(history.history[key]) == 2


def test_fixed_weights_scale_each_exits_cross_entropy():
    net = _tiny.network()
    images, labels, dataset = _tiny.data()
    _compile(net, [2.0, 0.0])
    result = net.evaluate(dataset, return_dict=True, verbose=0)
    logits = net.predict(images, verbose=0)[0]
    expected = keras.losses.sparse_categorical_crossentropy(
        labels, logits, from_logits=True
    ).numpy()
    assert result["exit_2_loss"] == pytest.approx(0.0)
    assert result["loss"] == pytest.approx(2 * expected.mean(), rel=1e-4)


def test_sdn_ramp_raises_internal_weights_linearly_and_keeps_the_deepest():
    net = _tiny.network()
    _, _, dataset = _tiny.data()
    _compile(net, "sdn")
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: seen.append(
            [float(loss.weight.numpy()) for loss in net.loss.values()]
        )
    )
    net.fit(
        dataset,
        epochs=3,
        callbacks=[tfee.callbacks.SDNRamp(max_weights=[0.6]), record],
        verbose=0,
    )
    assert np.allclose([s[0] for s in seen], [0.01, 0.21, 0.41])
    assert [s[1] for s in seen] == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    "weights, message",
    [
        ([1.0], r"one weight per exit \(2"),
        ([1.0, -0.5], "finite number >= 0"),
        ("ramp", "'uniform', 'sdn' or a list"),
    ],
)
def test_bad_loss_weights_raise_clear_errors(weights, message):
    with pytest.raises(ValueError, match=message):
        tfee.losses.joint(_tiny.network(), weights)


def test_joint_loss_refuses_a_network_with_nothing_left_to_train():
    net = _tiny.network()
    net.trainable = False
    with pytest.raises(ValueError, match="nothing left to train"):
        tfee.losses.joint(net)


def test_joint_says_that_learned_confidences_get_no_loss():
    """Issue 16: confidence heads trained with the joint loss stayed at their
    initial weights without a word from tfee."""
    with pytest.warns(UserWarning, match=r"learned confidences \['confidence_1'\]"):
        tfee.losses.joint(_tiny.network(with_confidence=True))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*learned confidences.*")
        tfee.losses.joint(_tiny.network())


def test_one_hot_labels_give_the_same_losses_as_integer_labels():
    # Issue 31: one-hot labels (a common Keras habit) were read as batch x
    # classes integer labels.
    net = _tiny.network()
    images, labels, _ = _tiny.data()
    classes = net.outputs[0].shape[-1]
    one_hot = np.eye(classes, dtype="float32")[labels]
    net.compile(optimizer="sgd", loss=tfee.losses.joint(net, "uniform"))
    sparse = net.evaluate(images, [labels] * 2, return_dict=True, verbose=0)
    dense = net.evaluate(images, [one_hot] * 2, return_dict=True, verbose=0)
    assert dense["loss"] == pytest.approx(sparse["loss"], rel=1e-6)
    distiller = tfee.Distiller(net)
    distiller.compile(keras.optimizers.SGD(0.0))
    got = distiller.evaluate(images, one_hot, return_dict=True, verbose=0)
    want = distiller.evaluate(images, labels, return_dict=True, verbose=0)
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-6)


@pytest.mark.parametrize("bad", [-1, 7])
def test_labels_outside_the_classes_stop_fit_with_the_class_range(bad):
    # Issue 31: TensorFlow raised deep in the cross-entropy on CPU (and gives
    # NaN on GPU) without naming the network's class count.
    net = _tiny.network()
    images, labels, _ = _tiny.data()
    labels = labels.copy()
    labels[3] = bad
    classes = net.outputs[0].shape[-1]
    net.compile(optimizer="sgd", loss=tfee.losses.joint(net, "uniform"))
    match = rf"labels must be class indices in \[0, {classes}\)"
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        net.fit(images, [labels] * 2, epochs=1, verbose=0)
    distiller = tfee.Distiller(net)
    distiller.compile(keras.optimizers.SGD(0.0))
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        distiller.fit(images, labels, epochs=1, verbose=0)
