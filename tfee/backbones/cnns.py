"""A small CNN for tiny inputs (8x8 digits, 28x28 MNIST)."""

from tfee._keras import keras

__all__ = ["small_cnn"]


def small_cnn(
    num_classes=10, input_shape=(8, 8, 1), widths=(16, 32, 64), name="small_cnn"
):
    """Conv-BN-ReLU blocks, one per width, halving the resolution after the first.

    Args:
      num_classes: classes of the classifier.
      input_shape: (height, width, channels).
      widths: channels of each block; blocks after the first use stride 2.
      name: model name.

    Returns:
      An uncompiled functional `keras.Model` that outputs logits. Block outputs
      are named `block{i}_out`.
    """
    if not widths or any(not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(
            "small_cnn: `widths` must be a non-empty sequence of positive integers. "
            f"Received: widths={widths!r}"
        )
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for i, width in enumerate(widths, start=1):
        x = keras.layers.Conv2D(
            width,
            3,
            strides=1 if i == 1 else 2,
            padding="same",
            use_bias=False,
            name=f"block{i}_conv",
        )(x)
        x = keras.layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = keras.layers.ReLU(name=f"block{i}_out")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)
