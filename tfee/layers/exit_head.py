"""The base class of tfee's exit heads: pooled features -> logits (+ confidence)."""

import numpy as np

from tfee import _macs
from tfee._keras import keras
from tfee._keras import tf
from tfee._keras import tfmot

__all__ = ["ExitHead"]


class ExitHead(
    keras.layers.Layer,
    tfmot.sparsity.keras.PrunableLayer,
    tfmot.clustering.keras.ClusterableLayer,
):
    """An exit head: a classifier attached to an intermediate feature map.

    Subclasses turn the (batch, height, width, channels) feature map into a
    (batch, features) matrix; this class owns the final linear classifier and
    the optional learned confidence (Dense(1) + sigmoid, as in PTEENet and
    EENet). Heads own their variables directly (not through nested Keras
    layers) because tfmot's clustering wrapper swaps a layer's weights by
    attribute name, and it can only reach attributes of the wrapped layer.

    Input shape: (batch, height, width, channels); or, for a cascading head
    (ZTW's cascading connection, Wołczyk et al. 2021), the list
    [feature map, previous exit's logits (batch, num_classes)]: the head also
    reads the previous exit's softmax, through its own
    (num_classes, num_classes) `cascade_kernel`. The previous logits pass a
    stop-gradient (ZTW detaches them: head k does not train head k-1) and a
    softmax (ZTW normalises with a LayerNorm; a softmax is bounded in [0, 1],
    which int8 quantizes with TFLite's fixed 1/256 scale).
    Output: logits (batch, num_classes); with `with_confidence`, the list
    [logits, confidence] where confidence is (batch, 1) in (0, 1) (from the
    head's own features only).

    Args:
      num_classes: number of classes, a positive integer.
      with_confidence: add a learned confidence output.
      **kwargs: standard Layer arguments (name, trainable, dtype).
    """

    head_type = None  # Set by subclasses: the name used in `head="..."`.
    # Attribute names of the variables tfmot may prune or cluster, in order.
    _kernel_names = ("kernel", "confidence_kernel", "cascade_kernel")

    def __init__(self, num_classes, with_confidence=False, **kwargs):
        super().__init__(**kwargs)
        if (
            isinstance(num_classes, bool)
            or not isinstance(num_classes, (int, np.integer))
            or num_classes < 1
        ):
            raise ValueError(
                f"{type(self).__name__}: invalid value for `num_classes`, "
                f"expected a positive integer. Received: num_classes={num_classes!r}"
            )
        if not isinstance(with_confidence, bool):
            raise TypeError(
                f"{type(self).__name__}: `with_confidence` must be a bool. "
                f"Received: with_confidence={with_confidence!r}"
            )
        self.num_classes = int(num_classes)
        self.with_confidence = with_confidence

    # -- subclass hooks ----------------------------------------------------
    def _build_features(self, input_shape):
        """Creates the feature extractor's variables; returns the feature width."""
        raise NotImplementedError

    def _features(self, inputs, training):
        """Maps (batch, h, w, c) to (batch, features)."""
        raise NotImplementedError

    def _feature_macs(self, input_shape, nonzero_fraction):
        """MACs of `_features` for one sample; `nonzero_fraction(name)` for sparsity."""
        raise NotImplementedError

    # -- Layer API -----------------------------------------------------------
    def _split_shapes(self, input_shape):
        """(feature map shape, previous logits shape or None) of a build."""
        if isinstance(input_shape, list) and len(input_shape) == 1:
            input_shape = input_shape[0]
        if isinstance(input_shape, (list, tuple)) and (
            len(input_shape) == 2
            and all(
                isinstance(s, (list, tuple, tf.TensorShape)) or s is None
                for s in input_shape
            )
        ):
            previous = tf.TensorShape(input_shape[1])
            if previous.rank != 2 or previous[-1] != self.num_classes:
                raise ValueError(
                    f"{type(self).__name__} '{self.name}': a cascading head's "
                    "second input must be the previous exit's logits, "
                    f"(batch, {self.num_classes}). Received: shape "
                    f"{tuple(previous.as_list()) if previous.rank is not None else None}"
                )
            return tf.TensorShape(input_shape[0]), previous
        return tf.TensorShape(input_shape), None

    @property
    def cascading(self):
        """Whether the head reads the previous exit's logits (once built)."""
        return hasattr(self, "cascade_kernel")

    def build(self, input_shape):
        shape, previous = self._split_shapes(input_shape)
        if shape.rank != 4 or any(d is None for d in shape[1:]):
            raise ValueError(
                f"{type(self).__name__} '{self.name}' needs a 4-D feature map "
                "(batch, height, width, channels) with known height, width and "
                f"channels. Received: input_shape={tuple(shape.as_list()) if shape.rank is not None else None}"
            )
        width = self._build_features(shape)
        self.kernel = self.add_weight(
            name="kernel",
            shape=(width, self.num_classes),
            initializer="glorot_uniform",
        )
        self.bias = self.add_weight(
            name="bias", shape=(self.num_classes,), initializer="zeros"
        )
        if previous is not None:
            self.cascade_kernel = self.add_weight(
                name="cascade_kernel",
                shape=(self.num_classes, self.num_classes),
                initializer="glorot_uniform",
            )
        if self.with_confidence:
            self.confidence_kernel = self.add_weight(
                name="confidence_kernel", shape=(width, 1), initializer="glorot_uniform"
            )
            self.confidence_bias = self.add_weight(
                name="confidence_bias", shape=(1,), initializer="zeros"
            )
        super().build(input_shape)

    def call(self, inputs, training=None):
        if training is None:
            training = keras.backend.learning_phase()
        previous = None
        if isinstance(inputs, (list, tuple)):
            inputs, previous = inputs if len(inputs) == 2 else (inputs[0], None)
        if (previous is not None) != self.cascading:
            built, called = (2, 1) if self.cascading else (1, 2)
            raise ValueError(
                f"{type(self).__name__} '{self.name}' was built for {built} "
                f"input(s) ([feature map, previous exit's logits] for a "
                f"cascading head) and was called with {called}."
            )
        features = self._features(inputs, training)
        logits = tf.matmul(features, self.kernel) + self.bias
        if previous is not None:
            earlier = tf.nn.softmax(tf.stop_gradient(tf.cast(previous, logits.dtype)))
            logits += tf.matmul(earlier, self.cascade_kernel)
        if not self.with_confidence:
            return logits
        confidence = tf.sigmoid(
            tf.matmul(features, self.confidence_kernel) + self.confidence_bias
        )
        return [logits, confidence]

    def compute_output_shape(self, input_shape):
        batch = self._split_shapes(input_shape)[0][0]
        logits = tf.TensorShape([batch, self.num_classes])
        if not self.with_confidence:
            return logits
        return [logits, tf.TensorShape([batch, 1])]

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes, with_confidence=self.with_confidence
        )
        return config

    # -- tfmot ---------------------------------------------------------------
    def _owned_kernels(self):
        return [
            (name, getattr(self, name))
            for name in self._kernel_names
            if hasattr(self, name)
        ]

    def get_prunable_weights(self):
        return [weight for _, weight in self._owned_kernels()]

    # Kernels that already hold no more values than a clustering asks for
    # (a confidence kernel of `width` weights against 32 clusters; one that
    # pruning left with 3 non-zero values): tfmot would fail to place that
    # many centroids in them, and they meet the count as they are. Set by
    # tfee.compress.cluster_weights on its own copy before wrapping.
    keep_unclustered = ()

    def get_clusterable_weights(self):
        return [
            (n, w) for n, w in self._owned_kernels() if n not in self.keep_unclustered
        ]

    # -- cost ----------------------------------------------------------------
    def macs(self, input_shape, sparse=False):
        """Multiply-accumulates for one sample with the given input shape.

        Args:
          input_shape: (batch, height, width, channels); batch is ignored.
          sparse: count only non-zero kernel weights (after pruning).

        Returns:
          An int.
        """

        def nonzero_fraction(name):
            if not sparse or not hasattr(self, name):
                return 1.0
            values = np.asarray(keras.backend.get_value(getattr(self, name)))
            return float(np.count_nonzero(values)) / max(values.size, 1)

        width = self.kernel.shape[0]
        macs = self._feature_macs(tf.TensorShape(input_shape), nonzero_fraction)
        macs += width * self.num_classes * nonzero_fraction("kernel")
        if self.with_confidence:
            macs += width * nonzero_fraction("confidence_kernel")
        if self.cascading:
            macs += self.num_classes**2 * nonzero_fraction("cascade_kernel")
        return int(round(macs))


def _count_head_macs(layer, input_shapes, output_shapes, sparse):
    shape = layer._split_shapes(input_shapes)[0]
    return layer.macs(shape, sparse=sparse)


# Heads count themselves. Registering here lets the MAC counter sit below the
# layers (tfee.network places exits by MACs) without knowing about heads.
_macs.register_macs(ExitHead, _count_head_macs)
