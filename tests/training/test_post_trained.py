import numpy as np
import pytest

import tfee
from tests.training import _tiny


def _backbone_layers(net):
    heads = {s for section in tfee.sections(net) for s in section.head_layers}
    return [
        layer
        for layer in net.layers
        if layer.name not in heads and not layer.name.startswith("exit_")
    ]


@pytest.mark.parametrize("mode", ["joint", "eenet"])
def test_frozen_backbone_stays_bit_identical_and_only_heads_train(mode):
    net = _tiny.network(freeze_backbone=True, with_confidence=True)
    _, _, dataset = _tiny.data()
    backbone = _backbone_layers(net)
    before = {w.name: w.numpy().copy() for layer in backbone for w in layer.weights}
    heads_before = [w.numpy().copy() for w in net.trainable_weights]
    assert any("moving_mean" in name for name in before)

    tfee.recipes.fit(
        net,
        dataset,
        mode=mode,
        epochs=2,
        optimizer="adam",
        weights="uniform",
        verbose=0,
    )

    after = {w.name: w.numpy() for layer in backbone for w in layer.weights}
    assert before.keys() == after.keys()
    for name in before:
        # Bit-identical: includes BatchNormalization's moving statistics.
        assert np.array_equal(before[name], after[name]), name
    assert any(
        not np.array_equal(a, w.numpy())
        for a, w in zip(heads_before, net.trainable_weights)
    )


@pytest.mark.parametrize("mode", ["joint", "eenet", "distill"])
def test_every_mode_refuses_a_network_with_nothing_left_to_train(mode):
    net = _tiny.network(freeze_backbone=True, with_confidence=True)
    for layer in net.layers:
        layer.trainable = False
    _, _, dataset = _tiny.data()
    with pytest.raises(ValueError, match="nothing left to train"):
        tfee.recipes.fit(net, dataset, mode=mode, verbose=0)
