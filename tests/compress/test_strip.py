"""tfee.compress.strip: the one strip, inverse of both tfmot wrappers."""

import numpy as np
import pytest

import tfee
import tfee.compress
import tfee.export
from tests.compress import _tiny
from tfee import keras


def _wrapped(model):
    return [
        layer.name
        for layer in model.layers
        if type(layer).__name__ in ("PruneLowMagnitude", "ClusterWeights")
    ]


def test_strip_undoes_pruning_plan_and_leaves_its_input_wrapped():
    wrapped, _ = tfee.compress.pruning_plan(_tiny.network(), 0.5)
    stripped = tfee.compress.strip(wrapped)
    assert _wrapped(wrapped) and not _wrapped(stripped)
    assert stripped.output_names == ["exit_1", "exit_2"]
    np.testing.assert_array_equal(
        stripped.get_layer("block2_conv").kernel.numpy(),
        tfee.cost.unwrap(
            wrapped.get_layer("prune_low_magnitude_block2_conv")
        ).kernel.numpy(),
    )


def test_strip_undoes_cluster_weights_keeping_the_centroids():
    wrapped = tfee.compress.cluster_weights(_tiny.network(), 3, init="linear")
    stripped = tfee.compress.strip(wrapped)
    assert _wrapped(wrapped) and not _wrapped(stripped)
    assert len(np.unique(stripped.get_layer("block2_conv").kernel.numpy())) <= 3


def test_strip_is_compress_only_and_rejects_what_is_not_a_functional_model():
    assert not hasattr(tfee.export, "strip")
    assert tfee.compress.strip.__module__ == "tfee.compress.stripping"
    with pytest.raises(TypeError, match="tfee.compress.strip"):
        tfee.compress.strip(keras.Sequential)
