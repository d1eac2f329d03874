"""benchmarks.pteenet post-trains PTEENet branches for each lambda on a frozen backbone."""

import os

import numpy as np
import pytest
from absl import app

import tfee
from benchmarks import pteenet
from tests.benchmarks import _quick
from tfee import keras

# Run by `python3 dev.py test-long` and CI, not by the README's test command.
pytestmark = pytest.mark.long


def test_quick_run_sweeps_lambda_keeps_the_backbone_and_resumes(quick_flags, capsys):
    flags = {
        **quick_flags,
        "beyond_epochs": 1,
        # One epoch of cross-entropy warm-up, one of EENet's loss.
        "pteenet_epochs": 2,
        "pteenet_exits": 2,
        "pteenet_lambdas": ["0.5", "1.5"],
    }
    _quick.run_main(pteenet, flags)
    result = _quick.read_json(quick_flags["results_dir"], "pteenet_quick.json")
    assert [row["lambda"] for row in result["lambdas"]] == [0.5, 1.5]
    assert 0 <= result["backbone_test_accuracy"] <= 100
    assert "1 of cross-entropy on every branch" in result["budget"]["training"]
    assert len(result["paper"]) == 3
    for row in result["lambdas"]:
        assert row["backbone_weights_bit_identical"] is True
        assert len(row["placement"]) == 2
        assert len(row["test_accuracy_per_exit"]) == 3
        point = row["at_threshold"]
        assert point["threshold"] == 0.5
        assert sum(point["exit_fractions"]) == pytest.approx(1, abs=1e-3)
        # An exit's MACs include the branches on the way: never above 1.
        assert point["compute_saved"] <= 1
        assert len(row["threshold_sweep"]) == len(pteenet.SWEEP)
    assert os.path.exists(os.path.join(quick_flags["results_dir"], "pteenet_quick.png"))
    capsys.readouterr()
    _quick.run_main(pteenet, flags)
    printed = capsys.readouterr().out
    assert "training" not in printed and "lambda 1.5: cached" in printed


def test_the_bit_identity_check_sees_a_changed_statistic():
    backbone = tfee.backbones.resnet_cifar(
        depth=8, num_classes=3, input_shape=(16, 16, 3), width=4
    )
    network = tfee.attach_exits(
        backbone, tfee.FlopsFractions([0.5]), freeze_backbone=True
    )
    assert pteenet.backbone_unchanged(backbone, network)
    layer = next(
        layer
        for layer in network.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    )
    mean = layer.moving_mean.numpy()
    layer.moving_mean.assign(np.nextafter(mean, np.inf))
    assert not pteenet.backbone_unchanged(backbone, network)


def test_a_warm_up_as_long_as_the_training_is_refused(quick_flags):
    flags = {**quick_flags, "pteenet_epochs": 2, "pteenet_warmup_epochs": 2}
    with pytest.raises(app.UsageError, match="--pteenet_warmup_epochs must be"):
        _quick.run_main(pteenet, flags)


def test_lambdas_that_are_not_numbers_are_refused(quick_flags):
    with pytest.raises(app.UsageError, match="--pteenet_lambdas must be numbers"):
        _quick.run_main(pteenet, {**quick_flags, "pteenet_lambdas": ["a"]})
    with pytest.raises(app.UsageError, match="--pteenet_lambdas must be numbers"):
        _quick.run_main(pteenet, {**quick_flags, "pteenet_lambdas": ["-1"]})
