"""Input normalisation stored inside the network, so every runtime applies it.

A network trained on `(image - mean) / std` silently gives wrong answers when
a later step (calibration, export, the cascade, a phone client) feeds raw
images. `include_normalisation` puts the statistics into the network itself,
as a Keras `Normalization` layer right after its input: the saved `.keras`
file, every exported signature and every cascade backend then take the raw
images and normalise them the same way. `included_normalisation` reads them
back (tfee's exporters record them in the file's metadata).
"""

import numpy as np

from tfee import _graph
from tfee._keras import keras
from tfee._keras import require_functional_model
from tfee._keras import tf
from tfee.flatten import flatten_model

__all__ = [
    "LAYER_NAME",
    "check_normalisation",
    "include_normalisation",
    "included_normalisation",
]

LAYER_NAME = "input_normalisation"


def check_normalisation(normalisation, channels, api):
    """(mean, std) as {"mean": [...], "std": [...]} of `channels` floats, or None.

    Each of mean and std may be one number (every channel) or one per channel;
    std must be positive and everything finite.
    """
    if normalisation is None:
        return None
    accepted = (
        f"{api}: `normalisation` must be None or (mean, std), each a number or "
        f"{channels} per-channel numbers, std > 0, all finite. "
        f"Received: normalisation={normalisation!r}"
    )
    try:
        mean, std = normalisation
        mean = np.broadcast_to(np.asarray(mean, np.float64), (channels,))
        std = np.broadcast_to(np.asarray(std, np.float64), (channels,))
    except (TypeError, ValueError) as error:
        raise ValueError(accepted) from error
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        raise ValueError(accepted)
    return {"mean": mean.tolist(), "std": std.tolist()}


def _consumers(model, tensor):
    """The layers of `model` that read `tensor`."""
    return [
        layer
        for layer in model.layers
        if any(
            any(t is tensor for t in tf.nest.flatten(node.keras_inputs))
            for node in layer._inbound_nodes  # noqa: SLF001
        )
    ]


def _first_layer(model):
    """The layer the model's input feeds, through a QAT input quantizer.

    None unless exactly one layer reads the input. Pruning, clustering and
    quantization wrappers are looked through.
    """
    tensor = model.inputs[0]
    for _ in range(2):
        consumers = _consumers(model, tensor)
        if len(consumers) != 1:
            return None
        layer = consumers[0]
        if type(layer).__name__ != "QuantizeLayer":  # tfmot QAT's input fake-quant
            return _graph.unwrap(layer)
        tensor = layer.output
    return None


def included_normalisation(model):
    """The {"mean", "std"} the model applies to its input itself, or None.

    Set by `include_normalisation` (a `Normalization` layer right after the
    input, as Keras recommends for preprocessing that ships with a model); a
    user's own per-channel `Normalization` there counts too. Preprocessing
    behind another layer (a `Rescaling` first, as some `keras.applications`
    models do) is not detected.
    """
    if not isinstance(model, keras.Model) or len(model.inputs) != 1:
        return None
    layer = _first_layer(model)
    if (
        not isinstance(layer, keras.layers.Normalization)
        or getattr(layer, "invert", False)
        or tuple(layer.axis) != (-1,)
    ):
        return None
    mean, variance = layer.mean.numpy(), layer.variance.numpy()
    # What the layer divides by (tf_keras: max(sqrt(variance), epsilon)).
    std = np.maximum(np.sqrt(variance), keras.backend.epsilon())
    return {
        "mean": np.reshape(mean, -1).astype(float).tolist(),
        "std": np.reshape(std, -1).astype(float).tolist(),
    }


def include_normalisation(network, normalisation):
    """The network that takes raw images and normalises them itself.

    Use it when the network was trained on data normalised outside it (for
    example `tfee.data.load(..., normalise=True)`): the result gives the
    same outputs on the raw images as `network` on the normalised ones, and
    carries the statistics through `model.save`, `tfee.export.tflite`,
    `tfee.export.micro` and `tfee.Cascade`. Feed it the raw images from then
    on: `tfee.data.load(...)` without `normalise`.

    Args:
      network: a single-input functional model (an early-exit network or
        a backbone) trained on normalised images.
      normalisation: (mean, std) per channel, or one number each, as in
        `DataSplits.normalisation`.

    Returns:
      A new functional model, same name, outputs and weights (copied), with
      a `Normalization` layer named "input_normalisation" after its input.

    Raises:
      ValueError: bad `normalisation`, or a network that already normalises
        its input (normalising twice would be silently wrong).

    Example:
      >>> data = tfee.data.load("../shared/datasets/cifar10", normalise=True)
      >>> ...  # train `network` on data.train
      >>> network = tfee.include_normalisation(network, data.normalisation)
      >>> raw = tfee.data.load("../shared/datasets/cifar10")
      >>> tfee.Cascade(network, policy).run(raw.test)
    """
    api = "tfee.include_normalisation"
    require_functional_model(network, api, argument="network", single_output=False)
    channels = int(network.inputs[0].shape[-1])
    stats = check_normalisation(normalisation, channels, api)
    if stats is None:
        raise ValueError(f"{api}: `normalisation` must be (mean, std). Received: None")
    already = included_normalisation(network)
    if already is not None:
        raise ValueError(
            f"{api}: `network` already normalises its input (mean "
            f"{already['mean']}, std {already['std']}); normalising twice "
            "would be wrong. Pass the network that takes normalised images."
        )
    spec = network.inputs[0]
    inputs = keras.Input(
        shape=tuple(spec.shape)[1:], dtype=spec.dtype, name=network.input_names[0]
    )
    layer = keras.layers.Normalization(
        mean=stats["mean"],
        variance=np.square(stats["std"]).tolist(),
        name=LAYER_NAME,
    )
    wrapped = keras.Model(inputs, network(layer(inputs)), name=network.name)
    return flatten_model(wrapped)
