"""Arrays as a source: seeded and stratified splits, and the embedded digits."""

import numpy as np

from tfee import _checks
from tfee._keras import tf
from tfee.data import _pipeline

__all__ = [
    "digit_examples",
    "digits",
    "from_arrays",
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


def from_arrays(splits, num_classes, class_names):
    """`Examples` of three (images, labels) pairs."""
    datasets = [
        tf.data.Dataset.from_tensor_slices((x, y)).map(_pipeline.scaled)
        for x, y in splits
    ]
    return _pipeline.Examples(
        *datasets, num_classes=num_classes, class_names=class_names
    )


def digit_examples(fractions, seed):
    """`Examples` of scikit-learn's digits, split by `fractions`."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "tfee.data.digits needs scikit-learn: pip install 'tfee[demo]'"
        ) from error
    bunch = load_digits()
    images = (bunch.images / 16.0).astype("float32")[..., None]
    splits = split_arrays(images, bunch.target.astype("int32"), fractions, seed)
    return from_arrays(splits, 10, tuple(str(d) for d in range(10)))


def digits(batch_size=64, fractions=(0.6, 0.2, 0.2), seed=0):
    """scikit-learn's bundled 8x8 digits (1,797 images): no download needed.

    Needs the "demo" extra (scikit-learn). Images are scaled to [0, 1] with
    shape (8, 8, 1); labels are int32 in 0..9.

    Returns:
      (train, validation, test) `tf.data.Dataset`s of (image, label) batches;
      the training split is reshuffled every epoch.
    """
    examples = digit_examples(fractions, seed)
    return tuple(
        _pipeline.batched(ds, batch_size, training=i == 0, seed=seed)
        for i, ds in enumerate(examples[:3])
    )
