"""CIFAR ResNets (He et al., 2016): depth 6n + 2 with three stages of n blocks."""

from tfee._keras import keras

__all__ = ["resnet_cifar"]

_DEPTHS = (20, 32, 44, 56, 110)


def _conv_bn(x, filters, strides, name, weight_decay):
    x = keras.layers.Conv2D(
        filters,
        3,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        kernel_regularizer=(
            keras.regularizers.l2(weight_decay) if weight_decay else None
        ),
        name=f"{name}_conv",
    )(x)
    return keras.layers.BatchNormalization(name=f"{name}_bn")(x)


def resnet_cifar(
    depth=20,
    num_classes=10,
    input_shape=(32, 32, 3),
    width=16,
    weight_decay=0.0,
    name=None,
):
    """A CIFAR ResNet as a functional tf_keras model that outputs logits.

    Three stages of (depth - 2) / 6 basic blocks with widths w, 2w, 4w; the
    stride-2 blocks use 1x1 projection shortcuts (option B), all other
    shortcuts are identities. ResNet-20 costs about 41M MACs per 32x32 image,
    ResNet-56 about 126M. Block outputs are named `stage{s}_block{b}_out`,
    convenient attach points for exits.

    Args:
      depth: 20, 32, 44, 56 or 110 (any 6n + 2 works).
      num_classes: classes of the final dense layer.
      input_shape: (height, width, channels).
      width: channels of the first stage.
      weight_decay: L2 factor on convolution kernels (0 for none).
      name: model name (default "resnet{depth}").

    Returns:
      An uncompiled `keras.Model`.
    """
    if (
        isinstance(depth, bool)
        or not isinstance(depth, int)
        or depth < 8
        or (depth - 2) % 6
    ):
        raise ValueError(
            "resnet_cifar: invalid value for `depth`, expected 6n + 2 with n >= 1 "
            f"(e.g. {_DEPTHS}). Received: depth={depth!r}"
        )
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(
            f"resnet_cifar: `width` must be a positive integer. Received: width={width!r}"
        )
    blocks = (depth - 2) // 6
    inputs = keras.Input(input_shape, name="image")
    x = _conv_bn(inputs, width, 1, "stem", weight_decay)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for stage in range(1, 4):
        filters = width * 2 ** (stage - 1)
        for block in range(1, blocks + 1):
            prefix = f"stage{stage}_block{block}"
            strides = 2 if stage > 1 and block == 1 else 1
            shortcut = x
            y = _conv_bn(x, filters, strides, f"{prefix}_1", weight_decay)
            y = keras.layers.ReLU(name=f"{prefix}_1_relu")(y)
            y = _conv_bn(y, filters, 1, f"{prefix}_2", weight_decay)
            if strides != 1 or shortcut.shape[-1] != filters:
                shortcut = keras.layers.Conv2D(
                    filters,
                    1,
                    strides=strides,
                    use_bias=False,
                    kernel_initializer="he_normal",
                    name=f"{prefix}_shortcut_conv",
                )(shortcut)
                shortcut = keras.layers.BatchNormalization(
                    name=f"{prefix}_shortcut_bn"
                )(shortcut)
            x = keras.layers.Add(name=f"{prefix}_add")([shortcut, y])
            x = keras.layers.ReLU(name=f"{prefix}_out")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name or f"resnet{depth}")
