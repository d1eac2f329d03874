import numpy as np
import pytest

import tfee
from tests.training import _tiny
from tfee import keras
from tfee import tf
from tfee import tfmot


def test_distillation_loss_is_cross_entropy_at_zero_kd_weight():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 4)
    student = rng.normal(size=(4, 3)).astype("float32")
    teacher = rng.normal(size=(4, 3)).astype("float32")
    loss = tfee.training.distillation_loss(labels, student, teacher, 3.0, 0.0)
    expected = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, student)
    np.testing.assert_allclose(loss.numpy(), expected.numpy(), rtol=1e-6)


def test_distillation_loss_is_scaled_kl_at_full_kd_weight():
    student = np.array([[1.0, 0.0, -1.0]], "float32")
    teacher = np.array([[0.0, 2.0, 0.0]], "float32")
    loss = tfee.training.distillation_loss([0], student, teacher, 2.0, 1.0)
    p = tf.nn.softmax(teacher / 2.0).numpy()
    q = tf.nn.softmax(student / 2.0).numpy()
    assert loss.numpy()[0] == pytest.approx(4.0 * np.sum(p * np.log(p / q)), rel=1e-5)
    same = tfee.training.distillation_loss([0], student, student, 2.0, 1.0)
    assert same.numpy()[0] == pytest.approx(0.0, abs=1e-6)


def test_self_distillation_trains_the_student_in_place_and_logs_every_exit():
    student = _tiny.network()
    images, labels, dataset = _tiny.data()
    before = [w.numpy().copy() for w in student.trainable_weights]
    distiller = tfee.Distiller(student)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = distiller.fit(dataset, validation_data=dataset, epochs=1, verbose=0)
    assert all(
        not np.array_equal(b, w.numpy())
        for b, w in zip(before, student.trainable_weights)
    )
    for key in ("exit_1_loss", "exit_2_accuracy", "val_exit_1_accuracy"):
        assert key in history.history
    # The deepest exit is the teacher: it learns from the labels alone.
    result = distiller.evaluate(dataset, return_dict=True, verbose=0)
    deepest = student.predict(images, verbose=0)[-1]
    expected = keras.losses.sparse_categorical_crossentropy(
        labels, deepest, from_logits=True
    )
    assert result["exit_2_loss"] == pytest.approx(float(np.mean(expected)), rel=1e-4)


@pytest.mark.parametrize("match", ["deepest", "per_exit"])
def test_a_separate_teacher_is_left_unchanged(match):
    teacher = _tiny.network(seed=1)
    student = _tiny.network(seed=2)
    _, _, dataset = _tiny.data()
    before = [w.numpy().copy() for w in teacher.weights]
    distiller = tfee.Distiller(student, teacher, match=match)
    distiller.compile(optimizer="adam")
    distiller.fit(dataset, epochs=1, verbose=0)
    assert all(np.array_equal(b, w.numpy()) for b, w in zip(before, teacher.weights))


def test_a_single_logits_teacher_is_accepted():
    keras.utils.set_random_seed(3)
    teacher = tfee.backbones.small_cnn(_tiny.CLASSES, (8, 8, 1), widths=(4,))
    distiller = tfee.Distiller(_tiny.network(), teacher, kd_weight=1.0)
    distiller.compile(optimizer="adam")
    _, _, dataset = _tiny.data()
    assert np.isfinite(distiller.fit(dataset, verbose=0).history["loss"][0])


@pytest.mark.parametrize("ending", ["layer", "activation"])
def test_a_softmax_teacher_is_distilled_as_its_logits(ending):
    """Issue 16: probabilities taken as logits gave near-uniform targets."""
    keras.utils.set_random_seed(3)
    logits_teacher = tfee.backbones.small_cnn(_tiny.CLASSES, (8, 8, 1), widths=(4,))
    # The same classifier ending in softmax, as keras.applications models do.
    if ending == "layer":
        probabilities = keras.layers.Softmax()(logits_teacher.output)
        softmax_teacher = keras.Model(logits_teacher.input, probabilities)
    else:
        dense = logits_teacher.layers[-1]
        features = dense.input
        head = keras.layers.Dense(_tiny.CLASSES, activation="softmax")
        softmax_teacher = keras.Model(logits_teacher.input, head(features))
        head.set_weights(dense.get_weights())
    student = _tiny.network()
    _, _, dataset = _tiny.data()
    losses = []
    for teacher in (logits_teacher, softmax_teacher):
        distiller = tfee.Distiller(student, teacher, kd_weight=1.0)
        distiller.compile(optimizer="adam")
        losses.append(distiller.evaluate(dataset, return_dict=True, verbose=0))
    for name in ("exit_1_loss", "exit_2_loss"):
        assert losses[1][name] == pytest.approx(losses[0][name], rel=1e-4)


def test_a_pruned_student_keeps_its_wrappers_and_gets_sparse():
    student = tfmot.sparsity.keras.prune_low_magnitude(
        _tiny.network(),
        pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(
            0.5, begin_step=0, frequency=1
        ),
    )
    _, _, dataset = _tiny.data()
    distiller = tfee.Distiller(student)
    distiller.compile(optimizer="adam")
    distiller.fit(
        dataset,
        epochs=1,
        verbose=0,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
    )
    kernel = student.get_layer("prune_low_magnitude_block1_conv").weights[0].numpy()
    assert np.mean(kernel == 0) == pytest.approx(0.5, abs=0.05)


def test_an_exit_with_zero_weight_gets_no_gradient():
    student = _tiny.network()
    _, _, dataset = _tiny.data()
    head = student.get_layer("exit_1_head")
    before = [w.numpy().copy() for w in head.trainable_weights]
    distiller = tfee.Distiller(student, weights=[0.0, 1.0])
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = distiller.fit(dataset, epochs=1, verbose=0)
    for b, w in zip(before, head.trainable_weights):
        np.testing.assert_array_equal(b, w.numpy())
    # Its term is still logged, unweighted.
    assert history.history["exit_1_loss"][0] > 0.1


def test_sdn_ramp_ramps_a_distillers_weights_and_logs_the_mean_exit_loss():
    student = _tiny.network()
    _, _, dataset = _tiny.data()
    distiller = tfee.Distiller(student, weights="sdn")
    assert [float(w.numpy()) for w in distiller.exit_weights] == pytest.approx(
        [0.01, 1.0]
    )
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    ramp = tfee.callbacks.SDNRamp(max_weights=[0.5], ramp_epochs=2)
    history = distiller.fit(dataset, epochs=3, callbacks=[ramp], verbose=0)
    assert float(distiller.exit_weights[0].numpy()) == pytest.approx(0.5)
    assert float(distiller.exit_weights[1].numpy()) == 1.0
    logged = history.history
    expected = np.mean([logged["exit_1_loss"][-1], logged["exit_2_loss"][-1]])
    assert logged["mean_exit_loss"][-1] == pytest.approx(expected)


def test_recipes_distill_mode_with_sdn_weights_ramps_them():
    student = _tiny.network()
    _, _, dataset = _tiny.data()
    history = tfee.recipes.fit(
        student, dataset, mode="distill", weights="sdn", epochs=2, verbose=0
    )
    # Epoch 2 starts half-way up SDN's ramp to 0.9 for the one internal exit.
    assert float(history.model.exit_weights[0].numpy()) == pytest.approx(0.46)
    assert "mean_exit_loss" in history.history


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"weights": "ramped"}, "`weights` must be 'uniform', 'sdn' or a list of 2"),
        ({"weights": [1.0]}, "`weights` needs one weight per exit"),
        ({"weights": [1.0, -1.0]}, "`weights` must be a finite number >= 0"),
        ({"temperature": 0.0}, "`temperature` must be a finite number > 0"),
        ({"kd_weight": 1.5}, r"`kd_weight` must be a number in \[0, 1\]"),
        ({"kd_weight": -0.1}, r"`kd_weight` must be a number in \[0, 1\]"),
        ({"match": "nearest"}, "`match` must be one of"),
    ],
)
def test_bad_distillation_settings_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tfee.Distiller(_tiny.network(), **kwargs)


def test_a_teacher_with_other_classes_is_refused():
    teacher = tfee.backbones.small_cnn(5, (8, 8, 1), widths=(4,))
    with pytest.raises(ValueError, match="must predict the student's 3 classes"):
        tfee.Distiller(_tiny.network(), teacher)


def test_a_teacher_with_another_input_shape_is_refused():
    teacher = tfee.backbones.small_cnn(3, (16, 16, 1), widths=(4,))
    with pytest.raises(ValueError, match=r"input shape \(8, 8, 1\)"):
        tfee.Distiller(_tiny.network(), teacher)


def test_per_exit_matching_needs_as_many_teacher_exits():
    teacher = tfee.backbones.small_cnn(3, (8, 8, 1), widths=(4,))
    with pytest.raises(ValueError, match="as many exits as the student"):
        tfee.Distiller(_tiny.network(), teacher, match="per_exit")
