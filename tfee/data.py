"""Datasets as tf.data pipelines: an embedded default and real-data loaders."""

import os
import typing
import warnings

import numpy as np

from tfee import _checks
from tfee._files import write_atomically
from tfee._keras import tf

__all__ = [
    "DataSplits",
    "augment_crop_flip",
    "channel_moments",
    "digits",
    "load",
    "load_image_folder",
    "split_arrays",
    "stratified_holdout",
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


def stratified_holdout(labels, per_class, rng):
    """A boolean mask holding out `per_class` samples of every class.

    Classes are visited in sorted order and each draws its members with
    `rng.choice` (without replacement): the same labels and generator state
    always give the same mask. The reference recipe's validation split and
    `load(..., validation_per_class=N)` are both this mask.

    Args:
      labels: integer labels (n,).
      per_class: how many samples of each class to hold out, a positive int.
      rng: a `numpy.random.Generator` (advanced by the draw).

    Returns:
      A bool array (n,), True for the held-out samples.

    Raises:
      ValueError: a class has no more than `per_class` samples (nothing of
        it would be left to train on).
    """
    labels = np.asarray(labels)
    per_class = _checks.check_int(
        per_class, "per_class", "tfee.data.stratified_holdout"
    )
    classes, counts = np.unique(labels, return_counts=True)
    if (counts <= per_class).any():
        raise ValueError(
            "tfee.data.stratified_holdout: `per_class` must be a positive integer "
            f"below every class's sample count (the smallest class has "
            f"{counts.min()}). Received: per_class={per_class!r}"
        )
    held_out = np.zeros(len(labels), bool)
    for label in classes:
        members = np.flatnonzero(labels == label)
        held_out[rng.choice(members, per_class, replace=False)] = True
    return held_out


def _batched(dataset, batch_size, training, seed, augment=None):
    if training:
        dataset = dataset.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
        if augment is not None:
            dataset = dataset.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def digits(batch_size=64, fractions=(0.6, 0.2, 0.2), seed=0):
    """scikit-learn's bundled 8x8 digits (1,797 images): no download needed.

    Needs the "demo" extra (scikit-learn). Images are scaled to [0, 1] with
    shape (8, 8, 1); labels are int32 in 0..9.

    Returns:
      (train, validation, test) `tf.data.Dataset`s of (image, label) batches;
      the training split is reshuffled every epoch.
    """
    examples = _digits(fractions, seed)
    return tuple(
        _batched(ds, batch_size, training=i == 0, seed=seed)
        for i, ds in enumerate(examples[:3])
    )


# Files in a class folder that are not images (notes, OS litter): skipped
# with a warning instead of failing the whole folder.
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def _read_image(path):
    """One decoded uint8 image (h, w, 3)."""
    try:
        data = tf.io.read_file(path)
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:
        raise ValueError(
            f"tfee.data: cannot decode the image file {path!r} (accepted: PNG, "
            f"JPEG, BMP, GIF). Received: {error.message.splitlines()[0]}"
        ) from None
    return image.numpy()


def _resized(images, image_size, chunk=4096):
    """uint8 images resized to `image_size` (antialiased), a chunk at a time."""
    parts = []
    for start in range(0, len(images), chunk):
        part = tf.image.resize(
            images[start : start + chunk], image_size, antialias=True
        )
        parts.append(
            tf.cast(tf.clip_by_value(tf.round(part), 0, 255), tf.uint8).numpy()
        )
    return np.concatenate(parts)


def _cached(cache, source, image_size):
    """(images, labels, class_names) from `cache` when it was written for
    `source`, resized to `image_size` if needed; else None."""
    if not (cache and os.path.exists(cache)):
        return None
    with np.load(cache) as stored:
        if "source" in stored and str(stored["source"]) != source:
            return None
        resized_to = tuple(stored["resized_to"]) if "resized_to" in stored else ()
        if resized_to and resized_to != image_size:
            return None  # Mixed sizes were resized for another size.
        images = stored["images"]
        if image_size is not None and images.shape[1:3] != image_size:
            images = _resized(images, image_size)
        return images, stored["labels"], tuple(stored["class_names"])


def load_image_folder(directory, cache=None, image_size=None):
    """Reads `directory/<class>/<image>` into uint8 arrays (classes sorted by name).

    This is the layout of `tfds.folder_dataset.ImageFolder` and of the CIFAR-10
    copy in shared/datasets. Decoding tens of thousands of JPEGs is slow, so
    pass `cache` (an .npz path) to decode once and reuse: it holds the images
    at their own size (one cache serves every `image_size`). Files that are
    not images by their suffix (a README, .DS_Store) are skipped with a
    warning.

    Args:
      directory: the folder holding one sub-folder per class.
      cache: optional .npz path written after the first decode (and read
        instead of decoding when it was written for the same folder).
      image_size: optional (height, width) every image is resized to;
        without it every image must have the first image's size.

    Returns:
      (images uint8 (n, h, w, c), labels int32 (n,), class_names tuple).

    Raises:
      ValueError: `directory` is not a folder of class folders, an image
        file cannot be decoded, or images differ in size and no
        `image_size` is given (both name the file).
    """
    image_size = _check_image_size(image_size, "load_image_folder")
    source = os.path.abspath(directory)
    cached = _cached(cache, source, image_size)
    if cached is not None:
        return cached
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
    if len(class_names) < 2:
        raise ValueError(
            "load_image_folder: a classifier needs at least 2 class folders; "
            f"directory={directory!r} holds one: {list(class_names)}"
        )
    images, labels, skipped, odd, empty = [], [], [], None, []
    for label, name in enumerate(class_names):
        folder = os.path.join(directory, name)
        found = len(images)
        for file_name in sorted(os.listdir(folder)):
            path = os.path.join(folder, file_name)
            if os.path.isdir(path) or not file_name.lower().endswith(_IMAGE_SUFFIXES):
                skipped.append(path)
                continue
            image = _read_image(path)
            if images and odd is None and image.shape != images[0].shape:
                odd = (path, image.shape[:2], images[0].shape[:2])
            images.append(image)
            labels.append(label)
        if len(images) == found:
            empty.append(name)
    if empty:
        # Kept, it would be a class no image teaches and every label shifts.
        raise ValueError(
            f"load_image_folder: the class folders {empty} of "
            f"directory={directory!r} hold no images; remove them or add images"
        )
    if skipped:
        warnings.warn(
            f"load_image_folder: skipped {len(skipped)} file(s) that are not "
            f"images {_IMAGE_SUFFIXES}: {skipped[:5]}",
            stacklevel=2,
        )
    if not images:
        raise ValueError(
            f"load_image_folder: no image files in the class folders of "
            f"directory={directory!r}"
        )
    resized_to = ()
    if odd is None:
        images = np.stack(images)
    elif image_size is None:
        raise ValueError(
            f"load_image_folder: the image {odd[0]!r} is {odd[1]} pixels, the "
            f"ones before it {odd[2]}. Pass `image_size=(height, width)` to "
            "resize every image."
        )
    else:
        images = np.concatenate([_resized(image[None], image_size) for image in images])
        resized_to = image_size
    labels = np.asarray(labels, dtype="int32")
    if cache:

        def write(partial):
            with open(partial, "wb") as f:  # A file object: savez adds no suffix.
                np.savez(
                    f,
                    images=images,
                    labels=labels,
                    class_names=np.array(class_names),
                    source=np.array(source),
                    resized_to=np.array(resized_to, dtype="int64"),
                )

        write_atomically(cache, write)
    if image_size is not None and images.shape[1:3] != image_size:
        images = _resized(images, image_size)
    return images, labels, class_names


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


class _Examples(typing.NamedTuple):
    """Three unbatched splits of (float32 image in [0, 1], int32 label)."""

    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    num_classes: int
    class_names: tuple


def _check_image_size(image_size, api):
    if image_size is None:
        return None
    size = tuple(image_size) if not isinstance(image_size, (str, int)) else ()
    if len(size) != 2 or any(
        isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in size
    ):
        raise ValueError(
            f"{api}: `image_size` must be None or (height, width), two positive "
            f"integers. Received: image_size={image_size!r}"
        )
    return size


def _scaled(image, label):
    """An example as every source hands it on: float32 in [0, 1], int32 label."""
    if image.dtype.is_integer:
        image = tf.cast(image, tf.float32) / 255.0
    image = tf.cast(image, tf.float32)
    if image.shape.rank == 2:
        image = image[..., None]
    return image, tf.cast(label, tf.int32)


def _from_arrays(splits, num_classes, class_names):
    datasets = [
        tf.data.Dataset.from_tensor_slices((x, y)).map(_scaled) for x, y in splits
    ]
    return _Examples(*datasets, num_classes=num_classes, class_names=class_names)


def _digits(fractions, seed):
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "tfee.data.digits needs scikit-learn: pip install 'tfee[demo]'"
        ) from error
    bunch = load_digits()
    images = (bunch.images / 16.0).astype("float32")[..., None]
    splits = split_arrays(images, bunch.target.astype("int32"), fractions, seed)
    return _from_arrays(splits, 10, tuple(str(d) for d in range(10)))


def _check_class_sizes(labels, per_class, splits, classes):
    """Every class must keep training images after `splits` hold-outs."""
    counts = np.bincount(labels, minlength=len(classes))
    small = [
        (classes[i], int(c)) for i, c in enumerate(counts) if c <= splits * per_class
    ]
    if small:
        held = "validation and test" if splits == 2 else "validation"
        raise ValueError(
            f"tfee.data.load: `validation_per_class` holds out {per_class} images "
            f"of every class for {held}, so each class needs more than "
            f"{splits * per_class}; these have fewer: {small[:5]}. Received: "
            f"validation_per_class={per_class}"
        )


def _from_folder(directory, validation, seed, image_size, cache):
    """Examples of an image folder; `validation` is a fraction of the
    training images or, as an int, a count per class (stratified)."""

    def read(folder, tag):
        path = os.path.join(cache, f"{tag}.npz") if cache else None
        return load_image_folder(folder, cache=path, image_size=image_size)

    if os.path.isdir(os.path.join(directory, "train")) and os.path.isdir(
        os.path.join(directory, "test")
    ):
        train_x, train_y, classes = read(os.path.join(directory, "train"), "train")
        test_x, test_y, test_classes = read(os.path.join(directory, "test"), "test")
        if test_classes != classes:
            raise ValueError(
                "tfee.data.load: the train/ and test/ folders of "
                f"{directory!r} must hold the same classes. Received: {classes} "
                f"and {test_classes}"
            )
        if train_x.shape[1:] != test_x.shape[1:]:
            raise ValueError(
                f"tfee.data.load: the train/ images of {directory!r} are "
                f"{train_x.shape[1:]}, the test/ ones {test_x.shape[1:]}. Pass "
                "`image_size=(height, width)` to resize both."
            )
        if isinstance(validation, int):
            _check_class_sizes(train_y, validation, 1, classes)
            held_out = stratified_holdout(
                train_y, validation, np.random.default_rng(seed)
            )
            splits = [
                (train_x[~held_out], train_y[~held_out]),
                (train_x[held_out], train_y[held_out]),
                (test_x, test_y),
            ]
        else:
            splits = split_arrays(
                train_x, train_y, (1 - validation, validation), seed
            ) + [(test_x, test_y)]
    else:
        images, labels, classes = read(directory, "images")
        if isinstance(validation, int):
            # Validation and test: `validation` per class each.
            _check_class_sizes(labels, validation, 2, classes)
            rng = np.random.default_rng(seed)
            test = stratified_holdout(labels, validation, rng)
            rest = np.flatnonzero(~test)
            held = rest[stratified_holdout(labels[rest], validation, rng)]
            kept = np.ones(len(labels), bool)
            kept[test] = kept[held] = False
            splits = [
                (images[kept], labels[kept]),
                (images[held], labels[held]),
                (images[test], labels[test]),
            ]
        else:
            splits = split_arrays(
                images, labels, (1 - 2 * validation, validation, validation), seed
            )
    # Read in class order: a held-out split would come sorted by class (the
    # first batches one class), so each is shuffled once, with the seed.
    rng = np.random.default_rng(seed)
    for i in (1, 2):
        order = rng.permutation(len(splits[i][1]))
        splits[i] = (splits[i][0][order], splits[i][1][order])
    return _from_arrays(splits, len(classes), classes)


def _split_by_index(dataset, fractions, seed):
    """Cuts one dataset into len(fractions) parts by a seeded draw per element
    (its position decides, so every pass gives the same parts)."""
    bounds = np.cumsum((0.0,) + tuple(fractions))
    bounds[-1] = 1.0 + 1e-9
    draws = dataset.enumerate().map(
        lambda i, example: (
            tf.random.stateless_uniform(
                [], seed=tf.stack([tf.cast(i, tf.int64), seed])
            ),
            example,
        )
    )
    return [
        draws.filter(lambda u, _, a=a, b=b: (u >= a) & (u < b)).map(
            lambda _, example: example
        )
        for a, b in zip(bounds, bounds[1:])
    ]


def _unbatched(dataset, api, argument):
    spec = dataset.element_spec
    if isinstance(spec, dict) and {"image", "label"} <= set(spec):
        # TFDS' own form (as_supervised=False): its image and label features.
        dataset = dataset.map(lambda example: (example["image"], example["label"]))
        spec = dataset.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2):
        raise ValueError(
            f"{api}: `{argument}` must yield (image, label) pairs. Received "
            f"elements: {spec}"
        )
    # One-hot labels would pass through the int32 cast as garbage.
    if not spec[1].dtype.is_integer:
        raise ValueError(
            f"{api}: `{argument}` must yield integer class ids as labels (not "
            f"one-hot vectors). Received labels: {spec[1]}"
        )
    rank = spec[0].shape.rank
    if rank == 4 or (rank == 3 and spec[1].shape.rank == 1):
        dataset = dataset.unbatch()
    if dataset.element_spec[1].shape.rank != 0:
        raise ValueError(
            f"{api}: `{argument}` must yield one integer class id per image. "
            f"Received labels: {spec[1]} with images {spec[0]}"
        )
    return dataset.map(_scaled)


def _count_classes(dataset):
    top = dataset.reduce(
        tf.constant(-1, tf.int32),
        lambda highest, example: tf.maximum(highest, tf.reduce_max(example[1])),
    )
    return int(top) + 1


def _from_datasets(source, validation_fraction, seed, api):
    if isinstance(source, tf.data.Dataset):
        examples = _unbatched(source, api, "source")
        held_out = validation_fraction
        parts = _split_by_index(examples, (1 - 2 * held_out, held_out, held_out), seed)
    else:
        unknown = set(source) - {"train", "validation", "test"}
        if unknown or not {"train", "test"} <= set(source):
            raise ValueError(
                f"{api}: a dict `source` maps 'train', 'test' and optionally "
                "'validation' to tf.data.Datasets. Received keys: "
                f"{sorted(source)}"
            )
        train = _unbatched(source["train"], api, "source['train']")
        test = _unbatched(source["test"], api, "source['test']")
        if "validation" in source:
            validation = _unbatched(source["validation"], api, "source['validation']")
        else:
            train, validation = _split_by_index(
                train, (1 - validation_fraction, validation_fraction), seed
            )
        parts = [train, validation, test]
    for part, name in zip(parts, ("train", "validation", "test")):
        _check_float_images(part, api, name)
    return _Examples(*parts, num_classes=_count_classes(parts[0]), class_names=None)


def _check_float_images(examples, api, split, count=256):
    """Float images hand on as they are, so the first `count` of a split must
    be finite and (the promise of every source) in [0, 1]: raw 0-255 floats
    would train and calibrate on the wrong scale, silently."""
    if not examples.element_spec[0].dtype.is_floating:
        return  # Integers are scaled to [0, 1] by `_scaled`.
    values = np.stack([np.asarray(x) for x, _ in examples.take(count)])
    if not np.isfinite(values).all():
        raise ValueError(
            f"{api}: the {split} split's float images hold NaN or infinity; "
            "replace them before loading. Received: "
            f"{int(np.sum(~np.isfinite(values)))} non-finite values in the first "
            f"{len(values)} images"
        )
    low, high = float(values.min()), float(values.max())
    if low < -0.01 or high > 1.01:
        warnings.warn(
            f"{api}: the {split} split's float images lie in [{low:g}, {high:g}], "
            "not in [0, 1] as every tfee source hands them on (raw 0-255 floats? "
            "divide by 255, or pass uint8 images, which are scaled); "
            "normalise=True normalises them afterwards.",
            UserWarning,
            stacklevel=3,
        )


def _tfds_builder(source, data_dir):
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "tfee.data.load needs tensorflow-datasets for TFDS sources: "
            "pip install tensorflow-datasets"
        ) from error
    if isinstance(source, str):
        return tfds.builder(source, data_dir=data_dir)
    return source


def _from_tfds(builder, download, validation_fraction, seed, api):
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise ValueError(
            f"{api}: the TFDS dataset {builder.name!r} must have 'image' and "
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
    try:
        datasets = [
            builder.as_dataset(
                split=split, as_supervised=True, shuffle_files=i == 0
            ).map(_scaled)
            for i, split in enumerate(split_names)
        ]
    except AssertionError as error:
        if "download_and_prepare" not in str(error):
            raise
        # tfds suggests download=True, which needs the internet.
        raise ValueError(
            f"{api}: the TFDS dataset {builder.name!r} is not prepared under "
            f"data_dir={builder.data_dir!r}. Prepare it once where the internet "
            "is reachable (tfds.builder(name, data_dir=...).download_and_prepare()) "
            "and copy that folder here, pass download=True on a machine with "
            "internet, or load an image folder instead."
        ) from None
    names = getattr(features["label"], "names", None)
    return _Examples(
        *datasets,
        num_classes=int(features["label"].num_classes),
        class_names=tuple(names) if names else None,
    )


def _moments(dataset):
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


_AUGMENTATIONS = {"crop_flip": augment_crop_flip}
_SOURCES = (
    "'digits', an image folder (DIR/<class>/... or DIR/{train,test}/<class>/...), "
    "a TFDS name or builder, a tf.data.Dataset of (image, label), or a dict of "
    "them keyed 'train'/'validation'/'test'"
)


def load(
    source,
    *,
    data_dir=None,
    download=False,
    batch_size=64,
    validation_fraction=0.1,
    validation_per_class=None,
    seed=0,
    image_size=None,
    normalise=False,
    augment=None,
    cache=None,
):
    """Train/validation/test pipelines from any image source, scaled to [0, 1].

    Args:
      source: "digits" (scikit-learn's embedded 8x8 digits, 60/20/20 split);
        a folder of images, either `<class>/<image>` (split into train,
        validation and test) or `train/<class>/...` plus `test/<class>/...`;
        a TensorFlow Datasets name ("cifar10") or builder
        (`tfds.builder(...)`, `tfds.folder_dataset.ImageFolder(...)`) with
        'image' and 'label' features; a `tf.data.Dataset` of (image, label)
        pairs, batched or not (split into train, validation and test); or a
        dict of such datasets keyed "train", "test" and optionally
        "validation". Integer images are scaled by 1/255.
      data_dir: where TFDS keeps its prepared data.
      download: let TFDS download and prepare the data if missing (default
        False: offline, the data must already be under `data_dir`).
      batch_size: batch size of every split.
      validation_fraction: share of the training data held out for
        validation when the source has no validation split (for a single
        folder or dataset: also the test share).
      validation_per_class: for image folders, hold out this many images of
        every class instead (stratified, seeded: `stratified_holdout`; for
        a flat folder, as many again for test). The reference recipe's
        split is `validation_per_class=500, seed=0` of CIFAR-10's train/.
      seed: shuffling and splitting seed.
      image_size: (height, width) to resize every image to, or None.
      normalise: subtract the training split's per-channel mean and divide by
        its std in every split; the statistics come back as
        `DataSplits.normalisation`. Once a network is trained on them,
        `tfee.include_normalisation(network, data.normalisation)` stores
        them in it, so that every later step feeds raw images.
      augment: None, "crop_flip" (4-pixel padded random crop + horizontal
        flip) or a function `(image, label) -> (image, label)`, applied to
        single training images after normalisation.
      cache: None; True to cache the prepared (resized, scaled) images in
        memory; or a directory: decoded image folders are kept there as .npz,
        other sources as tf.data cache files.

    Returns:
      A `DataSplits(train, validation, test, num_classes, input_shape,
      class_names, normalisation)`; the training split is reshuffled every
      epoch; labels are int32.

    Raises:
      ValueError: an unknown source, bad argument, or an image file that
        cannot be read or has another size (the message names the file).

    Example:
      >>> data = tfee.data.load("../shared/datasets/cifar10", normalise=True,
      ...                       augment="crop_flip", cache="/tmp/cifar10-cache")
      >>> backbone = tfee.backbones.resnet_cifar(20, data.num_classes,
      ...                                        data.input_shape)
    """
    api = "tfee.data.load"
    if (
        not isinstance(batch_size, int)
        or isinstance(batch_size, bool)
        or batch_size < 1
    ):
        raise ValueError(
            f"{api}: `batch_size` must be a positive integer. "
            f"Received: batch_size={batch_size!r}"
        )
    if not 0 < validation_fraction < 0.5:
        raise ValueError(
            f"{api}: `validation_fraction` must be in (0, 0.5). "
            f"Received: validation_fraction={validation_fraction!r}"
        )
    image_size = _check_image_size(image_size, api)
    if validation_per_class is not None:
        validation_per_class = _checks.check_int(
            validation_per_class, "validation_per_class", api
        )
    if augment is not None and not callable(augment):
        if augment not in _AUGMENTATIONS:
            raise ValueError(
                f"{api}: `augment` must be None, one of {sorted(_AUGMENTATIONS)} "
                f"or a function (image, label) -> (image, label). Received: "
                f"augment={augment!r}"
            )
        augment = _AUGMENTATIONS[augment]
    if not (cache is None or cache is True or isinstance(cache, (str, os.PathLike))):
        raise ValueError(
            f"{api}: `cache` must be None, True or a directory. Received: "
            f"cache={cache!r}"
        )
    cache_dir = os.fspath(cache) if cache not in (None, True) else None
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)

    if isinstance(source, os.PathLike):
        source = os.fspath(source)

    def folders_only():
        if validation_per_class is not None:
            raise ValueError(
                f"{api}: `validation_per_class` applies to image folders, whose "
                "labels are read at once; 'digits' has its own split and other "
                "sources stream, so use `validation_fraction`. Received: "
                f"validation_per_class={validation_per_class!r} with "
                f"source={source!r}"
            )

    if isinstance(source, str) and source == "digits":
        folders_only()
        examples = _digits((0.6, 0.2, 0.2), seed)  # its own fixed split
    elif isinstance(source, str) and os.path.isdir(source):
        examples = _from_folder(
            source,
            validation_per_class or validation_fraction,
            seed,
            image_size,
            cache_dir,
        )
        image_size = None  # resized while decoding
    elif isinstance(source, str) and os.path.isfile(source):
        raise ValueError(
            f"{api}: `source` is a file; an image source is a folder of class "
            "folders (DIR/<class>/<image>, or DIR/{train,test}/<class>/...). "
            f"Accepted: {_SOURCES}. Received: source={source!r}"
        )
    elif isinstance(source, (tf.data.Dataset, dict)):
        folders_only()
        examples = _from_datasets(source, validation_fraction, seed, api)
    elif (isinstance(source, str) and source) or (
        hasattr(source, "as_dataset") and hasattr(source, "info")
    ):
        # TFDS names may hold a "/" (a config: "imagenet2012_subset/1pct"), so
        # only what starts like a path is taken for a missing folder.
        looks_like_path = isinstance(source, str) and source.startswith(
            ("/", "./", "../", "~")
        )
        if looks_like_path and not os.path.exists(source):
            raise ValueError(
                f"{api}: `source` looks like a path but there is no folder at "
                f"{source!r}. Accepted: {_SOURCES}."
            )
        folders_only()
        builder = _tfds_builder(source, data_dir)
        examples = _from_tfds(builder, download, validation_fraction, seed, api)
    else:
        raise ValueError(
            f"{api}: `source` must be {_SOURCES}. Received: source={source!r}"
        )

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
        elif cache_dir and not isinstance(source, str):
            ds = ds.cache(os.path.join(cache_dir, f"{tag}.tfdata"))
        splits.append(ds)
    input_shape = tuple(int(d) for d in splits[0].element_spec[0].shape)
    if None in input_shape or len(input_shape) != 3:
        raise ValueError(
            f"{api}: the images have no fixed (height, width, channels) shape "
            f"({splits[0].element_spec[0].shape}); pass `image_size`."
        )

    normalisation = None
    if normalise:
        mean, std = _moments(splits[0])
        std = np.maximum(std, 1e-6)
        normalisation = (mean.tolist(), std.tolist())
        shift, scale = tf.constant(mean), tf.constant(std)
        splits = [ds.map(lambda x, y: ((x - shift) / scale, y)) for ds in splits]
    batched = [
        _batched(ds, batch_size, training=i == 0, seed=seed, augment=augment)
        for i, ds in enumerate(splits)
    ]
    return DataSplits(
        *batched,
        num_classes=examples.num_classes,
        input_shape=input_shape,
        class_names=examples.class_names,
        normalisation=normalisation,
    )
