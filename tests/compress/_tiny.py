"""Tiny early-exit networks and data for the compression tests."""

import numpy as np

import tfee
from tfee import keras
from tfee import tf


def network(head="sdn", with_confidence=False, freeze_backbone=False, seed=0):
    """small_cnn on 8x8x1 (widths 4, 8) with one exit after block1: 2 exits."""
    keras.utils.set_random_seed(seed)
    backbone = tfee.backbones.small_cnn(
        num_classes=3, input_shape=(8, 8, 1), widths=(4, 8)
    )
    return tfee.attach_exits(
        backbone,
        ["block1_out"],
        head=head,
        with_confidence=with_confidence,
        freeze_backbone=freeze_backbone,
    )


def dataset(samples=16, batch=8, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.random((samples, 8, 8, 1), dtype="float32")
    labels = rng.integers(0, 3, samples)
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch)


def weights_by_layer(model):
    return {
        layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers
    }
