"""Weightless confidence scores computed from an exit's logits."""

from tfee._keras import keras
from tfee._keras import tf

__all__ = ["Confidence", "CONFIDENCE_RULES", "confidence_from_logits"]

CONFIDENCE_RULES = ("max_softmax", "entropy", "margin")


def confidence_from_logits(logits, rule):
    """Scores in [0, 1] per sample; higher means more confident.

    Args:
      logits: (batch, classes) tensor.
      rule: "max_softmax" (the top probability, SDN), "entropy" (1 minus the
        softmax entropy divided by log(classes), BranchyNet's rule turned into
        a confidence), or "margin" (top-1 minus top-2 probability).

    Returns:
      A (batch,) float tensor. Non-finite logits give NaN, never a confident
      score, so a policy can refuse them.
    """
    if rule not in CONFIDENCE_RULES:
        raise ValueError(
            f"confidence_from_logits: unknown `rule`, expected one of "
            f"{CONFIDENCE_RULES}. Received: rule={rule!r}"
        )
    logits = tf.convert_to_tensor(logits)
    finite = tf.reduce_all(tf.math.is_finite(logits), axis=-1)
    probabilities = tf.nn.softmax(logits, axis=-1)
    if rule == "max_softmax":
        score = tf.reduce_max(probabilities, axis=-1)
    elif rule == "entropy":
        classes = tf.cast(tf.shape(logits)[-1], logits.dtype)
        log_p = tf.nn.log_softmax(logits, axis=-1)
        entropy = -tf.reduce_sum(probabilities * log_p, axis=-1)
        score = 1.0 - entropy / tf.math.log(tf.maximum(classes, 2.0))
    else:
        top2 = tf.math.top_k(probabilities, k=2).values
        score = top2[:, 0] - top2[:, 1]
    return tf.where(finite, score, tf.constant(float("nan"), score.dtype))


@keras.saving.register_keras_serializable(package="tfee")
class Confidence(keras.layers.Layer):
    """A weightless confidence score over logits, as a Keras layer.

    Input shape: (batch, classes) logits, at least 2 classes.
    Output shape: (batch, 1), in [0, 1], NaN where the logits are not finite.

    Args:
      rule: one of "max_softmax", "entropy", "margin"; see
        `confidence_from_logits`.
      **kwargs: standard Layer arguments.

    Example:
      >>> Confidence("margin")(tf.constant([[2.0, 0.0, 0.0]])).shape
      TensorShape([1, 1])
    """

    def __init__(self, rule="max_softmax", **kwargs):
        super().__init__(**kwargs)
        if rule not in CONFIDENCE_RULES:
            raise ValueError(
                f"Confidence: unknown `rule`, expected one of {CONFIDENCE_RULES}. "
                f"Received: rule={rule!r}"
            )
        self.rule = rule

    def build(self, input_shape):
        shape = tf.TensorShape(input_shape)
        if shape.rank != 2 or shape[-1] is None or shape[-1] < 2:
            raise ValueError(
                "Confidence needs (batch, classes) logits with at least 2 classes. "
                f"Received: input_shape={shape}"
            )
        super().build(input_shape)

    def call(self, inputs):
        return confidence_from_logits(inputs, self.rule)[:, None]

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([tf.TensorShape(input_shape)[0], 1])

    def get_config(self):
        config = super().get_config()
        config.update(rule=self.rule)
        return config
