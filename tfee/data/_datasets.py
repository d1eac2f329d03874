"""`tf.data` datasets as a source: one to split, or a dict of splits."""

import warnings

import numpy as np

from tfee._keras import tf
from tfee.data import _pipeline

__all__ = ["from_datasets"]


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
    return dataset.map(_pipeline.scaled)


def _count_classes(dataset):
    top = dataset.reduce(
        tf.constant(-1, tf.int32),
        lambda highest, example: tf.maximum(highest, tf.reduce_max(example[1])),
    )
    return int(top) + 1


def from_datasets(source, validation_fraction, seed, api):
    """`Examples` of a `tf.data.Dataset` (split into train, validation and
    test) or a dict of them keyed 'train', 'test' and optionally
    'validation'."""
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
    return _pipeline.Examples(
        *parts, num_classes=_count_classes(parts[0]), class_names=None
    )


def _check_float_images(examples, api, split, count=256):
    """Float images hand on as they are, so the first `count` of a split must
    be finite and (the promise of every source) in [0, 1]: raw 0-255 floats
    would train and calibrate on the wrong scale, silently."""
    if not examples.element_spec[0].dtype.is_floating:
        return  # Integers are scaled to [0, 1] by `_pipeline.scaled`.
    # Flattened one by one: images of different sizes are resized later.
    images = [np.asarray(x).ravel() for x, _ in examples.take(count)]
    if not images:
        return  # An empty split is named where splits are counted.
    values = np.concatenate(images)
    if not np.isfinite(values).all():
        raise ValueError(
            f"{api}: the {split} split's float images hold NaN or infinity; "
            "replace them before loading. Received: "
            f"{int(np.sum(~np.isfinite(values)))} non-finite values in the first "
            f"{len(images)} images"
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
