"""An image folder as a source: decoding, resizing, the .npz cache, splits."""

import os
import warnings

import numpy as np

from tfee._files import write_atomically
from tfee._keras import tf
from tfee.data import _arguments
from tfee.data import _arrays

__all__ = ["from_folder", "load_image_folder"]

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
    image_size = _arguments.check_image_size(image_size, "load_image_folder")
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


def from_folder(directory, validation, seed, image_size, cache):
    """`Examples` of an image folder; `validation` is a fraction of the
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
            held_out = _arrays.stratified_holdout(
                train_y, validation, np.random.default_rng(seed)
            )
            splits = [
                (train_x[~held_out], train_y[~held_out]),
                (train_x[held_out], train_y[held_out]),
                (test_x, test_y),
            ]
        else:
            splits = _arrays.split_arrays(
                train_x, train_y, (1 - validation, validation), seed
            ) + [(test_x, test_y)]
    else:
        images, labels, classes = read(directory, "images")
        if isinstance(validation, int):
            # Validation and test: `validation` per class each.
            _check_class_sizes(labels, validation, 2, classes)
            rng = np.random.default_rng(seed)
            test = _arrays.stratified_holdout(labels, validation, rng)
            rest = np.flatnonzero(~test)
            held = rest[_arrays.stratified_holdout(labels[rest], validation, rng)]
            kept = np.ones(len(labels), bool)
            kept[test] = kept[held] = False
            splits = [
                (images[kept], labels[kept]),
                (images[held], labels[held]),
                (images[test], labels[test]),
            ]
        else:
            splits = _arrays.split_arrays(
                images, labels, (1 - 2 * validation, validation, validation), seed
            )
    # Read in class order: a held-out split would come sorted by class (the
    # first batches one class), so each is shuffled once, with the seed.
    rng = np.random.default_rng(seed)
    for i in (1, 2):
        order = rng.permutation(len(splits[i][1]))
        splits[i] = (splits[i][0][order], splits[i][1][order])
    return _arrays.from_arrays(splits, len(classes), classes)
