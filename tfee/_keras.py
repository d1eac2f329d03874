"""The one door to Keras: every tfee module imports Keras from here.

tfmot works only with Keras 2 (the `tf_keras` package). TensorFlow 2.16+ makes
`tf.keras` Keras 3 unless `TF_USE_LEGACY_KERAS=1` is set before TensorFlow is
first imported, so this module sets it first and then imports `tf_keras`
explicitly. Objects built with Keras 3 are rejected with `require_tf_keras`.
"""

import os

# Must happen before the first `import tensorflow` anywhere in the process;
# tfmot reads the same variable and then uses tf_keras as well.
os.environ["TF_USE_LEGACY_KERAS"] = "1"

import tensorflow as tf  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = [
    "keras",
    "tf",
    "tfmot",
    "is_keras3_object",
    "require_tf_keras",
    "require_functional_model",
]


def is_keras3_object(obj):
    """Whether `obj` comes from Keras 3 (`import keras` under TF 2.16+), a
    user's subclass (defined in `__main__`) included."""
    for cls in type(obj).__mro__:
        module = cls.__module__ or ""
        if module == "keras" or module.startswith(("keras.", "keras_core.")):
            return True
    return False


def require_tf_keras(obj, argument, api, expected="layer or model"):
    """Raises a TypeError unless `obj` is a tf_keras (Keras 2) layer or model.

    Args:
      obj: the value passed by the caller.
      argument: the argument's name, for the message.
      api: the public function that received it, for the message.
      expected: what the argument should be, for the message.

    Raises:
      TypeError: `obj` is a Keras 3 object, or not a Keras object at all.
    """
    if isinstance(obj, keras.layers.Layer):
        return
    if is_keras3_object(obj):
        raise TypeError(
            f"{api} expects a tf_keras (Keras 2) {expected} for `{argument}`, "
            f"but received a Keras 3 object ({type(obj).__module__}."
            f"{type(obj).__name__}). tfmot, and therefore tfee, works with "
            "Keras 2 only: convert a functional or Sequential Keras 3 model "
            "with its weights by `tfee.from_keras3(model)` (or its saved file "
            "by `tfee.load_model(path)`), or build it with `from tfee import "
            "keras` instead of `import keras`."
        )
    raise TypeError(
        f"{api} expects a tf_keras {expected} for `{argument}`. "
        f"Received: {argument}={type(obj).__name__}"
    )


def require_functional_model(model, api, argument="model", single_output=True):
    """Raises unless `model` is a single-input functional tf_keras model.

    Sequential models are functional too and are accepted.

    Args:
      model: the value passed by the caller.
      api: the public function that received it, for the message.
      argument: the argument's name, for the message.
      single_output: also require exactly one output (a plain backbone).

    Raises:
      TypeError: `model` is not a tf_keras model, or is subclassed.
      ValueError: `model` has several inputs or outputs.
    """
    require_tf_keras(model, argument, api, expected="functional model")
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"{api} expects a tf_keras functional model for `{argument}`. "
            f"Received: {argument}={type(model).__name__} (a layer)"
        )
    if not getattr(model, "_is_graph_network", False):
        raise TypeError(
            f"{api} expects a functional (or Sequential) tf_keras model for "
            f"`{argument}`; subclassed models have no graph to attach exits to "
            "or to prune. Rebuild it with the functional API "
            "(`keras.Model(inputs, outputs)`). "
            f"Received: {argument}={type(model).__name__} (subclassed)"
        )
    if len(model.inputs) != 1 or (single_output and len(model.outputs) != 1):
        expected = "one input and one output" if single_output else "one input"
        raise ValueError(
            f"{api} supports models with exactly {expected} for "
            f"`{argument}`. Received: {argument} with {len(model.inputs)} "
            f"input(s) and {len(model.outputs)} output(s)"
        )
