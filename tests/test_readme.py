"""The README's Python examples run as written, on tiny generated data.

Each ```python block runs in order in one namespace, as a user pasting them
into one session would, in a temporary folder. The names the README leaves to
the reader (train_ds, val_ds, test_images, ...) are tiny CIFAR-shaped data,
and only the training lengths and the ResNet's depth are shortened (`_SHORTER`). Four blocks run
elsewhere: the plain client (tests/runtime/test_plain_client.py, against
Cascade), the reference recipe (it trains for 30 epochs; its pieces are
tested in tests/test_recipes.py) and the own-model blocks (tests/test_own_models.py
and tests/test_keras3.py, beside the README test so that they run in parallel).
"""

import os
import re

import numpy as np

from tests.compress import _tiny
from tfee import tf

README = os.path.join(os.path.dirname(__file__), "..", "README.md")

# The README's training lengths -> one epoch or round, and its ResNet-20 ->
# ResNet-14 (the same code path; the smallest CIFAR ResNet with room for its
# six FlopsFractions exits), so that the suite stays quick.
_SHORTER = {
    "epochs=30": "epochs=1",
    "Rounds(20, len(train_ds)), epochs=20": "Rounds(1, len(train_ds)), epochs=1",
    "resnet_cifar(depth=20,": "resnet_cifar(depth=14,",
}
# Blocks tested elsewhere, recognised by a line they hold.
_ELSEWHERE = (
    "class PlainCascade:",
    "tfee.recipes.reference_network(",
    "keras.applications.MobileNetV2(",  # tests/test_own_models.py runs it
    "keras3.applications.MobileNetV2(",  # tests/test_keras3.py runs it
)


def _blocks():
    with open(README) as f:
        text = f.read()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    kept = [b for b in blocks if not any(mark in b for mark in _ELSEWHERE)]
    assert len(blocks) - len(kept) == len(_ELSEWHERE), "a skipped block moved"
    return kept


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


def test_the_readme_python_examples_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = _namespace()
    # Training steps run eagerly: the same arithmetic, without tracing each
    # fit's graph (most of the time on a few tiny batches).
    blocks = _blocks()
    for long in _SHORTER:
        assert any(long in block for block in blocks), f"{long!r} left the README"
    with _tiny.eagerly():
        for number, block in enumerate(blocks, start=1):
            for long, short in _SHORTER.items():
                block = block.replace(long, short)
            code = compile(block, f"README.md python block {number}", "exec")
            exec(code, namespace)  # noqa: S102  (the README's own code)
    assert os.path.exists("policy.json") and os.path.exists("net.tflite")
    assert namespace["result"].predictions.shape == (
        24,
    )  # cascade.predict(test_images)
