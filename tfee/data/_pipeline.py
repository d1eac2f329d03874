"""The pipeline step every source shares: scaling, resizing, caching,
normalisation, augmentation and batching into `DataSplits`."""

import os
import typing

import numpy as np

from tfee._keras import tf

__all__ = [
    "AUGMENTATIONS",
    "DataSplits",
    "Examples",
    "augment_crop_flip",
    "batched",
    "channel_moments",
    "moments",
    "pipelines",
    "scaled",
]


class DataSplits(typing.NamedTuple):
    """What `load` returns: three batched pipelines and what a model needs.

    Attributes:
      train, validation, test: batched `tf.data.Dataset`s of (float32 images,
        int32 labels); the training split is reshuffled every epoch.
      num_classes: number of classes.
      input_shape: (height, width, channels) of one image.
      class_names: the classes' names, index order, or None when the source
        has none.
      normalisation: (mean, std) per channel, from the training split, that
        the pipelines subtract and divide by, as lists of floats; None when
        `normalise` is False. Store it in the trained network with
        `tfee.include_normalisation` (or, for clients that normalise
        themselves, pass it to `tfee.export.tflite(..., normalisation=)`).
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    num_classes: int
    input_shape: tuple
    class_names: tuple = None
    normalisation: tuple = None


class Examples(typing.NamedTuple):
    """What every source adapter hands the pipeline step: three unbatched
    splits of (float32 image in [0, 1], int32 label)."""

    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    num_classes: int
    class_names: tuple


def scaled(image, label):
    """An example as every source hands it on: float32 in [0, 1], int32 label."""
    if image.dtype.is_integer:
        image = tf.cast(image, tf.float32) / 255.0
    image = tf.cast(image, tf.float32)
    if image.shape.rank == 2:
        image = image[..., None]
    return image, tf.cast(label, tf.int32)


def batched(dataset, batch_size, training, seed, augment=None):
    """`dataset` in batches; a training split reshuffled every epoch and
    augmented (single images, before batching)."""
    if training:
        dataset = dataset.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
        if augment is not None:
            dataset = dataset.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def augment_crop_flip(image, label, padding=4):
    """Random crop after zero-padding by `padding` pixels, plus a horizontal flip.

    Maps over single images (h, w, c) or batches (n, h, w, c) alike, so it
    can follow `load`'s batched output: each image of a batch gets its own
    crop and flip.
    """
    if image.shape.rank == 4:
        return (
            tf.map_fn(lambda x: augment_crop_flip(x, None, padding)[0], image),
            label,
        )
    shape = tf.shape(image)
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
    image = tf.image.random_crop(padded, shape)
    return tf.image.random_flip_left_right(image), label


# The augmentations `load(..., augment=)` knows by name.
AUGMENTATIONS = {"crop_flip": augment_crop_flip}


def channel_moments(images):
    """Per-channel mean and standard deviation of images.

    Args:
      images: uint8 images (scaled to [0, 1] first) or float images (taken as
        they are), shape (n, h, w, c).

    Returns:
      (mean, std), float32 arrays of `c` values.
    """
    images = np.asarray(images)
    # float64: a float32 sum over 46M pixels loses the low digits.
    pixels = images.reshape(-1, images.shape[-1]).astype("float64")
    if images.dtype == np.uint8:
        pixels /= 255.0
    return pixels.mean(axis=0).astype("float32"), pixels.std(axis=0).astype("float32")


def moments(dataset):
    """Per-channel (mean, std) over every pixel of an unbatched image dataset."""

    def add(totals, example):
        pixels = tf.reshape(
            tf.cast(example[0], tf.float64), [-1, tf.shape(example[0])[-1]]
        )
        return (
            totals[0] + tf.reduce_sum(pixels, 0),
            totals[1] + tf.reduce_sum(pixels**2, 0),
            totals[2] + tf.cast(tf.shape(pixels)[0], tf.float64),
        )

    channels = dataset.element_spec[0].shape[-1]
    zeros = tf.zeros([channels], tf.float64)
    total, squares, count = dataset.reduce(
        (zeros, zeros, tf.constant(0.0, tf.float64)), add
    )
    mean = total / count
    std = tf.sqrt(tf.maximum(squares / count - mean**2, 0.0))
    return mean.numpy().astype("float32"), std.numpy().astype("float32")


def pipelines(
    examples,
    api,
    *,
    batch_size,
    seed,
    image_size=None,
    normalise=False,
    augment=None,
    cache=None,
):
    """`examples` as `DataSplits`: resized, cached, normalised and batched.

    Args:
      examples: an `Examples` from a source adapter.
      api: the public API asking, for messages.
      batch_size, seed, normalise: as `load` takes them (checked).
      image_size: (height, width) to resize to, or None.
      augment: None or a function (image, label) -> (image, label).
      cache: None; True to cache each split in memory; or a directory to
        write each split's tf.data cache files in.

    Returns:
      A `DataSplits`.

    Raises:
      ValueError: the images have no fixed (height, width, channels) shape.
    """
    if image_size is not None:
        if tuple(examples.train.element_spec[0].shape[:2]) == image_size:
            image_size = None  # already that size
    splits = []
    for tag, ds in zip(("train", "validation", "test"), examples[:3]):
        if image_size is not None:
            ds = ds.map(
                lambda x, y: (tf.image.resize(x, image_size, antialias=True), y),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        if cache is True:
            ds = ds.cache()
        elif cache:
            ds = ds.cache(os.path.join(cache, f"{tag}.tfdata"))
        splits.append(ds)
    shape = splits[0].element_spec[0].shape
    if shape.rank != 3 or not shape.is_fully_defined():
        raise ValueError(
            f"{api}: the images have no fixed (height, width, channels) shape "
            f"({shape}); pass `image_size`, e.g. image_size=(32, 32). "
            "Received: image_size=None"
        )
    input_shape = tuple(int(d) for d in shape)

    normalisation = None
    if normalise:
        mean, std = moments(splits[0])
        std = np.maximum(std, 1e-6)
        normalisation = (mean.tolist(), std.tolist())
        shift, scale = tf.constant(mean), tf.constant(std)
        splits = [ds.map(lambda x, y: ((x - shift) / scale, y)) for ds in splits]
    return DataSplits(
        *(
            batched(ds, batch_size, training=i == 0, seed=seed, augment=augment)
            for i, ds in enumerate(splits)
        ),
        num_classes=examples.num_classes,
        input_shape=input_shape,
        class_names=examples.class_names,
        normalisation=normalisation,
    )
