"""Tiny networks and converted files shared by the export tests (one conversion each)."""

import numpy as np
import pytest

import tfee
import tfee.export
from tfee import keras

INPUT_SHAPE = (8, 8, 1)


class MaxSoftmaxStandIn:
    """A minimal streaming policy (the tfee.policy contract) for runner tests.

    Leaves at exit k when max softmax >= thresholds[k]; records every call.
    Accepts either the whole batch or only the samples still in the cascade.
    """

    def __init__(self, thresholds):
        self.thresholds = list(thresholds)
        self.rule = "max_softmax"
        self.num_exits = len(self.thresholds) + 1
        self.calls = []

    def initial_state(self, batch_size):
        return np.ones(batch_size, bool)

    def update(self, state, exit_index, logits, confidence=None):
        self.calls.append((exit_index, len(logits), confidence))
        if exit_index == self.num_exits - 1:
            leave = np.ones(len(logits), bool)
        else:
            shifted = np.exp(logits - logits.max(-1, keepdims=True))
            score = (shifted / shifted.sum(-1, keepdims=True)).max(-1)
            leave = score >= self.thresholds[exit_index]
        alive = np.flatnonzero(state)
        new_state = state.copy()
        new_state[alive[leave]] = False
        return leave, new_state


def tiny_network(seed=0, with_confidence=True):
    """small_cnn (8x8x1, widths 4 and 8, 3 classes) with an SDN exit after block 1."""
    keras.utils.set_random_seed(seed)
    backbone = tfee.backbones.small_cnn(
        num_classes=3, input_shape=INPUT_SHAPE, widths=(4, 8)
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
def images():
    return tiny_data()[0]


@pytest.fixture(scope="session")
def network(images):
    """Trained for a few steps, so that its logits separate the classes
    (an untrained net's near-ties make int8 top-1 agreement a coin toss)."""
    net = tiny_network()
    net.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss={
            name: keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            for name in ("exit_1", "exit_2")
        },
    )
    labels = tiny_data()[1]
    net.fit(images, {"exit_1": labels, "exit_2": labels}, epochs=30, verbose=0)
    return net


@pytest.fixture(scope="session")
def float_file(network, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("float") / "net.tflite")
    return tfee.export.tflite(network, path)


@pytest.fixture(scope="session")
def int8_file(network, images, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("int8") / "net.tflite")
    return tfee.export.tflite(network, path, quantize="int8", representative=images)


@pytest.fixture(scope="session")
def exits_only_file(network, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("exits") / "net.tflite")
    return tfee.export.tflite(network, path, signatures=["exit_1", "exit_2"])


@pytest.fixture(scope="session")
def micro_export(network, images, tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("micro"))
    return tfee.export.micro(
        network, directory, images, name="tiny", policy=MaxSoftmaxStandIn([0.5])
    )
