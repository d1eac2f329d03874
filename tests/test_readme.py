"""The Python examples of the README and of docs/ run as written, on tiny data.

A page's ```python blocks run in order in one namespace, as a user pasting them
into one session would, in a temporary folder. A page that goes on from another
(the guide's policies go on from its training page's `net`) runs after it in the
same namespace (`_SESSIONS`); every other page runs alone. The names a page leaves
to the reader (train_ds, val_ds, test_images, ...) are tiny CIFAR-shaped data, and
only the training lengths, trial counts and the ResNet's depth are shortened
(`_SHORTER`). Blocks that cannot run here are recognised by a line they hold and
run elsewhere (`_ELSEWHERE`): the plain client (tests/runtime/test_plain_client.py,
against Cascade), the reference recipe (it trains for 30 epochs; its pieces are
tested in tests/test_recipes.py) and the own-model blocks (tests/test_own_models.py
and tests/test_keras3.py, beside this test so that they run in parallel).
"""

import pathlib
import re

import numpy as np
import pytest

from tests.compress import _tiny
from tfee import tf

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = str(ROOT / "README.md")

# The pages' training lengths -> one epoch or round, their trial counts -> two,
# and the ResNet-20 -> ResNet-14 (the same code path; the smallest CIFAR ResNet
# with room for six FlopsFractions exits), so that the suite stays quick.
_SHORTER = {
    "epochs=30": "epochs=1",
    "epochs=40": "epochs=1",
    "Rounds(20, len(train_ds)), epochs=20": "Rounds(1, len(train_ds)), epochs=1",
    "resnet_cifar(depth=20,": "resnet_cifar(depth=14,",
    "max_trials=20": "max_trials=2",
    "max_trials=4": "max_trials=2",
}
# Blocks run elsewhere, recognised by a line they hold: the line -> its page.
_ELSEWHERE = {
    "class PlainCascade:": "docs/client.md",  # tests/runtime/test_plain_client.py
    "tfee.recipes.reference_network(": "docs/benchmarks.md",  # 30 epochs
    "keras.applications.MobileNetV2(": "docs/guide/own-model.md",  # test_own_models
    "keras3.applications.MobileNetV2(": "docs/guide/own-model.md",  # test_keras3
}
# Pages that go on from others, run in order in one namespace. Each session
# starts from the training page, so compression runs beside the export chain.
_SESSIONS = {
    "guide: training, policies, export": (
        "docs/guide/training.md",
        "docs/guide/policies.md",
        "docs/guide/export.md",
    ),
    "guide: training, compression": (
        "docs/guide/training.md",
        "docs/guide/compression.md",
    ),
}


def pages():
    """README.md, CONTRIBUTING.md and docs/**/*.md, relative to the project."""
    found = [ROOT / "README.md", ROOT / "CONTRIBUTING.md"]
    found += sorted((ROOT / "docs").rglob("*.md"))
    return [str(p.relative_to(ROOT)) for p in found if p.exists()]


def _all_blocks(page):
    with open(ROOT / page) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


def blocks(page):
    """The page's Python blocks that run here, in order."""
    return [b for b in _all_blocks(page) if not any(mark in b for mark in _ELSEWHERE)]


def block_holding(line):
    """The one Python block of the README or docs/ that holds `line`."""
    found = [b for page in pages() for b in _all_blocks(page) if line in b]
    assert len(found) == 1, f"{len(found)} blocks hold {line!r}"
    return found[0]


def _sessions():
    """Every page with a block to run, alone or in its `_SESSIONS` chain."""
    chained = {page for chain in _SESSIONS.values() for page in chain}
    sessions = dict(_SESSIONS)
    for page in pages():
        if page not in chained and blocks(page):
            sessions[page] = (page,)
    return sessions


def test_every_block_is_run_here_or_where_it_says():
    for line, page in _ELSEWHERE.items():
        holding = [p for p in pages() for b in _all_blocks(p) if line in b]
        assert holding == [page], f"the block holding {line!r} moved: {holding}"
    for chain in _SESSIONS.values():
        for page in chain:
            assert blocks(page), f"{page} has no Python block left to run"
    every = [b for page in pages() for b in blocks(page)]
    for long in _SHORTER:
        assert any(long in b for b in every), f"{long!r} left the docs"


def _data(count, seed):
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    # Each class brightens its own channel mix, so the exits can learn a bit.
    images = rng.normal(0, 0.5, (count, 32, 32, 3)).astype("float32")
    images += (labels[:, None, None, None] / 10.0 - 0.45).astype("float32")
    return images, labels.astype("int64")


def _namespace():
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = (
        _data(64, 0),
        _data(40, 1),
        _data(24, 2),
    )

    def batches(x, y):
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(16)

    return {
        "train_ds": batches(train_x, train_y),
        "val_ds": batches(val_x, val_y),
        "test_ds": batches(test_x, test_y),
        "val_images": val_x,
        "val_labels": val_y,
        "test_images": test_x,
        "test_labels": test_y,
        "images": test_x[:8],
        "mean": 0.0,
        "std": 1.0,
        "class_names": [f"class_{i}" for i in range(10)],
    }


def run_block(block, name, namespace):
    """Runs one documented block, shortened by `_SHORTER`, in `namespace`."""
    for long, short in _SHORTER.items():
        block = block.replace(long, short)
    exec(compile(block, name, "exec"), namespace)  # noqa: S102  (the docs' own code)


@pytest.mark.parametrize("session", sorted(_sessions()))
def test_the_python_examples_run_as_written(session, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = _namespace()
    # Training steps run eagerly: the same arithmetic, without tracing each
    # fit's graph (most of the time on a few tiny batches).
    with _tiny.eagerly():
        for page in _sessions()[session]:
            for number, block in enumerate(blocks(page), start=1):
                run_block(block, f"{page} python block {number}", namespace)
