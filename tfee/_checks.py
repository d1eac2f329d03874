"""Argument checks shared by tfee's public functions, with errors that name
the API, the argument, what is accepted and what was received."""

import numbers
import warnings

import numpy as np

from tfee._keras import tf

__all__ = [
    "check_bool",
    "check_finite_array",
    "check_images",
    "check_int",
    "warn_renamed",
]

# Old spellings already warned about in this process.
_WARNED = set()


def warn_renamed(old, new, stacklevel=3):
    """Warns, once per process, that the spelling `old` (kept because a
    released README used it) is now `new`."""
    if old in _WARNED:
        return
    _WARNED.add(old)
    warnings.warn(
        f"{old} is now {new}; the old name will be removed.",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def check_bool(value, argument, api):
    """Returns `value`; raises unless it is True or False (not 0, 1 or "yes").

    Raises:
      TypeError: naming `api` and `argument`, what is accepted and received.
    """
    if not isinstance(value, bool):
        raise TypeError(
            f"{api}: `{argument}` must be True or False. Received: {argument}={value!r}"
        )
    return value


def check_finite_array(value, shape, argument, api, hint=""):
    """`value` as a float64 array of `shape`; a ValueError naming `api` and
    `argument` (with `hint` on what the axes mean) unless it is one of
    finite numbers."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        array = None
    if array is None or array.shape != tuple(shape) or not np.isfinite(array).all():
        raise ValueError(
            f"{api}: `{argument}` must be finite numbers of shape {tuple(shape)}"
            f"{hint}. Received: {argument} of shape "
            f"{None if array is None else array.shape}"
        )
    return array


def check_int(value, argument, api, minimum=1):
    """Returns `value` as an int; raises unless it is an int >= `minimum`.

    Booleans are refused although Python counts them as ints.

    Raises:
      ValueError: naming `api` and `argument`, what is accepted and received.
    """
    if type(value) is int and value >= minimum:  # The common case, first.
        return value
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value < minimum
    ):
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(
            f"{api}: `{argument}` must be {expected}. Received: {argument}={value!r}"
        )
    return int(value)


def _describe(spec):
    return f"shape={tuple(spec.shape.as_list())}, dtype={spec.dtype.name}"


def check_images(representative, network, samples, api, argument="representative"):
    """Up to `samples` float32 images from `representative`, checked first.

    Args:
      representative: a tf.data.Dataset of images or (images, labels, ...)
        tuples, batched or not, or a numpy array of images.
      network: the network whose input the images must fit.
      samples: how many images to take.
      api: the public function, for messages.
      argument: the argument's name, for messages.

    Returns:
      A float32 numpy array (n, height, width, channels).

    Raises:
      TypeError: not a dataset or array, or images that are not floating point.
      ValueError: images of the wrong shape, non-finite values, or no images
        at all.
    """
    expected = tuple(network.inputs[0].shape[1:].as_list())
    if isinstance(representative, np.ndarray):
        representative = tf.data.Dataset.from_tensor_slices(representative)
    if not isinstance(representative, tf.data.Dataset):
        raise TypeError(
            f"{api}: `{argument}` must be a tf.data.Dataset of images (or of "
            "(images, labels) tuples) or a numpy array of images. Received: "
            f"{argument}={type(representative).__name__}"
        )
    spec = representative.element_spec
    if isinstance(spec, (tuple, list)):
        spec = spec[0]
    if isinstance(spec, dict) or not isinstance(spec, tf.TensorSpec):
        raise TypeError(
            f"{api}: `{argument}` must yield image tensors or (images, labels) "
            f"tuples. Received elements: {representative.element_spec}"
        )
    shape = tuple(spec.shape.as_list())
    batched = len(shape) == len(expected) + 1
    fits = shape[1:] == expected if batched else shape == expected
    if not fits:
        raise ValueError(
            f"{api}: `{argument}` images must have shape (batch,) + {expected} "
            f"or {expected} to match the network's input. Received: {_describe(spec)}"
        )
    if not spec.dtype.is_floating:
        raise TypeError(
            f"{api}: `{argument}` images must be floating point, preprocessed "
            f"exactly as for the network (e.g. normalised float32). Received: "
            f"{_describe(spec)}"
        )
    dataset = representative
    if isinstance(representative.element_spec, (tuple, list)):
        dataset = dataset.map(lambda *element: element[0])
    if batched:
        dataset = dataset.unbatch()
    taken = [np.asarray(x, np.float32) for x in dataset.take(samples)]
    if not taken:
        raise ValueError(f"{api}: `{argument}` yielded no images.")
    images = np.stack(taken)
    bad = int(np.sum(~np.isfinite(images)))
    if bad:
        # NaN or inf would set the int8 ranges of every tensor they reach.
        raise ValueError(
            f"{api}: `{argument}` images must be finite; the calibrated int8 "
            f"ranges come from them. Received: {bad} NaN or infinite values in "
            f"the first {len(images)} images"
        )
    _warn_about_raw_pixels(images, network, api, argument)
    return images


# Layers that take raw pixels into the network's own range themselves.
_SCALING_LAYERS = ("Rescaling", "Normalization", "InputNormalisation")


def _warn_about_raw_pixels(images, network, api, argument):
    """Warns where the images look like raw 0-255 pixels and the network does
    not scale its input itself: int8 ranges calibrated on them are off by the
    scale, and the file's accuracy falls to near chance, silently."""
    if images.max() <= 2.0 or images.min() < 0.0:
        return
    if not np.array_equal(images, np.round(images)) or images.max() > 255.0:
        return
    if any(type(layer).__name__ in _SCALING_LAYERS for layer in network.layers):
        return
    warnings.warn(
        f"{api}: `{argument}` looks like raw pixels (whole numbers up to "
        f"{images.max():g}) but the network has no Rescaling or Normalization "
        "layer: pass images preprocessed exactly as for training (e.g. divided "
        "by 255, normalised), or the int8 ranges are calibrated for inputs the "
        "network never sees. Received: values in "
        f"[{images.min():g}, {images.max():g}]",
        UserWarning,
        stacklevel=3,
    )
