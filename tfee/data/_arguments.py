"""The checks of `load`'s arguments (and `load_image_folder`'s image size)."""

import os

from tfee import _checks
from tfee.data import _pipeline

__all__ = [
    "check_augment",
    "check_batch_size",
    "check_cache",
    "check_image_size",
    "check_no_per_class",
    "check_validation_fraction",
    "check_validation_per_class",
]


def check_batch_size(batch_size, api):
    if (
        not isinstance(batch_size, int)
        or isinstance(batch_size, bool)
        or batch_size < 1
    ):
        raise ValueError(
            f"{api}: `batch_size` must be a positive integer. "
            f"Received: batch_size={batch_size!r}"
        )
    return batch_size


def check_validation_fraction(validation_fraction, api):
    if not 0 < validation_fraction < 0.5:
        raise ValueError(
            f"{api}: `validation_fraction` must be in (0, 0.5). "
            f"Received: validation_fraction={validation_fraction!r}"
        )
    return validation_fraction


def check_image_size(image_size, api):
    """None, or `image_size` as a (height, width) tuple of positive ints."""
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


def check_validation_per_class(validation_per_class, api):
    if validation_per_class is None:
        return None
    return _checks.check_int(validation_per_class, "validation_per_class", api)


def check_no_per_class(validation_per_class, source, api):
    """Raises where `validation_per_class` is given for a source other than
    an image folder."""
    if validation_per_class is not None:
        raise ValueError(
            f"{api}: `validation_per_class` applies to image folders, whose "
            "labels are read at once; 'digits' has its own split and other "
            "sources stream, so use `validation_fraction`. Received: "
            f"validation_per_class={validation_per_class!r} with "
            f"source={source!r}"
        )


def check_augment(augment, api):
    """None, a function, or the function an augmentation's name stands for."""
    if augment is None or callable(augment):
        return augment
    if augment not in _pipeline.AUGMENTATIONS:
        raise ValueError(
            f"{api}: `augment` must be None, one of "
            f"{sorted(_pipeline.AUGMENTATIONS)} or a function (image, label) -> "
            f"(image, label). Received: augment={augment!r}"
        )
    return _pipeline.AUGMENTATIONS[augment]


def check_cache(cache, api):
    """The cache directory `cache` names (None for no cache or memory)."""
    if not (cache is None or cache is True or isinstance(cache, (str, os.PathLike))):
        raise ValueError(
            f"{api}: `cache` must be None, True or a directory. Received: "
            f"cache={cache!r}"
        )
    return os.fspath(cache) if cache not in (None, True) else None
