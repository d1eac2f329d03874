"""Datasets as tf.data pipelines: an embedded default and real-data loaders."""

import os
import typing

import numpy as np

from tfee._files import write_atomically
from tfee._keras import tf

__all__ = [
    "DataSplits",
    "augment_crop_flip",
    "digits",
    "load",
    "load_image_folder",
    "split_arrays",
]


def split_arrays(images, labels, fractions=(0.6, 0.2, 0.2), seed=0):
    """Shuffles (images, labels) with `seed` and cuts them into consecutive splits.

    Args:
      images: array (n, ...).
      labels: array (n,).
      fractions: positive split sizes that sum to 1.
      seed: shuffling seed.

    Returns:
      A list of (images, labels) pairs, one per fraction.
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if len(images) != len(labels):
        raise ValueError(
            "split_arrays: `images` and `labels` must have the same length. "
            f"Received: {len(images)} images and {len(labels)} labels"
        )
    if any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            "split_arrays: `fractions` must be positive and sum to 1. "
            f"Received: fractions={tuple(fractions)}"
        )
    order = np.random.default_rng(seed).permutation(len(images))
    bounds = np.round(np.cumsum((0,) + tuple(fractions)) * len(images)).astype(int)
    return [
        (images[order[a:b]], labels[order[a:b]]) for a, b in zip(bounds, bounds[1:])
    ]


def digits(batch_size=64, fractions=(0.6, 0.2, 0.2), seed=0):
    """scikit-learn's bundled 8x8 digits (1,797 images): no download needed.

    Needs the "demo" extra (scikit-learn). Images are scaled to [0, 1] with
    shape (8, 8, 1); labels are int32 in 0..9.

    Returns:
      (train, validation, test) `tf.data.Dataset`s of (image, label) batches;
      the training split is reshuffled every epoch.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "tfee.data.digits needs scikit-learn: pip install 'tfee[demo]'"
        ) from error
    bunch = load_digits()
    images = (bunch.images / 16.0).astype("float32")[..., None]
    labels = bunch.target.astype("int32")
    splits = split_arrays(images, labels, fractions, seed)
    datasets = []
    for i, (x, y) in enumerate(splits):
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        if i == 0:
            ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        datasets.append(ds.batch(batch_size).prefetch(tf.data.AUTOTUNE))
    return tuple(datasets)


def load_image_folder(directory, cache=None):
    """Reads `directory/<class>/<image>` into uint8 arrays (classes sorted by name).

    This is the layout of `tfds.folder_dataset.ImageFolder` and of the CIFAR-10
    copy in shared/datasets. Decoding tens of thousands of JPEGs is slow, so
    pass `cache` (an .npz path) to decode once and reuse.

    Args:
      directory: the folder holding one sub-folder per class.
      cache: optional .npz path written after the first decode.

    Returns:
      (images uint8 (n, h, w, c), labels int32 (n,), class_names tuple).
    """
    import os

    if cache and os.path.exists(cache):
        with np.load(cache) as stored:
            return stored["images"], stored["labels"], tuple(stored["class_names"])
    if not os.path.isdir(directory):
        raise ValueError(
            "load_image_folder: `directory` must be an existing folder of class "
            f"sub-folders. Received: directory={directory!r}"
        )
    class_names = tuple(
        sorted(
            d
            for d in os.listdir(directory)
            if os.path.isdir(os.path.join(directory, d))
        )
    )
    if not class_names:
        raise ValueError(
            f"load_image_folder: no class sub-folders in directory={directory!r}"
        )
    images, labels = [], []
    for label, name in enumerate(class_names):
        folder = os.path.join(directory, name)
        for file_name in sorted(os.listdir(folder)):
            data = tf.io.read_file(os.path.join(folder, file_name))
            images.append(
                tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
            )
            labels.append(label)
    images, labels = np.stack(images), np.asarray(labels, dtype="int32")
    if cache:

        def write(partial):
            with open(partial, "wb") as f:  # A file object: savez adds no suffix.
                np.savez(
                    f, images=images, labels=labels, class_names=np.array(class_names)
                )

        write_atomically(cache, write)
    return images, labels, class_names


def augment_crop_flip(image, label, padding=4):
    """Random crop after zero-padding by `padding` pixels, plus a horizontal flip."""
    shape = tf.shape(image)
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
    image = tf.image.random_crop(padded, shape)
    return tf.image.random_flip_left_right(image), label


class DataSplits(typing.NamedTuple):
    """What `load` returns: three batched pipelines and what a model needs."""

    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    num_classes: int
    input_shape: tuple


def _batched(images, labels, batch_size, shuffle, seed):
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _from_folder(directory, batch_size, validation_fraction, seed):
    splits = {}
    if os.path.isdir(os.path.join(directory, "train")) and os.path.isdir(
        os.path.join(directory, "test")
    ):
        train_x, train_y, classes = load_image_folder(os.path.join(directory, "train"))
        test_x, test_y, test_classes = load_image_folder(
            os.path.join(directory, "test")
        )
        if test_classes != classes:
            raise ValueError(
                "tfee.data.load: the train/ and test/ folders of "
                f"{directory!r} must hold the same classes. Received: {classes} "
                f"and {test_classes}"
            )
        (train_x, train_y), (val_x, val_y) = split_arrays(
            train_x, train_y, (1 - validation_fraction, validation_fraction), seed
        )
        splits = {
            "train": (train_x, train_y),
            "validation": (val_x, val_y),
            "test": (test_x, test_y),
        }
    else:
        images, labels, classes = load_image_folder(directory)
        held_out = validation_fraction
        parts = split_arrays(
            images, labels, (1 - 2 * held_out, held_out, held_out), seed
        )
        splits = dict(zip(("train", "validation", "test"), parts))
    datasets = [
        _batched(
            x.astype("float32") / 255.0,
            y,
            batch_size,
            shuffle=name == "train",
            seed=seed,
        )
        for name, (x, y) in splits.items()
    ]
    shape = tuple(splits["train"][0].shape[1:])
    return DataSplits(*datasets, num_classes=len(classes), input_shape=shape)


def _from_tfds(name, data_dir, download, batch_size, validation_fraction, seed):
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "tfee.data.load needs tensorflow-datasets for TFDS names: "
            "pip install tensorflow-datasets"
        ) from error
    builder = tfds.builder(name, data_dir=data_dir)
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise ValueError(
            f"tfee.data.load: the TFDS dataset {name!r} must have 'image' and "
            f"'label' features. Received features: {list(features)}"
        )
    known = set(builder.info.splits or ())
    percent = int(round(100 * (1 - validation_fraction)))
    if "validation" in known:
        split_names = ["train", "validation", "test"]
    else:
        split_names = [f"train[:{percent}%]", f"train[{percent}%:]", "test"]
    if download:
        builder.download_and_prepare()
    datasets = []
    for i, split in enumerate(split_names):
        ds = builder.as_dataset(split=split, as_supervised=True, shuffle_files=i == 0)

        def scale(image, label):
            return tf.cast(image, tf.float32) / 255.0, tf.cast(label, tf.int32)

        ds = ds.map(scale, num_parallel_calls=tf.data.AUTOTUNE)
        if i == 0:
            ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
        datasets.append(ds.batch(batch_size).prefetch(tf.data.AUTOTUNE))
    return DataSplits(
        *datasets,
        num_classes=int(features["label"].num_classes),
        input_shape=tuple(features["image"].shape),
    )


def load(
    name,
    *,
    data_dir=None,
    download=False,
    batch_size=64,
    validation_fraction=0.1,
    seed=0,
):
    """Train/validation/test pipelines by dataset name, scaled to [0, 1].

    Args:
      name: "digits" (scikit-learn's embedded 8x8 digits, 60/20/20 split);
        a folder of images, either `<class>/<image>` (split into train,
        validation and test) or `train/<class>/...` plus `test/<class>/...`;
        or a TensorFlow Datasets name such as "mnist" or "cifar10" with
        'image' and 'label' features.
      data_dir: where TFDS keeps its prepared data.
      download: let TFDS download and prepare the data if missing (default
        False: offline, the data must already be under `data_dir`).
      batch_size: batch size of every split.
      validation_fraction: share of the training data held out for
        validation when the source has no validation split (for a single
        folder: also the test share).
      seed: shuffling and splitting seed.

    Returns:
      A `DataSplits(train, validation, test, num_classes, input_shape)`;
      the training split is reshuffled every epoch; labels are int32.

    Example:
      >>> data = tfee.data.load("cifar10", data_dir="~/tensorflow_datasets")
      >>> backbone = tfee.backbones.resnet_cifar(20, data.num_classes,
      ...                                        data.input_shape)
    """
    if not isinstance(name, str) or not name:
        raise ValueError(
            "tfee.data.load: `name` must be 'digits', an image folder or a TFDS "
            f"name. Received: name={name!r}"
        )
    if (
        not isinstance(batch_size, int)
        or isinstance(batch_size, bool)
        or batch_size < 1
    ):
        raise ValueError(
            "tfee.data.load: `batch_size` must be a positive integer. "
            f"Received: batch_size={batch_size!r}"
        )
    if not 0 < validation_fraction < 0.5:
        raise ValueError(
            "tfee.data.load: `validation_fraction` must be in (0, 0.5). "
            f"Received: validation_fraction={validation_fraction!r}"
        )
    if name == "digits":
        train, validation, test = digits(batch_size, seed=seed)
        return DataSplits(
            train, validation, test, num_classes=10, input_shape=(8, 8, 1)
        )
    if os.path.isdir(name):
        return _from_folder(name, batch_size, validation_fraction, seed)
    return _from_tfds(name, data_dir, download, batch_size, validation_fraction, seed)
