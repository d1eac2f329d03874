"""tf.distribute: training under MirroredStrategy over two logical CPUs.

Logical devices must be configured before TensorFlow initialises, so the
runs happen in a fresh interpreter.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

# Run by `python3 dev.py test-long` and CI, not by the README's test command.
pytestmark = pytest.mark.long

_SCRIPT = textwrap.dedent("""
    import json
    import numpy as np
    import tfee
    from tfee import keras, tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )

    def build():
        # No BatchNormalization: its statistics are per replica, which would
        # make the two runs differ for a reason unrelated to tfee.
        inputs = keras.Input((8, 8, 1))
        x = keras.layers.Conv2D(4, 3, padding="same", activation="relu",
                                name="block1_out")(inputs)
        x = keras.layers.Conv2D(8, 3, strides=2, padding="same",
                                activation="relu")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        backbone = keras.Model(inputs, keras.layers.Dense(3)(x))
        return tfee.attach_exits(backbone, ["block1_out"], head="linear",
                                 with_confidence=True)

    rng = np.random.default_rng(0)
    images = rng.random((64, 8, 8, 1), dtype=np.float32)
    labels = rng.integers(0, 3, 64).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)
    keras.utils.set_random_seed(0)
    initial = build().get_weights()

    def run(strategy, mode):
        with strategy.scope():
            net = build()
            net.set_weights(initial)
            if mode == "joint":
                model = net
                model.compile(keras.optimizers.SGD(0.1),
                              loss=tfee.losses.joint(net, [0.5, 1.0]))
            elif mode == "eenet":
                model = tfee.EENet(net, lam=0.5)
                model.compile(keras.optimizers.SGD(0.1))
            else:
                model = tfee.Distiller(net)
                model.compile(keras.optimizers.SGD(0.1))
        history = model.fit(dataset, epochs=2, verbose=0)
        return history.history["loss"]

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    result = {"replicas": mirrored.num_replicas_in_sync}
    for mode in ("joint", "eenet", "distill"):
        result[mode] = {
            "single": run(tf.distribute.get_strategy(), mode),
            "mirrored": run(mirrored, mode),
        }
    print("RESULT " + json.dumps(result))
    """)


@pytest.mark.slow
def test_mirrored_strategy_over_two_cpus_matches_a_single_device():
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    completed = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = [x for x in completed.stdout.splitlines() if x.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT ") :])
    assert result["replicas"] == 2
    for mode in ("joint", "eenet", "distill"):
        single, mirrored = result[mode]["single"], result[mode]["mirrored"]
        assert mirrored == pytest.approx(single, rel=1e-4), mode
        # The second epoch differs from the first: training really happened.
        assert single[1] != pytest.approx(single[0], rel=1e-6)
