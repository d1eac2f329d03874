"""Shared fixtures: quiet TensorFlow, fixed seeds, tiny models."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tfee  # noqa: E402
from tfee import keras  # noqa: E402

# Tiny networks and their converted files, shared by several test folders.
pytest_plugins = ["tests.tiny_files"]


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session()


@pytest.fixture
def tiny_cnn():
    """An 8x8x1 CNN with blocks block1_out (8x8x4) and block2_out (4x4x8)."""
    return tfee.backbones.small_cnn(num_classes=3, input_shape=(8, 8, 1), widths=(4, 8))


@pytest.fixture
def tiny_resnet():
    """A ResNet-8 on 16x16x3 with width 4: residual graph, one block per stage."""
    return tfee.backbones.resnet_cifar(
        depth=8, num_classes=3, input_shape=(16, 16, 3), width=4
    )


@pytest.fixture
def images():
    return np.random.default_rng(0).random((6, 8, 8, 1), dtype="float32")


# The longest single tests (a minute or two each on 2 cores), started first so
# that `pytest -n 2` does not end with one worker running them alone.
_LONG_FIRST = (
    "tests/test_readme.py::test_the_readme_python_examples_run_as_written",
    "tests/training/test_multi_worker.py::",
    "tests/training/test_distribute.py::",
    "tests/examples/test_shell_chain.py::",
    "tests/examples/test_cluster_sections.py::",
    "tests/benchmarks/test_beyond_sdn.py::",
    "tests/benchmarks/test_escepe.py::",
    "tests/benchmarks/test_int8_agreement.py::",
    "tests/benchmarks/test_micro_footprint.py::",
)


def pytest_collection_modifyitems(config, items):
    def rank(item):
        for position, prefix in enumerate(_LONG_FIRST):
            if item.nodeid.startswith(prefix):
                return position
        return len(_LONG_FIRST)

    items.sort(key=rank)  # Stable: every other test keeps its order.
