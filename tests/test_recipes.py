"""tfee.recipes: training modes, and the reference setup as library calls."""

import json
import os
import tarfile

import numpy as np
import pytest

import tfee
from tfee import keras
from tfee import recipes
from tfee import tf


def _tiny_network():
    return recipes.build_reference_network(depth=8, width=4, fractions=(0.3, 0.6))


def _tiny_data(n=16):
    rng = np.random.default_rng(0)

    def split(size):
        return (
            rng.integers(0, 256, (size, 32, 32, 3), dtype=np.uint8),
            rng.integers(0, 10, size).astype("int32"),
        )

    train = split(n)
    return recipes.ReferenceData(
        train, split(8), split(8), *tfee.data.channel_moments(train[0])
    )


def _write_archive(path, per_class):
    """A CIFAR-like archive: train/<class>/*.png and test/<class>/*.png."""
    root = os.path.join(os.path.dirname(path), "images")
    rng = np.random.default_rng(1)
    for split, count in (("train", per_class), ("test", 2)):
        for name in ("cat", "dog"):
            folder = os.path.join(root, split, name)
            os.makedirs(folder)
            for i in range(count):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                tf.io.write_file(
                    os.path.join(folder, f"{i}.png"), tf.io.encode_png(pixels)
                )
    with tarfile.open(path, "w:gz") as tar:
        tar.add(os.path.join(root, "train"), arcname="train")
        tar.add(os.path.join(root, "test"), arcname="test")


def test_fit_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match=r"tfee.recipes.fit: `mode` must be one of"):
        recipes.fit(None, None, mode="greedy")


def test_fit_joint_trains_in_place_and_logs_every_exit(tiny_cnn):
    network = tfee.attach_exits(tiny_cnn, ["block1_out"], head="linear")
    images = np.random.default_rng(0).random((8, 8, 8, 1), dtype="float32")
    data = tf.data.Dataset.from_tensor_slices((images, np.arange(8) % 3)).batch(4)
    before = [w.copy() for w in network.get_weights()]
    history = recipes.fit(network, data, mode="joint", epochs=1, verbose=0)
    assert {"exit_1_accuracy", "exit_2_accuracy"} <= set(history.history)
    assert any(not np.array_equal(a, b) for a, b in zip(before, network.get_weights()))


def test_normalise_with_channel_moments_gives_zero_mean_unit_std():
    images = np.random.default_rng(0).integers(0, 256, (20, 4, 4, 3), dtype=np.uint8)
    mean, std = tfee.data.channel_moments(images)
    assert mean.shape == std.shape == (3,) and mean.dtype == np.float32
    normalised = recipes.normalise(images, mean, std)
    assert normalised.dtype == np.float32
    np.testing.assert_allclose(normalised.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(normalised.std(axis=(0, 1, 2)), 1.0, atol=1e-4)


def test_evaluation_pipeline_keeps_the_order_and_normalises():
    data = _tiny_data()
    batches = list(data.pipeline("test", batch=3))
    assert [len(y) for _, y in batches] == [3, 3, 2]
    images = np.concatenate([x for x, _ in batches])
    np.testing.assert_allclose(images, data.normalised("test"), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), data.test[1])


def test_training_pipeline_shuffles_and_augments_but_keeps_shapes():
    data = _tiny_data()
    images, labels = next(iter(data.pipeline("train", training=True, batch=16)))
    assert images.shape == (16, 32, 32, 3)
    assert sorted(labels.numpy()) == sorted(data.train[1])
    assert not np.allclose(images, data.normalised("train"))


def test_reference_data_rejects_an_unknown_split():
    with pytest.raises(
        ValueError, match=r"`split` must be one of .*Received: split='val'"
    ):
        _tiny_data().split("val")


def test_reference_data_splits_the_archive_and_holds_out_validation_per_class(
    tmp_path,
):
    archive = str(tmp_path / "tiny.tar.gz")
    _write_archive(archive, per_class=6)
    cache = str(tmp_path / "cache")
    data = recipes.reference_data(archive, cache, validation_per_class=2)
    assert len(data.train[1]) == 8 and len(data.validation[1]) == 4
    assert len(data.test[1]) == 4
    assert np.bincount(data.validation[1]).tolist() == [2, 2]
    train_rows = {x.tobytes() for x in data.train[0]}
    assert not train_rows & {x.tobytes() for x in data.validation[0]}
    np.testing.assert_allclose(data.mean, tfee.data.channel_moments(data.train[0])[0])
    # Decoded once: a second call reads the cache, even without the archive.
    os.remove(archive)
    again = recipes.reference_data(archive, cache, validation_per_class=2)
    np.testing.assert_array_equal(again.train[0], data.train[0])


def test_reference_data_names_a_missing_archive(tmp_path):
    with pytest.raises(ValueError, match=r"`archive` must be the CIFAR-10 images"):
        recipes.reference_data(str(tmp_path / "none.tar.gz"), str(tmp_path))


def test_reference_network_has_sdn_exits_and_coupled_weight_decay():
    network = _tiny_network()
    assert [e.name for e in tfee.exits(network)] == ["exit_1", "exit_2", "exit_3"]
    assert len(network.losses) > 0  # the L2 terms on the kernels


def test_compile_for_training_uses_sgd_momentum_with_cosine_decay():
    network = _tiny_network()
    recipes.compile_for_training(network, steps=10, epochs=3, learning_rate=0.2)
    optimizer = network.optimizer
    assert optimizer.momentum == pytest.approx(0.9)
    schedule = optimizer.get_config()["learning_rate"]
    assert schedule["class_name"] == "CosineDecay"
    assert schedule["config"]["initial_learning_rate"] == pytest.approx(0.2)
    assert schedule["config"]["decay_steps"] == 30


def test_train_reference_network_trains_with_backups(tmp_path):
    network = recipes.train_reference_network(
        _tiny_data(),
        epochs=1,
        depth=8,
        width=4,
        fractions=(0.3, 0.6),
        backup_dir=str(tmp_path / "backup"),
        verbose=0,
    )
    assert len(tfee.exits(network)) == 3
    assert network.optimizer.iterations.numpy() == 1


def test_reference_network_loads_the_cached_network(tmp_path):
    network = _tiny_network()
    network.save(recipes.reference_network_path(str(tmp_path)))
    loaded = recipes.reference_network("unused.tar.gz", str(tmp_path))
    for a, b in zip(network.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert isinstance(loaded, keras.Model)


def test_reference_network_raises_when_missing_and_not_allowed_to_train(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"`train_if_missing` is False"):
        recipes.reference_network(
            "x.tar.gz",
            str(tmp_path),
            train_if_missing=False,
            committed=str(tmp_path / "none.json"),
        )


_TINY_ARGUMENTS = {"depth": 8, "width": 4, "fractions": [0.3, 0.6]}


def _commit_tiny(tmp_path):
    network = _tiny_network()
    record = str(tmp_path / "committed" / "reference_full.json")
    recipes.save_committed_reference(
        network, _TINY_ARGUMENTS, [0.4, 0.5, 0.6], [0.2, 0.25, 0.3], 30,
        {"command": "test"}, record,
    )  # fmt: skip
    return network, record


def test_a_fresh_cache_starts_from_the_committed_reference(tmp_path):
    network, record = _commit_tiny(tmp_path)
    cache = str(tmp_path / "cache")
    loaded = recipes.reference_network(
        "unused.tar.gz", cache, train_if_missing=False, committed=record
    )
    for a, b in zip(network.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Cached with its normalisation, as a network trained there would be.
    assert os.path.exists(recipes.reference_network_path(cache))
    with open(os.path.join(cache, "reference_full.normalisation.json")) as f:
        assert json.load(f) == {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]}
    assert recipes.committed_reference(record)["training"] == {"command": "test"}


def test_a_committed_reference_of_other_epochs_or_a_damaged_one_is_not_used(
    tmp_path,
):
    _, record = _commit_tiny(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"`train_if_missing` is False"):
        recipes.reference_network(
            "x.tar.gz", str(tmp_path / "a"), epochs=10, train_if_missing=False,
            committed=record,
        )  # fmt: skip
    weights = tmp_path / "committed" / recipes.committed_reference(record)["weights"]
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="do not match their record"):
        recipes.reference_network("x.tar.gz", str(tmp_path / "b"), committed=record)
    assert not os.path.exists(recipes.reference_network_path(str(tmp_path / "b")))


def test_save_committed_reference_refuses_arguments_that_build_another_network(
    tmp_path,
):
    with pytest.raises(ValueError, match="`arguments` build a network"):
        recipes.save_committed_reference(
            _tiny_network(), {"depth": 14, "width": 4}, [0.0] * 3, [1.0] * 3, 30, {},
            str(tmp_path / "r.json"),
        )  # fmt: skip


def test_the_weights_digest_names_a_training_whatever_file_holds_it(tmp_path):
    network = _tiny_network()
    path = str(tmp_path / "net.keras")
    network.save(path)
    digest = recipes.weights_digest(network)
    assert recipes.weights_digest(keras.models.load_model(path)) == digest
    weights = network.get_weights()
    weights[0] = weights[0] + 1e-7
    network.set_weights(weights)
    assert recipes.weights_digest(network) != digest


def test_the_old_spelling_recipes_channel_moments_warns_once_with_its_home():
    from tfee import _checks

    _checks._WARNED.discard("tfee.recipes.channel_moments")
    with pytest.warns(DeprecationWarning, match="now tfee.data.channel_moments"):
        moments = recipes.channel_moments
    assert moments is tfee.data.channel_moments
    assert "channel_moments" not in recipes.__all__
