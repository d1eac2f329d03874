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


def _labels(split):
    return np.concatenate([y.numpy() for _, y in split])


def test_validation_per_class_holds_out_a_stratified_seeded_split(tmp_path):
    _write_folder(tmp_path / "train", classes=("cat", "dog", "owl"), per_class=6)
    _write_folder(tmp_path / "test", classes=("cat", "dog", "owl"), per_class=2)
    data = tfee.data.load(str(tmp_path), validation_per_class=2, seed=3)
    assert np.bincount(_labels(data.validation)).tolist() == [2, 2, 2]
    assert np.bincount(_labels(data.train)).tolist() == [4, 4, 4]
    assert len(_labels(data.test)) == 6
    # The same mask the reference recipe draws from the same generator.
    images, labels, _ = tfee.data.load_image_folder(str(tmp_path / "train"))
    mask = tfee.data.stratified_holdout(labels, 2, np.random.default_rng(3))
    held = {x.tobytes() for x in (images[mask] / 255.0).astype("float32")}
    got = {x.tobytes() for batch, _ in data.validation for x in batch.numpy()}
    assert got == held


def test_validation_per_class_on_a_flat_folder_also_holds_out_test(tmp_path):
    _write_folder(tmp_path, per_class=7)
    data = tfee.data.load(str(tmp_path), validation_per_class=2)
    counts = [np.bincount(_labels(split)).tolist() for split in data[:3]]
    assert counts == [[3, 3], [2, 2], [2, 2]]


def test_validation_per_class_names_the_classes_too_small_for_it(tmp_path):
    _write_folder(tmp_path, per_class=6)
    with pytest.raises(
        ValueError,
        match=r"for validation and test, so each class needs more than 6; these "
        r"have fewer: \[\('cat', 6\), \('dog', 6\)\]",
    ):
        tfee.data.load(str(tmp_path), validation_per_class=np.int64(3))


def test_stratified_holdout_refuses_to_empty_a_class():
    with pytest.raises(ValueError, match="smallest class has 2.*per_class=2"):
        tfee.data.stratified_holdout([0, 0, 1, 1, 1], 2, np.random.default_rng(0))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"source": 3}, r"`source` must be 'digits', an image folder.*source=3"),
        (
            {"source": "digits", "validation_per_class": 0},
            r"`validation_per_class` must be a positive integer",
        ),
        (
            {"source": "/no/such/folder", "validation_per_class": 5},
            "looks like a path but there is no folder",
        ),
        (
            {"source": "digits", "validation_per_class": 5},
            r"`validation_per_class` applies to image folders",
        ),
        ({"source": "/no/such/folder"}, "looks like a path but there is no folder"),
        ({"source": "digits", "batch_size": 0}, "`batch_size` must be a positive"),
        ({"source": "digits", "validation_fraction": 0.6}, r"must be in \(0, 0.5\)"),
        ({"source": "digits", "image_size": (8,)}, r"`image_size` must be None or"),
        ({"source": "digits", "augment": "mixup"}, r"`augment` must be None, one of"),
        ({"source": "digits", "cache": 3}, r"`cache` must be None, True or a dir"),
        ({"source": {"train": None}}, r"dict `source` maps 'train', 'test'"),
    ],
)
def test_bad_load_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tfee.data.load(**kwargs)


def test_normalise_uses_training_statistics_and_reports_them(tmp_path):
    _write_folder(tmp_path, per_class=10)
    data = tfee.data.load(str(tmp_path), normalise=True, validation_fraction=0.2)
    pixels = np.concatenate([x.numpy() for x, _ in data.train]).reshape(-1, 3)
    np.testing.assert_allclose(pixels.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(pixels.std(0), 1, atol=1e-3)
    mean, std = data.normalisation
    assert len(mean) == len(std) == 3 and data.class_names == ("cat", "dog")


def test_resize_augment_and_cache_on_a_folder(tmp_path):
    _write_folder(tmp_path / "images", per_class=10)
    data = tfee.data.load(
        str(tmp_path / "images"),
        image_size=(4, 4),
        augment="crop_flip",
        cache=str(tmp_path / "cache"),
        validation_fraction=0.2,
    )
    assert data.input_shape == (4, 4, 3)
    assert next(iter(data.train))[0].shape[1:] == (4, 4, 3)
    assert (tmp_path / "cache" / "images.npz").exists()


def test_crop_flip_maps_over_batched_output():
    data = tfee.data.load("digits", batch_size=8)
    images, labels = next(iter(data.train.map(tfee.data.augment_crop_flip)))
    assert images.shape == (8, 8, 8, 1) and labels.shape == (8,)


def test_a_tf_data_dataset_is_split_into_three_parts():
    images = np.random.default_rng(0).integers(0, 255, (200, 5, 5, 3), np.uint8)
    labels = np.arange(200) % 4
    source = tf.data.Dataset.from_tensor_slices((images, labels)).batch(32)
    data = tfee.data.load(source, batch_size=50, validation_fraction=0.2)
    sizes = [sum(len(y) for _, y in split) for split in data[:3]]
    assert sum(sizes) == 200 and 90 < sizes[0] < 150 and min(sizes) > 20
    assert data.num_classes == 4 and data.input_shape == (5, 5, 3)
    # The split is the same on every pass.
    assert sizes == [sum(len(y) for _, y in split) for split in data[:3]]


def test_a_dict_of_datasets_keeps_its_splits():
    def ds(n):
        return tf.data.Dataset.from_tensor_slices(
            (np.zeros((n, 4, 4, 1), "float32"), np.arange(n) % 3)
        )

    data = tfee.data.load({"train": ds(30), "validation": ds(6), "test": ds(9)})
    assert [sum(len(y) for _, y in s) for s in data[:3]] == [30, 6, 9]


def test_a_tfds_builder_is_accepted(tmp_path):
    with tfds.testing.mock_data(num_examples=12):
        builder = tfds.builder("mnist", data_dir=str(tmp_path))
        data = tfee.data.load(builder, batch_size=4)
        assert next(iter(data.train))[0].shape == (4, 28, 28, 1)


def test_an_odd_sized_image_is_named(tmp_path):
    _write_folder(tmp_path, per_class=2)
    odd = np.zeros((9, 7, 3), np.uint8)
    tf.io.write_file(str(tmp_path / "dog" / "odd.png"), tf.io.encode_png(odd))
    with pytest.raises(ValueError, match=r"odd.png' is \(9, 7\) pixels.*image_size"):
        tfee.data.load(str(tmp_path))
    data = tfee.data.load(str(tmp_path), image_size=(6, 6))
    assert data.input_shape == (6, 6, 3)


def test_a_stray_file_is_skipped_and_a_broken_image_named(tmp_path):
    _write_folder(tmp_path, per_class=10)
    (tmp_path / "cat" / "README.md").write_text("notes")
    with pytest.warns(UserWarning, match=r"skipped 1 file.*README.md"):
        data = tfee.data.load(str(tmp_path), validation_fraction=0.2)
    assert sum(len(y) for _, y in data.train) == 12
    (tmp_path / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"cannot decode the image file .*broken.jpg"):
        tfee.data.load(str(tmp_path))


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.eye(4, dtype="float32")[np.arange(40) % 4], "integer class ids"),
        (np.eye(4, dtype="int64")[np.arange(40) % 4], "one integer class id per image"),
    ],
)
def test_one_hot_labels_are_refused_not_cast(labels, message):
    images = np.zeros((40, 4, 4, 3), "float32")
    source = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
    with pytest.raises(ValueError, match=message):
        tfee.data.load(source)


@pytest.mark.parametrize("per_class", [0, 1.5, True])
def test_stratified_holdout_names_a_bad_count(per_class):
    with pytest.raises(ValueError, match="`per_class` must be a positive integer"):
        tfee.data.stratified_holdout([0, 0, 1, 1], per_class, np.random.default_rng(0))


def test_a_folders_test_split_is_shuffled_once_with_the_seed(tmp_path):
    # Issue 31, item 9: read in class order, its first batches were one class.
    _write_folder(tmp_path / "train", classes=("a", "b", "c"), per_class=8)
    _write_folder(tmp_path / "test", classes=("a", "b", "c"), per_class=8)
    labels = [
        np.concatenate(
            [y.numpy() for _, y in tfee.data.load(str(tmp_path), seed=s).test]
        )
        for s in (0, 0, 1)
    ]
    assert sorted(labels[0]) == [0] * 8 + [1] * 8 + [2] * 8
    assert len(set(labels[0][:8])) > 1  # Not one class first.
    np.testing.assert_array_equal(labels[0], labels[1])  # Seeded ...
    assert not np.array_equal(labels[0], labels[2])  # ... by the seed.


def test_an_empty_class_folder_and_a_single_class_are_refused(tmp_path):
    _write_folder(tmp_path / "two", classes=("cat", "dog"))
    (tmp_path / "two" / "bird").mkdir()
    with pytest.raises(ValueError, match=r"class folders \['bird'\].*hold no images"):
        tfee.data.load(str(tmp_path / "two"))
    _write_folder(tmp_path / "one", classes=("cat",))
    with pytest.raises(ValueError, match="at least 2 class folders"):
        tfee.data.load(str(tmp_path / "one"))


def test_float_datasets_out_of_zero_one_warn_and_nan_is_refused():
    # Issue 31, item 9: 0..255 floats or NaN passed unscaled and unchecked.
    images = np.random.default_rng(0).uniform(0, 255, (30, 4, 4, 3)).astype("float32")
    labels = np.arange(30) % 3
    raw = tf.data.Dataset.from_tensor_slices((images, labels))
    with pytest.warns(UserWarning, match=r"train split's float images lie in \[0"):
        tfee.data.load(raw, batch_size=8)
    images[5, 0, 0, 0] = np.nan
    broken = tf.data.Dataset.from_tensor_slices((images / 255.0, labels))
    with pytest.raises(ValueError, match="hold NaN or infinity"):
        tfee.data.load(broken, batch_size=8)


def test_a_tfds_name_not_prepared_offline_says_how_to_prepare_it(tmp_path):
    # Issue 31: tfds' own message suggested download=True, which needs the internet.
    with pytest.raises(ValueError, match=r"'cifar10' is not prepared under"):
        tfee.data.load("cifar10", data_dir=str(tmp_path))


def test_a_single_image_file_as_source_is_named(tmp_path):
    # Issue 31: a single .jpg was taken for a TFDS name.
    path = tmp_path / "one.jpg"
    tf.io.write_file(str(path), tf.io.encode_jpeg(np.zeros((4, 4, 3), np.uint8)))
    with pytest.raises(
        ValueError, match=r"`source` is a file; an image source is a folder"
    ):
        tfee.data.load(str(path))


def test_a_dataset_of_image_and_label_features_is_read_as_pairs():
    # Issue 31: TFDS' feature dicts ({"image": ..., "label": ...}) were refused.
    images = np.random.default_rng(0).uniform(0, 1, (30, 4, 4, 3)).astype("float32")
    features = {"image": images, "label": np.arange(30) % 3}
    data = tfee.data.load(tf.data.Dataset.from_tensor_slices(features), batch_size=8)
    assert data.num_classes == 3 and data.input_shape == (4, 4, 3)


def test_images_of_varying_size_ask_for_an_image_size_by_name():
    # The shape check read each dimension with int() first, so a None
    # dimension raised a bare TypeError instead of naming `image_size`.
    images = tf.data.Dataset.from_generator(
        lambda: (
            (np.zeros((8 + i % 2, 8, 3), "float32"), np.int64(i % 2)) for i in range(64)
        ),
        output_signature=(
            tf.TensorSpec((None, 8, 3), tf.float32),
            tf.TensorSpec((), tf.int64),
        ),
    )
    with pytest.raises(ValueError, match="pass `image_size`"):
        tfee.data.load(images, batch_size=4)
    resized = tfee.data.load(images, batch_size=4, image_size=(8, 8))
    assert resized.input_shape == (8, 8, 3)
