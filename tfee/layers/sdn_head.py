"""The Shallow-Deep Network head: mixed max/average pooling to 4x4 + dense."""

from tfee._keras import keras
from tfee._keras import tf
from tfee.layers.exit_head import ExitHead

__all__ = ["SDNHead"]


@keras.saving.register_keras_serializable(package="tfee")
class SDNHead(ExitHead):
    """SDN's internal classifier (Kaya et al., ICML 2019).

    The feature map is pooled to about 4x4 (window = size // 4) by a learned
    mix `a * max + (1 - a) * avg` with `a = sigmoid(mix_logit)`, flattened, and
    classified by one linear layer. Maps smaller than 8x8 are not pooled (and
    have no mix weight).
    See `ExitHead` for shapes and arguments.

    Example:
      >>> head = SDNHead(num_classes=10)
      >>> head(tf.zeros([2, 16, 16, 8])).shape
      TensorShape([2, 10])
    """

    head_type = "sdn"

    def _pool_size(self, input_shape):
        return max(1, input_shape[1] // 4), max(1, input_shape[2] // 4)

    def _build_features(self, input_shape):
        ph, pw = self._pool_size(input_shape)
        if (ph, pw) != (1, 1):
            # Only a map that is pooled has a mix to learn.
            self.mix_logit = self.add_weight(
                name="mix_logit", shape=(), initializer="zeros"
            )
        return (input_shape[1] // ph) * (input_shape[2] // pw) * input_shape[3]

    def _features(self, inputs, training):
        pool = self._pool_size(inputs.shape)
        if pool == (1, 1):
            pooled = inputs
        else:
            mix = tf.sigmoid(self.mix_logit)
            max_pooled = tf.nn.max_pool2d(inputs, pool, pool, "VALID")
            avg_pooled = tf.nn.avg_pool2d(inputs, pool, pool, "VALID")
            pooled = mix * max_pooled + (1.0 - mix) * avg_pooled
        return tf.reshape(pooled, [-1, self.kernel.shape[0]])

    def _feature_macs(self, input_shape, nonzero_fraction):
        ph, pw = self._pool_size(input_shape)
        if (ph, pw) == (1, 1):
            return 0
        h, w, c = input_shape[1] // ph, input_shape[2] // pw, input_shape[3]
        # Each pooling reads its whole window once; the mix is one MAC per output.
        return 2 * h * w * ph * pw * c + h * w * c
