"""A VGG-style plain convolutional network."""

from tfee._keras import keras

__all__ = ["vgg"]

VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def vgg(
    num_classes=10,
    input_shape=(32, 32, 3),
    config=VGG11,
    dense_units=(),
    name="vgg",
):
    """A VGG-style network: 3x3 conv-BN-ReLU blocks and 2x2 max pools.

    Args:
      num_classes: classes of the classifier.
      input_shape: (height, width, channels).
      config: a sequence of channel counts (a conv block each) and "M" (a max
        pool); the default is VGG-11's.
      dense_units: hidden dense layers before the classifier.
      name: model name.

    Returns:
      An uncompiled functional `keras.Model` that outputs logits. Layers are
      named `block{i}_conv`, `block{i}_bn`, `block{i}_relu` and `pool{j}`.
    """
    if not config or any(
        c != "M" and (not isinstance(c, int) or c < 1) for c in config
    ):
        raise ValueError(
            "vgg: `config` must be a non-empty sequence of positive channel counts "
            f"and 'M' (max pool). Received: config={config!r}"
        )
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    block = pool = 0
    for entry in config:
        if entry == "M":
            pool += 1
            x = keras.layers.MaxPooling2D(2, name=f"pool{pool}")(x)
            continue
        block += 1
        x = keras.layers.Conv2D(
            entry, 3, padding="same", use_bias=False, name=f"block{block}_conv"
        )(x)
        x = keras.layers.BatchNormalization(name=f"block{block}_bn")(x)
        x = keras.layers.ReLU(name=f"block{block}_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    for i, units in enumerate(dense_units, start=1):
        x = keras.layers.Dense(units, activation="relu", name=f"dense{i}")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)
