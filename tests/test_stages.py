"""Stage models chain into the full network without recomputing anything."""

import numpy as np

import tfee


def test_chained_stages_reproduce_every_exit(tiny_resnet):
    net = tfee.attach_exits(
        tiny_resnet, tfee.FlopsFractions([0.3, 0.6]), head="conv", with_confidence=True
    )
    x = np.random.default_rng(0).random((3, 16, 16, 3), dtype="float32")
    full = net.predict(x, verbose=0)
    stages = tfee.stage_models(net)
    assert len(stages) == 3
    features = x
    for k, stage in enumerate(stages):
        out = stage(features)
        np.testing.assert_allclose(out["logits"], full[k], atol=1e-5)
        if k < 2:
            np.testing.assert_allclose(out["confidence"], full[3 + k], atol=1e-6)
            features = out["features"]
        else:
            assert set(out) == {"logits"}


def test_stages_share_the_network_weights(tiny_cnn):
    net = tfee.attach_exits(tiny_cnn, ["block1_out"])
    stages = tfee.stage_models(net)
    shared = {id(w) for s in stages for w in s.weights}
    assert shared == {id(w) for w in net.weights}
