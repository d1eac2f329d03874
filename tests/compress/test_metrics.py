"""Per-exit and ensemble accuracy from logits and from a network."""

import numpy as np

import tfee.compress
from tests.compress import _tiny


def test_logits_accuracy_scores_each_exit_and_the_mean_of_their_probabilities():
    labels = np.array([0, 1, 1])
    exit_1 = np.array([[2.0, 0.0], [3.0, 0.0], [0.0, 1.0]])  # 2 of 3 right
    exit_2 = np.array([[0.0, 0.1], [0.0, 9.0], [0.0, 9.0]])  # 2 of 3 right
    result = tfee.compress.logits_accuracy([exit_1, exit_2], labels)
    assert result.exits == {"exit_1": 2 / 3, "exit_2": 2 / 3}
    # Sample 0: exit 1 is sure of class 0, exit 2 barely prefers 1; sample 1:
    # exit 2's certainty outweighs exit 1. The ensemble gets all three.
    assert result.ensemble == 1.0


def test_exit_accuracy_of_a_network_is_logits_accuracy_of_its_outputs():
    net, data = _tiny.network(), _tiny.dataset()
    logits = net.predict(data, verbose=0)[:2]
    labels = np.concatenate([np.asarray(y) for _, y in data])
    expected = tfee.compress.logits_accuracy(logits, labels)
    assert tfee.compress.exit_accuracy(net, data) == expected
