"""Dataset helpers: splits, the embedded digits, image folders."""

import os

import numpy as np
import pytest

import tfee
from tfee import tf


def test_split_arrays_is_a_seeded_partition():
    x, y = np.arange(20)[:, None], np.arange(20)
    parts = tfee.data.split_arrays(x, y, (0.5, 0.25, 0.25), seed=3)
    assert [len(p[1]) for p in parts] == [10, 5, 5]
    assert sorted(np.concatenate([p[1] for p in parts])) == list(range(20))
    again = tfee.data.split_arrays(x, y, (0.5, 0.25, 0.25), seed=3)
    np.testing.assert_array_equal(parts[0][1], again[0][1])


def test_split_arrays_rejects_bad_fractions_and_lengths():
    with pytest.raises(ValueError, match=r"sum to 1. Received: fractions=\(0.5, 0.6\)"):
        tfee.data.split_arrays(np.zeros(4), np.zeros(4), (0.5, 0.6))
    with pytest.raises(ValueError, match="4 images and 3 labels"):
        tfee.data.split_arrays(np.zeros(4), np.zeros(3))


def test_digits_are_embedded_and_split():
    train, validation, test = tfee.data.digits(batch_size=32)
    images, labels = next(iter(train))
    assert images.shape[1:] == (8, 8, 1) and images.dtype == tf.float32
    assert float(tf.reduce_max(images)) <= 1.0
    sizes = [sum(int(b[1].shape[0]) for b in ds) for ds in (train, validation, test)]
    assert sum(sizes) == 1797 and sizes[0] > sizes[1]


def test_image_folder_is_read_by_class_and_cached(tmp_path):
    for name in ("cat", "dog"):
        os.makedirs(tmp_path / "images" / name)
        for i in range(2):
            pixels = np.full((4, 4, 3), 40 * i, "uint8")
            tf.io.write_file(
                str(tmp_path / "images" / name / f"{i}.png"), tf.io.encode_png(pixels)
            )
    cache = str(tmp_path / "cache.npz")
    images, labels, classes = tfee.data.load_image_folder(
        str(tmp_path / "images"), cache
    )
    assert images.shape == (4, 4, 4, 3) and classes == ("cat", "dog")
    assert list(labels) == [0, 0, 1, 1] and os.path.exists(cache)
    os.remove(tmp_path / "images" / "cat" / "0.png")  # The cache is read instead.
    cached = tfee.data.load_image_folder(str(tmp_path / "images"), cache)
    np.testing.assert_array_equal(cached[0], images)
    os.rename(tmp_path / "images", tmp_path / "other")  # Another folder: decoded.
    assert len(tfee.data.load_image_folder(str(tmp_path / "other"), cache)[0]) == 3


def test_missing_image_folder_raises():
    with pytest.raises(ValueError, match="Received: directory='/nonexistent'"):
        tfee.data.load_image_folder("/nonexistent")


def test_crop_flip_keeps_the_shape():
    image = tf.ones((8, 8, 3))
    augmented, label = tfee.data.augment_crop_flip(image, 1)
    assert augmented.shape == (8, 8, 3) and label == 1
