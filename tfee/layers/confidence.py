"""A weightless confidence score over an exit's logits, as a Keras layer."""

from tfee import rules
from tfee._keras import keras
from tfee._keras import tf

__all__ = ["Confidence"]


@keras.saving.register_keras_serializable(package="tfee")
class Confidence(keras.layers.Layer):
    """A rule's confidence score over logits (`tfee.rules`), as a Keras layer.

    Input shape: (batch, classes) logits, at least 2 classes.
    Output shape: (batch, 1), in [0, 1], NaN where the logits are not finite.

    Args:
      rule: one of `tfee.rules.SCORE_RULES` ("max_softmax", "entropy",
        "margin"); the formulas are those of `tfee.rules`, computed in the
        logits' own float type.
      **kwargs: standard Layer arguments.

    Example:
      >>> Confidence("margin")(tf.constant([[2.0, 0.0, 0.0]])).shape
      TensorShape([1, 1])
    """

    def __init__(self, rule="max_softmax", **kwargs):
        super().__init__(**kwargs)
        rules.check_rule(rule, "tfee.layers.Confidence", accepted=rules.SCORE_RULES)
        self.rule = rule

    def build(self, input_shape):
        shape = tf.TensorShape(input_shape)
        if shape.rank != 2 or shape[-1] is None or shape[-1] < 2:
            raise ValueError(
                "tfee.layers.Confidence needs (batch, classes) logits with at least "
                f"2 classes. Received: input_shape={shape}"
            )
        super().build(input_shape)

    def call(self, inputs):
        return rules.tf_scores(inputs, self.rule)[:, None]

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([tf.TensorShape(input_shape)[0], 1])

    def get_config(self):
        config = super().get_config()
        config.update(rule=self.rule)
        return config
