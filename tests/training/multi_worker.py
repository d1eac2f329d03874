"""One worker of tests/training/test_multi_worker.py (run as a script).

Usage: multi_worker.py INDEX PORT0,PORT1 OUT.npz

Builds a tiny network under MultiWorkerMirroredStrategy's scope, then trains
it in every tfee training mode, some calls outside the scope (as users do),
on data that differs between workers: only synchronised gradients can leave
both workers with the same weights.
"""

import contextlib
import json
import os
import sys

index, ports, out = int(sys.argv[1]), sys.argv[2].split(","), sys.argv[3]
os.environ["TF_CONFIG"] = json.dumps(
    {
        "cluster": {"worker": [f"localhost:{port}" for port in ports]},
        "task": {"type": "worker", "index": index},
    }
)

import numpy as np  # noqa: E402

import tfee  # noqa: E402
from tfee import keras  # noqa: E402
from tfee import tf  # noqa: E402

strategy = tf.distribute.MultiWorkerMirroredStrategy()
rng = np.random.default_rng(index)  # each worker its own samples
images = rng.random((32, 8, 8, 1), dtype=np.float32)
labels = (images.mean(axis=(1, 2, 3)) > 0.5).astype("int32")
options = tf.data.Options()
options.experimental_distribute.auto_shard_policy = (
    tf.data.experimental.AutoShardPolicy.OFF
)
data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
data = data.with_options(options)

weights = {}
# Inside the scope is Keras's own path; outside is where the wrappers broke.
for mode, in_scope in (("joint", False), ("eenet", False), ("distill", False)):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        backbone = tfee.backbones.small_cnn(3, input_shape=(8, 8, 1), widths=(4, 8))
        network = tfee.attach_exits(
            backbone, ["block1_out"], head="linear", with_confidence=mode == "eenet"
        )
    before = np.concatenate([w.ravel() for w in network.get_weights()])

    scope = strategy.scope() if in_scope else contextlib.nullcontext()
    with scope:
        tfee.recipes.fit(
            network, data, mode=mode, optimizer=keras.optimizers.Adam(1e-2), verbose=0
        )
    after = np.concatenate([w.ravel() for w in network.get_weights()])
    assert not np.allclose(before, after), f"{mode}: nothing trained"
    weights[f"{mode}_{'inside' if in_scope else 'outside'}"] = after
np.savez(out, **weights)
