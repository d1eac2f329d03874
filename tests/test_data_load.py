import numpy as np
import pytest
import tensorflow_datasets as tfds

import tfee
from tfee import tf


def _write_folder(root, classes=("cat", "dog"), per_class=5, size=6):
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            tf.io.write_file(str(root / name / f"{i}.png"), tf.io.encode_png(image))


def test_load_digits_by_name_reports_classes_and_shape():
    data = tfee.data.load("digits", batch_size=32)
    assert data.num_classes == 10 and data.input_shape == (8, 8, 1)
    images, labels = next(iter(data.train))
    assert images.shape == (32, 8, 8, 1) and labels.dtype == tf.int32


def test_load_a_tfds_name_offline_from_data_dir(tmp_path):
    with tfds.testing.mock_data(num_examples=12):
        data = tfee.data.load("mnist", data_dir=str(tmp_path), batch_size=4)
        images, labels = next(iter(data.train))
    assert data.num_classes == 10 and data.input_shape == (28, 28, 1)
    assert images.dtype == tf.float32 and float(tf.reduce_max(images)) <= 1.0
    assert labels.dtype == tf.int32 and images.shape == (4, 28, 28, 1)


def test_load_a_single_image_folder_splits_it(tmp_path):
    _write_folder(tmp_path, per_class=10)
    data = tfee.data.load(str(tmp_path), batch_size=64, validation_fraction=0.2)
    sizes = [sum(len(y) for _, y in ds) for ds in data[:3]]
    assert sizes == [12, 4, 4]
    assert data.num_classes == 2 and data.input_shape == (6, 6, 3)


def test_load_a_train_and_test_folder_keeps_the_test_split(tmp_path):
    _write_folder(tmp_path / "train", per_class=10)
    _write_folder(tmp_path / "test", per_class=3)
    data = tfee.data.load(str(tmp_path), validation_fraction=0.1)
    assert sum(len(y) for _, y in data.test) == 6
    assert sum(len(y) for _, y in data.validation) == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": ""}, "`name` must be 'digits'"),
        ({"name": "digits", "batch_size": 0}, "`batch_size` must be a positive"),
        ({"name": "digits", "validation_fraction": 0.6}, r"must be in \(0, 0.5\)"),
    ],
)
def test_bad_load_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tfee.data.load(**kwargs)
