"""`load`: checks its arguments, picks the source's adapter, runs the pipeline."""

import os

from tfee._keras import tf
from tfee.data import _arguments
from tfee.data import _arrays
from tfee.data import _datasets
from tfee.data import _image_folder
from tfee.data import _pipeline
from tfee.data import _tfds

__all__ = ["load"]

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
    _arguments.check_batch_size(batch_size, api)
    _arguments.check_validation_fraction(validation_fraction, api)
    image_size = _arguments.check_image_size(image_size, api)
    validation_per_class = _arguments.check_validation_per_class(
        validation_per_class, api
    )
    augment = _arguments.check_augment(augment, api)
    cache_dir = _arguments.check_cache(cache, api)
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)

    if isinstance(source, os.PathLike):
        source = os.fspath(source)

    if isinstance(source, str) and source == "digits":
        _arguments.check_no_per_class(validation_per_class, source, api)
        examples = _arrays.digit_examples((0.6, 0.2, 0.2), seed)  # its own split
    elif isinstance(source, str) and os.path.isdir(source):
        examples = _image_folder.from_folder(
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
        _arguments.check_no_per_class(validation_per_class, source, api)
        examples = _datasets.from_datasets(source, validation_fraction, seed, api)
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
        _arguments.check_no_per_class(validation_per_class, source, api)
        builder = _tfds.builder_of(source, data_dir)
        examples = _tfds.from_tfds(builder, download, validation_fraction, seed, api)
    else:
        raise ValueError(
            f"{api}: `source` must be {_SOURCES}. Received: source={source!r}"
        )

    # An image folder keeps its decoded .npz files in `cache_dir`; of the
    # other sources, only dataset and builder objects get tf.data cache files.
    if cache is True:
        pipeline_cache = True
    elif cache_dir and not isinstance(source, str):
        pipeline_cache = cache_dir
    else:
        pipeline_cache = None
    return _pipeline.pipelines(
        examples,
        api,
        batch_size=batch_size,
        seed=seed,
        image_size=image_size,
        normalise=normalise,
        augment=augment,
        cache=pipeline_cache,
    )
