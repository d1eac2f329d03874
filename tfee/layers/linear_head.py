"""The linear exit head: global average pooling + one dense layer."""

from tfee._keras import keras
from tfee._keras import tf
from tfee.layers.exit_head import ExitHead

__all__ = ["LinearHead"]


@keras.saving.register_keras_serializable(package="tfee")
class LinearHead(ExitHead):
    """Global average pooling, then a linear classifier.

    The head of "Pruning Early Exit Networks" (Görmez & Koyuncu, 2022) and
    BranchyNet's smallest branch. See `ExitHead` for shapes and arguments.

    Example:
      >>> head = LinearHead(num_classes=10)
      >>> head(tf.zeros([2, 8, 8, 16])).shape
      TensorShape([2, 10])
    """

    head_type = "linear"

    def _build_features(self, input_shape):
        return input_shape[-1]

    def _features(self, inputs, training):
        return tf.reduce_mean(inputs, axis=[1, 2])

    def _feature_macs(self, input_shape, nonzero_fraction):
        return input_shape[1] * input_shape[2] * input_shape[3]
