"""PTEENet's convolutional branch: 2 x (3x3 conv + BN + ReLU) + pool + dense."""

from tfee._keras import keras
from tfee._keras import tf
from tfee.layers.exit_head import ExitHead

__all__ = ["ConvHead"]

_BN_EPSILON = 1e-3


@keras.saving.register_keras_serializable(package="tfee")
class ConvHead(ExitHead):
    """PTEENet's "conv2" branch (Lahiany & Aperstein, IEEE Access 2022).

    Two 3x3 convolutions (stride 1, same padding, no bias), each followed by
    batch normalization and ReLU, then global average pooling and a linear
    classifier. Batch normalization follows Keras semantics: batch statistics
    and moving-average updates in training, moving statistics otherwise, and
    always moving statistics when the layer is frozen (`trainable=False`).

    Args:
      num_classes: number of classes, a positive integer.
      filters: output channels of both convolutions; None keeps the input's
        channel count (PTEENet's C -> C).
      momentum: moving-average momentum of the batch normalization.
      with_confidence: add a learned confidence output.
      **kwargs: standard Layer arguments.

    Input shape: (batch, height, width, channels). Output: see `ExitHead`.
    """

    head_type = "conv"
    _kernel_names = ("conv1_kernel", "conv2_kernel") + ExitHead._kernel_names

    def __init__(
        self, num_classes, filters=None, momentum=0.99, with_confidence=False, **kwargs
    ):
        super().__init__(num_classes, with_confidence=with_confidence, **kwargs)
        if filters is not None and (
            isinstance(filters, bool) or not isinstance(filters, int) or filters < 1
        ):
            raise ValueError(
                "ConvHead: invalid value for `filters`, expected a positive "
                f"integer or None. Received: filters={filters!r}"
            )
        if not 0.0 <= momentum < 1.0:
            raise ValueError(
                "ConvHead: invalid value for `momentum`, expected a number in "
                f"[0, 1). Received: momentum={momentum!r}"
            )
        self.filters = filters
        self.momentum = float(momentum)

    def _build_features(self, input_shape):
        channels = input_shape[-1]
        filters = self.filters or channels
        for index, fan_in in ((1, channels), (2, filters)):
            setattr(
                self,
                f"conv{index}_kernel",
                self.add_weight(
                    name=f"conv{index}_kernel",
                    shape=(3, 3, fan_in, filters),
                    initializer="he_normal",
                ),
            )
            for stat, init, trainable in (
                ("gamma", "ones", True),
                ("beta", "zeros", True),
                ("moving_mean", "zeros", False),
                ("moving_variance", "ones", False),
            ):
                extra = {}
                if not trainable:
                    extra = dict(
                        synchronization=tf.VariableSynchronization.ON_READ,
                        aggregation=tf.VariableAggregation.MEAN,
                    )
                setattr(
                    self,
                    f"bn{index}_{stat}",
                    self.add_weight(
                        name=f"bn{index}_{stat}",
                        shape=(filters,),
                        initializer=init,
                        trainable=trainable,
                        **extra,
                    ),
                )
        return filters

    def _batch_norm(self, x, index, training):
        gamma = getattr(self, f"bn{index}_gamma")
        beta = getattr(self, f"bn{index}_beta")
        moving_mean = getattr(self, f"bn{index}_moving_mean")
        moving_variance = getattr(self, f"bn{index}_moving_variance")

        def batch_statistics():
            mean, variance = tf.nn.moments(x, axes=[0, 1, 2])
            moving_mean.assign(
                moving_mean * self.momentum + mean * (1.0 - self.momentum)
            )
            moving_variance.assign(
                moving_variance * self.momentum + variance * (1.0 - self.momentum)
            )
            return tf.nn.batch_normalization(
                x, mean, variance, beta, gamma, _BN_EPSILON
            )

        def moving_statistics():
            return tf.nn.batch_normalization(
                x, moving_mean, moving_variance, beta, gamma, _BN_EPSILON
            )

        if not self.trainable:
            return moving_statistics()
        return tf.__internal__.smart_cond.smart_cond(
            training, batch_statistics, moving_statistics
        )

    def _features(self, inputs, training):
        x = inputs
        for index in (1, 2):
            kernel = getattr(self, f"conv{index}_kernel")
            x = tf.nn.conv2d(x, kernel, strides=1, padding="SAME")
            x = tf.nn.relu(self._batch_norm(x, index, training))
        return tf.reduce_mean(x, axis=[1, 2])

    def _feature_macs(self, input_shape, nonzero_fraction):
        h, w, c = input_shape[1], input_shape[2], input_shape[3]
        f = self.filters or c
        convs = (
            9
            * h
            * w
            * (
                c * f * nonzero_fraction("conv1_kernel")
                + f * f * nonzero_fraction("conv2_kernel")
            )
        )
        # Batch normalization folds to one multiply-add per element; the
        # global pool reads each element once.
        return convs + 2 * h * w * f + h * w * f

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, momentum=self.momentum)
        return config
