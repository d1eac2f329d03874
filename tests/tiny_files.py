"""Tiny networks and converted files shared by the export and runtime tests.

Registered once for the whole suite (tests/conftest.py: pytest_plugins).
Each network is trained, and each file converted, once on disk
(`tests/disk_cache.py`, keyed by tfee's code and this file's): every
pytest-xdist worker and every later run of unchanged code loads it.
"""

import inspect
import os
import pickle

import numpy as np
import pytest

import tfee
import tfee.export
from tests import disk_cache
from tfee import keras
from tfee import naming

INPUT_SHAPE = (8, 8, 1)

# This run's artifacts: a folder per code version.
_KEY = disk_cache.code_key(__file__, disk_cache.__file__)
ARTIFACTS = disk_cache.root() / "test-artifacts" / _KEY
disk_cache.remove_stale(ARTIFACTS.parent, keep=_KEY)
ARTIFACTS.mkdir(parents=True, exist_ok=True)
os.utime(ARTIFACTS)  # In use: not stale for another checkout's run.


def shared(name, make, depends=()):
    """The value `make(folder)` returned, made once on disk: `make` writes
    its files into `folder` and returns a picklable value (paths into
    `folder` stay valid). Besides tfee's code and this file's, the artifact
    is keyed by the file that defines `make` and the files in `depends`."""

    def build(folder):
        value = make(folder)
        with open(folder / "value.pickle", "wb") as f:
            pickle.dump(value, f)

    builders = disk_cache.files_key(inspect.getsourcefile(make), *depends)
    folder = disk_cache.build_once(ARTIFACTS / f"{name}-{builders}", build)
    with open(folder / "value.pickle", "rb") as f:
        return pickle.load(f)


def shared_network(name, train):
    """The network `train()` returns, trained once and loaded from disk."""

    def make(folder):
        path = folder / "network.keras"
        train().save(path)
        return path

    return keras.models.load_model(shared(name, make))


def litert_files(network, directory, representative):
    """{"float32": path, "int8": path}: `network` converted for LiteRT in
    `directory` (a pathlib.Path), int8 calibrated on `representative`."""
    return {
        "float32": tfee.export.tflite(network, str(directory / "f32.tflite")).path,
        "int8": tfee.export.tflite(
            network,
            str(directory / "int8.tflite"),
            quantize="int8",
            representative=representative,
        ).path,
    }


def tiny_network(seed=0, with_confidence=True, num_classes=3):
    """small_cnn (8x8x1, widths 4 and 8, 3 classes unless told) with an SDN
    exit after block 1; `num_classes=10` answers the embedded digits."""
    keras.utils.set_random_seed(seed)
    backbone = tfee.backbones.small_cnn(
        num_classes=num_classes, input_shape=INPUT_SHAPE, widths=(4, 8)
    )
    return tfee.attach_exits(
        backbone, ["block1_out"], head="sdn", with_confidence=with_confidence
    )


def tiny_data(count=48, seed=0):
    """Images whose class is their brightness tercile: easy to learn quickly."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, count)
    images = rng.random((count,) + INPUT_SHAPE, dtype=np.float32) * 0.5
    images += labels[:, None, None, None].astype(np.float32) * 0.5
    return images, labels.astype(np.int32)


@pytest.fixture(scope="session")
def tiny_images():
    return tiny_data()[0]


def _train_cascading_network():
    keras.utils.set_random_seed(0)
    backbone = tfee.backbones.small_cnn(
        num_classes=3, input_shape=INPUT_SHAPE, widths=(8, 16, 16, 16)
    )
    network = tfee.attach_exits(
        backbone, ["block1_out", "block2_out", "block3_out"], cascading=True
    )
    images, labels = tiny_data()
    network.compile(
        optimizer=keras.optimizers.Adam(0.02),
        loss={
            name: keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            for name in network.output_names
        },
    )
    network.fit(
        images, {name: labels for name in network.output_names}, epochs=8, verbose=0
    )
    return network


@pytest.fixture(scope="session")
def cascading_network():
    """ZTW cascading heads: small_cnn (widths 8, 16, 16, 16) with heads after
    blocks 1-3, heads 2 and 3 reading the previous exit's logits, trained a
    little on `tiny_data` so that the exits disagree and confidences spread."""
    return shared_network("cascading_network", _train_cascading_network)


def _train_network():
    net = tiny_network()
    net.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss={
            name: keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            for name in ("exit_1", "exit_2")
        },
    )
    images, labels = tiny_data()
    net.fit(images, {"exit_1": labels, "exit_2": labels}, epochs=30, verbose=0)
    return net


@pytest.fixture(scope="session")
def network():
    """Trained for a few steps, so that its logits separate the classes
    (an untrained net's near-ties make int8 top-1 agreement a coin toss)."""
    return shared_network("network", _train_network)


@pytest.fixture(scope="session")
def float_file(network):
    return shared(
        "float_file",
        lambda folder: tfee.export.tflite(network, str(folder / "net.tflite")),
    )


@pytest.fixture(scope="session")
def int8_file(network, tiny_images):
    return shared(
        "int8_file",
        lambda folder: tfee.export.tflite(
            network,
            str(folder / "net.tflite"),
            quantize="int8",
            representative=tiny_images,
        ),
    )


@pytest.fixture(scope="session")
def exits_only_file(network):
    return shared(
        "exits_only_file",
        lambda folder: tfee.export.tflite(
            network, str(folder / "net.tflite"), signatures=["exit_1", "exit_2"]
        ),
    )


@pytest.fixture(scope="session")
def micro_export(network, tiny_images):
    return _shared_micro(
        "micro_export",
        network,
        tiny_images,
        name="tiny",
        policy=tfee.ThresholdPolicy([0.5]),
    )


@pytest.fixture(scope="session")
def cascading_micro_export(cascading_network, tiny_images):
    """`cascading_network` exported for TFLite Micro without a policy; its
    stage conversions are kept for `reuse_conversions`."""
    return _shared_micro(
        "cascading_micro_export", cascading_network, tiny_images, name="tiny_cascading"
    )


def _shared_micro(artifact, network, images, **kwargs):
    def make(folder):
        export = exporting_micro(network, str(folder), images, **kwargs)
        return export, _CONVERTED[export.directory]

    export, converted = shared(artifact, make)
    _CONVERTED[export.directory] = converted
    return export


# Export folder -> {k: stage k's model as the converter wrote it}.
_CONVERTED = {}


def exporting_micro(*args, **kwargs):
    """`tfee.export.micro`, remembering the converter's stage models so that
    `reuse_conversions` can hand them to later exports."""
    from tfee.export._micro import convert as convert_lib

    convert, converted = convert_lib.convert_all, {}

    def recording(structure, calibration, per_channel):
        models = convert(structure, calibration, per_channel)
        converted.update(
            {naming.parse_signature(name)[1]: data for name, data in models.items()}
        )
        converted["per_channel"] = per_channel
        return models

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(convert_lib, "convert_all", recording)
        export = tfee.export.micro(*args, **kwargs)
    _CONVERTED[export.directory] = converted
    return export


def reuse_conversions(export, patch):
    """Makes `tfee.export.micro` reuse the converted stage models of `export`
    (made by `exporting_micro`; conversion is the slow part) through the
    monkeypatch `patch`.

    Returns:
      {k: the stage model's bytes as converted (names not yet stripped)}.
    """
    from tfee.export._micro import convert as convert_lib

    converted = _CONVERTED[export.directory]

    def reuse(structure, calibration, per_channel):
        assert per_channel == converted["per_channel"], "converted otherwise"
        return {
            naming.stage_name(k): data
            for k, data in converted.items()
            if isinstance(k, int)
        }

    patch.setattr(convert_lib, "convert_all", reuse)
    return converted
