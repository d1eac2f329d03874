"""BatchNormalization statistics re-estimated after pruning (issue 16)."""

import numpy as np
import pytest

import tfee
import tfee.compress
from tests.compress import _tiny
from tfee import keras


def _images(samples=32, seed=1):
    return np.random.default_rng(seed).random((samples, 8, 8, 1), dtype="float32")


def _statistics(model):
    return {
        name: (
            model.get_layer(name).moving_mean.numpy().copy(),
            model.get_layer(name).moving_variance.numpy().copy(),
        )
        for name in tfee.compress.batch_norm.batch_norm_layers(model)
    }


def test_statistics_become_the_moments_of_each_layers_inputs():
    network = _tiny.network()
    for name in ("block1_bn", "block2_bn"):  # Stale, far from the truth.
        layer = network.get_layer(name)
        layer.moving_mean.assign(layer.moving_mean + 5.0)
        layer.moving_variance.assign(layer.moving_variance * 9.0)
    images = _images()
    done = tfee.compress.reestimate_batch_norm(network, images, batch_size=5)
    assert done == ["block1_bn", "block2_bn"]
    for name in done:
        layer = network.get_layer(name)
        # Computed after the layers upstream were re-estimated.
        inputs = keras.Model(network.inputs, layer.input)(images).numpy()
        inputs = inputs.reshape(-1, inputs.shape[-1])
        np.testing.assert_allclose(layer.moving_mean.numpy(), inputs.mean(0), atol=1e-5)
        np.testing.assert_allclose(
            layer.moving_variance.numpy(), inputs.var(0, ddof=1), rtol=1e-4
        )


def test_a_dataset_of_image_label_batches_gives_the_same_statistics():
    images = _images()
    labels = np.zeros(len(images), np.int64)
    from_array, from_dataset = _tiny.network(), _tiny.network()
    tfee.compress.reestimate_batch_norm(from_array, images)
    dataset = tfee.tf.data.Dataset.from_tensor_slices((images, labels)).batch(7)
    tfee.compress.reestimate_batch_norm(from_dataset, dataset)
    for name, (mean, variance) in _statistics(from_array).items():
        np.testing.assert_allclose(_statistics(from_dataset)[name][0], mean, atol=1e-6)
        np.testing.assert_allclose(_statistics(from_dataset)[name][1], variance, 1e-5)


def _ordered(batch_norm_data):
    network = _tiny.network()
    pruned, scheduler = tfee.compress.pruning_plan(
        network,
        0.8,
        order="ordered",
        phase_steps=2,
        schedule=tfee.compress.Rounds(rounds=1, steps_per_round=2),
        batch_norm_data=batch_norm_data,
    )
    pruned.compile("adam", loss=tfee.losses.joint(pruned))
    with _tiny.eagerly():
        pruned.fit(_tiny.dataset(), epochs=2, callbacks=[scheduler], verbose=0)
    return pruned


def test_ordered_pruning_reestimates_the_frozen_backbones_statistics():
    """Issue 16: phase 2 trained the heads behind a frozen backbone whose BN
    statistics were those of its unpruned weights (exits at chance)."""
    images = _images()
    pruned = _ordered(images)
    after = _statistics(pruned)
    tfee.compress.reestimate_batch_norm(pruned, images)
    for name, (mean, variance) in _statistics(pruned).items():
        np.testing.assert_allclose(after[name][0], mean, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(after[name][1], variance, rtol=1e-4, err_msg=name)


def test_ordered_pruning_without_images_warns_that_statistics_go_stale():
    with pytest.warns(UserWarning, match="batch_norm_data=None"):
        pruned = _ordered(None)
    stale = _statistics(pruned)["block1_bn"][0]
    tfee.compress.reestimate_batch_norm(pruned, _images())
    assert not np.allclose(stale, _statistics(pruned)["block1_bn"][0], atol=1e-4)


def test_bad_images_are_refused_before_any_statistic_changes():
    network = _tiny.network()
    before = _statistics(network)
    with pytest.raises(ValueError, match="`batch_norm_data` images must have shape"):
        tfee.compress.reestimate_batch_norm(network, np.zeros((4, 9, 9, 1), "float32"))
    with pytest.raises(ValueError, match="`samples` must be a positive integer"):
        tfee.compress.reestimate_batch_norm(network, _images(), samples=0)
    for name, (mean, variance) in _statistics(network).items():
        np.testing.assert_array_equal(before[name][0], mean)
        np.testing.assert_array_equal(before[name][1], variance)
