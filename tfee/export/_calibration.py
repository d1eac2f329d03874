"""Representative data: validated before conversion, chained through stages.

Full-integer conversion calibrates every signature. Stage k > 1 is fed the
features that the float stage k-1 produces on the same images, so the
calibrated range of features_(k-1) at the output of stage k-1 and at the input
of stage k are the same numbers, and their int8 scales agree.
"""

import numpy as np

from tfee import naming
from tfee import stages as stages_lib
from tfee._keras import tf

__all__ = []


def _describe(spec):
    return f"shape={tuple(spec.shape.as_list())}, dtype={spec.dtype.name}"


def images(representative, network, samples, api, argument="representative"):
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
    return images


def stage_inputs(network, calibration):
    """[stage 1 input, stage 2 input, ...] produced by the float stages."""
    inputs = [calibration]
    for model in stages_lib.stage_models(network)[:-1]:
        inputs.append(
            np.asarray(model.predict(inputs[-1], verbose=0)["features"], np.float32)
        )
    return inputs


def generator(names, inputs):
    """A representative dataset yielding (signature_key, inputs) pairs."""

    def representative_dataset():
        for i in range(len(inputs[0])):
            for name in names:
                kind, k = name.split("_")
                k = int(k)
                if kind == "exit":
                    yield name, {"image": inputs[0][i : i + 1]}
                else:
                    key = naming.stage_input_name(k)
                    yield name, {key: inputs[k - 1][i : i + 1]}

    return representative_dataset


def single_generator(data):
    """A representative dataset for a one-signature model."""

    def representative_dataset():
        for i in range(len(data)):
            yield [data[i : i + 1]]

    return representative_dataset
