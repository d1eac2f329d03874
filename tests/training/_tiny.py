"""Tiny networks and data shared by the training tests."""

import numpy as np

import tfee
from tfee import keras
from tfee import tf

CLASSES = 3


def data(count=48, batch=16, seed=0, shape=(8, 8, 1)):
    """(images, labels) arrays and an unshuffled batched tf.data pipeline."""
    rng = np.random.default_rng(seed)
    images = rng.random((count,) + shape, dtype=np.float32)
    labels = rng.integers(0, CLASSES, count).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch)
    return images, labels, dataset


def network(seed=0, head="linear", **attach):
    """small_cnn (widths 4, 8) on 8x8x1 with one exit after block 1."""
    keras.utils.set_random_seed(seed)
    backbone = tfee.backbones.small_cnn(CLASSES, (8, 8, 1), widths=(4, 8))
    return tfee.attach_exits(backbone, ["block1_out"], head=head, **attach)
