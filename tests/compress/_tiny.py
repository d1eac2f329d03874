"""Tiny early-exit networks and data for the compression tests."""

import contextlib

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


@keras.saving.register_keras_serializable(package="tests")
class Scale(keras.layers.Layer):
    """A custom layer with weights that tfmot can neither prune nor cluster."""

    def build(self, shape):
        self.scale = self.add_weight(name="scale", shape=(shape[-1],))

    def call(self, x):
        return x * self.scale


def network_with_custom_layer():
    """conv -> Scale("odd_scale") -> pool -> dense, one linear exit after conv."""
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = Scale(name="odd_scale")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    backbone = keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))
    return tfee.attach_exits(backbone, ["conv"], head="linear")


def dataset(samples=16, batch=8, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.random((samples, 8, 8, 1), dtype="float32")
    labels = rng.integers(0, 3, samples)
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch)


def weights_by_layer(model):
    return {
        layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers
    }


@contextlib.contextmanager
def eagerly():
    """Runs `fit` without tracing: the same arithmetic, a few times faster on
    these tiny models. Behaviours that depend on retracing (ordered pruning
    switching phases) are tested in graph mode instead."""
    tf.config.run_functions_eagerly(True)
    try:
        yield
    finally:
        tf.config.run_functions_eagerly(False)
