"""tfee.exit_accuracy and ExitAccuracy.from_logits."""

import numpy as np
import pytest

import tfee
import tfee.policy
from tests.compress import _tiny
from tfee import keras
from tfee import tf


def test_from_logits_scores_each_exit_and_the_mean_of_their_probabilities():
    labels = np.array([0, 1, 1])
    exit_1 = np.array([[2.0, 0.0], [3.0, 0.0], [0.0, 1.0]])  # 2 of 3 right
    exit_2 = np.array([[0.0, 0.1], [0.0, 9.0], [0.0, 9.0]])  # 2 of 3 right
    result = tfee.policy.ExitAccuracy.from_logits([exit_1, exit_2], labels)
    assert result.exits == {"exit_1": 2 / 3, "exit_2": 2 / 3}
    # Sample 0: exit 1 is sure of class 0, exit 2 barely prefers 1; sample 1:
    # exit 2's certainty outweighs exit 1. The ensemble gets all three.
    assert result.ensemble == 1.0
    assert result.to_dict() == {"exits": result.exits, "ensemble": 1.0}


def test_from_logits_rejects_logits_that_do_not_match_the_labels():
    with pytest.raises(ValueError, match=r"from_logits: exit 2's logits .* n = 3"):
        tfee.policy.ExitAccuracy.from_logits(
            [np.zeros((3, 2)), np.zeros((2, 2))], [0, 1, 1]
        )
    with pytest.raises(ValueError, match="at least one exit"):
        tfee.policy.ExitAccuracy.from_logits([], [0])


def _network_and_its_own_labels(samples=48):
    """The tiny network and images labelled with its exit 1's predictions: in
    a fixed order exit 1 scores exactly 1.0, misaligned labels score ~1/3."""
    net = _tiny.network()
    rng = np.random.default_rng(1)
    images = rng.random((samples, 8, 8, 1), dtype="float32")
    labels = np.argmax(net.predict(images, verbose=0)[0], -1)
    return net, images, labels


def test_exit_accuracy_of_a_network_is_from_logits_of_its_outputs():
    net, images, labels = _network_and_its_own_labels()
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
    expected = tfee.policy.ExitAccuracy.from_logits(
        net.predict(images, verbose=0)[:2], labels
    )
    result = tfee.exit_accuracy(net, data)
    assert result == expected
    assert result.exits["exit_1"] == 1.0


def test_a_dataset_reshuffled_every_iteration_scores_as_in_a_fixed_order():
    net, images, labels = _network_and_its_own_labels()
    fixed = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
    shuffled = (
        tf.data.Dataset.from_tensor_slices((images, labels))
        .shuffle(len(labels), seed=3, reshuffle_each_iteration=True)
        .batch(8)
    )
    result = tfee.exit_accuracy(net, shuffled)
    assert result.exits["exit_1"] == 1.0
    assert result.exits == pytest.approx(tfee.exit_accuracy(net, fixed).exits)
    assert result.ensemble == pytest.approx(tfee.exit_accuracy(net, fixed).ensemble)


def test_exits_are_found_through_tfmot_prefixes_and_ordered_by_number():
    inputs = keras.Input((2,))
    # exit 2 always says class 1, exit 1 always class 0; outputs listed 2 first.
    second = keras.layers.Dense(
        2,
        name="quant_exit_2",
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant([0.0, 1.0]),
    )(inputs)
    confidence = keras.layers.Dense(1, name="confidence_1")(inputs)
    first = keras.layers.Dense(
        2,
        name="prune_low_magnitude_exit_1",
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant([1.0, 0.0]),
    )(inputs)
    net = keras.Model(inputs, [second, confidence, first])
    data = tf.data.Dataset.from_tensor_slices(
        (np.zeros((4, 2), "float32"), np.array([0, 0, 0, 1]))
    ).batch(3)
    result = tfee.exit_accuracy(net, data)
    assert result.exits == {"exit_1": 0.75, "exit_2": 0.25}


def test_exit_accuracy_rejects_networks_without_exits_and_bad_data():
    inputs = keras.Input((2,))
    plain = keras.Model(inputs, keras.layers.Dense(2, name="logits")(inputs))
    data = tf.data.Dataset.from_tensor_slices(
        (np.zeros((4, 2), "float32"), np.zeros(4, "int64"))
    ).batch(2)
    with pytest.raises(
        ValueError, match=r"exit_accuracy: `network` must .* \['logits'\]"
    ):
        tfee.exit_accuracy(plain, data)
    net = _tiny.network()
    images_only = tf.data.Dataset.from_tensor_slices(np.zeros((4, 8, 8, 1), "float32"))
    with pytest.raises(
        ValueError, match=r"\(images, labels\) batches. Received a batch: a"
    ):
        tfee.exit_accuracy(net, images_only.batch(2))
    with pytest.raises(ValueError, match="no samples"):
        tfee.exit_accuracy(net, _tiny.dataset().take(0))


def test_exit_accuracy_is_exported_from_tfee():
    assert tfee.exit_accuracy is tfee.exit_accuracy


def test_non_finite_logits_answer_no_class_and_count_as_wrong():
    accuracy = tfee.policy.ExitAccuracy.from_logits(
        [np.array([[np.nan, 0.0], [2.0, 0.0]])], np.array([0, 0])
    )
    assert accuracy.exits["exit_1"] == 0.5
    assert accuracy.ensemble == 0.5


def test_cached_outputs_answer_per_exit_accuracy_as_an_exit_accuracy():
    from tests.policy.conftest import make_outputs

    outputs = make_outputs(num_exits=3)
    accuracy = outputs.exit_accuracy()
    assert isinstance(accuracy, tfee.policy.ExitAccuracy)
    assert accuracy == tfee.policy.ExitAccuracy.from_logits(
        list(outputs.logits), outputs.labels
    )
    np.testing.assert_allclose(accuracy.per_exit(), outputs.correct().mean(axis=1))
    assert list(accuracy.exits) == ["exit_1", "exit_2", "exit_3"]
