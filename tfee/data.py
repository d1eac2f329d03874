"""Datasets as tf.data pipelines: an embedded default and real-data loaders."""

import numpy as np

from tfee._keras import tf

__all__ = ["augment_crop_flip", "digits", "load_image_folder", "split_arrays"]


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
        partial = cache + ".partial.npz"
        np.savez(
            partial, images=images, labels=labels, class_names=np.array(class_names)
        )
        os.replace(partial, cache)
    return images, labels, class_names


def augment_crop_flip(image, label, padding=4):
    """Random crop after zero-padding by `padding` pixels, plus a horizontal flip."""
    shape = tf.shape(image)
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
    image = tf.image.random_crop(padded, shape)
    return tf.image.random_flip_left_right(image), label
