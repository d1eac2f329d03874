"""The reference setup every tfee figure is measured on (shared/BENCHMARK.md).

CIFAR-10 from the shared archive, split 45,000 / 5,000 / 10,000 (validation:
500 per class, seed 0), per-channel normalisation, crop+flip augmentation;
a CIFAR ResNet-20 with SDN heads at about 15..90% of its MACs (7 exits),
trained jointly with SDN's weight ramp, SGD momentum 0.9, weight decay 5e-4,
batch 128, lr 0.1 cosine, 30 epochs, seed 0.

Other benchmarks import `reference_network` and `reference_data`: the trained
network is cached (default /tmp/tfee-reference) with the normalisation it was
trained with, and retrained by this script only when missing. Run it alone to (re)build the cache and write
benchmarks/results/reference_network.json:

    .venv/bin/python -m benchmarks.reference --archive ../shared/datasets/cifar10-images.tar.gz
"""

import json
import os
import platform
import sys
import tarfile
import time

import numpy as np
from absl import app
from absl import flags

import tfee
from tfee import keras
from tfee import tf

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCHIVE = os.path.join(
    HERE, "..", "..", "shared", "datasets", "cifar10-images.tar.gz"
)
RESULTS = os.path.join(HERE, "results")

FLAGS = flags.FLAGS

flags.DEFINE_string(
    "archive", DEFAULT_ARCHIVE, "CIFAR-10 images archive (shared/datasets)."
)
flags.DEFINE_string(
    "cache_dir", "/tmp/tfee-reference", "Where data and the network are cached."
)
flags.DEFINE_bool(
    "quick", False, "Quick mode: 5k/1k/2k images, 3 epochs (smoke checks only)."
)
flags.DEFINE_integer("reference_epochs", 30, "Training epochs (the reference is 30).")

SDN_FRACTIONS = (0.15, 0.3, 0.45, 0.6, 0.75, 0.9)
BATCH = 128


def machine_record(argv=None):
    """Command, versions and machine, for every result JSON."""
    import tensorflow_model_optimization as tfmot

    return {
        "command": " ".join(argv or sys.argv),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "tf_keras": keras.__version__,
        "tfmot": tfmot.__version__,
        "tfee": tfee.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.node()}",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def reference_data(archive, cache_dir, quick=False):
    """(train, validation, test) as (uint8 images, int32 labels), plus mean/std."""
    os.makedirs(cache_dir, exist_ok=True)
    root = os.path.join(cache_dir, "cifar10")
    if not os.path.isdir(os.path.join(root, "test")):
        with tarfile.open(archive) as tar:
            tar.extractall(root + ".partial")
        os.replace(root + ".partial", root)
    train_x, train_y, _ = tfee.data.load_image_folder(
        os.path.join(root, "train"), cache=os.path.join(cache_dir, "train.npz")
    )
    test_x, test_y, _ = tfee.data.load_image_folder(
        os.path.join(root, "test"), cache=os.path.join(cache_dir, "test.npz")
    )
    rng = np.random.default_rng(0)
    validation = np.zeros(len(train_y), bool)
    for label in range(10):
        members = np.flatnonzero(train_y == label)
        validation[rng.choice(members, 500, replace=False)] = True
    splits = {
        "train": (train_x[~validation], train_y[~validation]),
        "validation": (train_x[validation], train_y[validation]),
        "test": (test_x, test_y),
    }
    # The folders are sorted by class; a seeded shuffle makes any prefix of a
    # split (a representative set, a timing sample) cover every class.
    sizes = {"train": 5000, "validation": 1000, "test": 2000} if quick else {}
    picked = {
        k: rng.permutation(len(y))[: sizes.get(k, len(y))]
        for k, (_, y) in splits.items()
    }
    splits = {k: (x[picked[k]], y[picked[k]]) for k, (x, y) in splits.items()}
    recorded = _normalisation_path(cache_dir, quick)
    if os.path.exists(recorded):
        # A cached network must see the inputs it was trained on.
        with open(recorded) as f:
            stored = json.load(f)
        return splits, np.float32(stored["mean"]), np.float32(stored["std"])
    # float64: a float32 sum over 46M pixels loses the low digits.
    pixels = splits["train"][0].reshape(-1, 3).astype("float64") / 255.0
    return (
        splits,
        pixels.mean(axis=0).astype("float32"),
        pixels.std(axis=0).astype("float32"),
    )


def _normalisation_path(cache_dir, quick):
    return os.path.join(
        cache_dir, f"reference_{'quick' if quick else 'full'}.normalisation.json"
    )


def wait_for_network(cache_dir, quick, minutes=0):
    """The cached reference network's path; waits up to `minutes`, never trains.

    Raises:
      SystemExit: the network is still missing after the wait.
    """
    path = os.path.join(cache_dir, f"reference_{'quick' if quick else 'full'}.keras")
    deadline = time.time() + 60 * minutes
    while not os.path.exists(path):
        if time.time() >= deadline:
            raise SystemExit(
                f"the trained reference network {path} does not exist yet: train it "
                "with `python -m benchmarks.reference` (about an hour on 2 cores) or "
                "pass a wait while it trains; this benchmark never trains it."
            )
        print(f"waiting for {path} ...", flush=True)
        time.sleep(30)
    return path


def pipeline(images, labels, mean, std, training, batch=BATCH, seed=0):
    """A normalised tf.data pipeline; training adds shuffle and crop+flip."""
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if training:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)

    def normalise(image, label):
        image = (tf.cast(image, tf.float32) / 255.0 - mean) / std
        return image, label

    ds = ds.map(normalise, num_parallel_calls=tf.data.AUTOTUNE)
    if training:
        ds = ds.map(tfee.data.augment_crop_flip, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch).prefetch(tf.data.AUTOTUNE)


# BENCHMARK.md's "SGD with momentum 0.9, weight decay 5e-4" is SDN's PyTorch
# recipe, where weight decay is added to the gradient before momentum: an L2
# loss of 5e-4 / 2 on the kernels. Keras' SGD(weight_decay=...) decays the
# weights after the momentum update instead, about ten times weaker here.
L2 = 2.5e-4


def build_network():
    backbone = tfee.backbones.resnet_cifar(depth=20, num_classes=10, weight_decay=L2)
    return tfee.attach_exits(
        backbone, tfee.FlopsFractions(list(SDN_FRACTIONS)), head="sdn"
    )


def compile_for_training(network, steps, epochs, learning_rate=0.1):
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps * epochs)
    network.compile(
        optimizer=keras.optimizers.SGD(schedule, momentum=0.9),
        loss=tfee.losses.joint(network, weights="sdn"),
        metrics={name: ["accuracy"] for name in network.output_names},
    )


def exit_accuracies(network, dataset):
    labels = np.concatenate([y for _, y in dataset])
    outputs = network.predict(dataset, verbose=0)
    return [
        float(np.mean(np.argmax(o, -1) == labels))
        for o in outputs[: len(tfee.exits(network))]
    ]


def reference_network(
    archive=DEFAULT_ARCHIVE, cache_dir="/tmp/tfee-reference", quick=False, epochs=30
):
    """The trained reference network, loaded from the cache or trained now."""
    tag = "quick" if quick else "full"
    path = os.path.join(cache_dir, f"reference_{tag}.keras")
    if os.path.exists(path):
        return keras.models.load_model(path)
    splits, mean, std = reference_data(archive, cache_dir, quick)
    keras.utils.set_random_seed(0)
    network = build_network()
    train = pipeline(*splits["train"], mean, std, training=True)
    validation = pipeline(*splits["validation"], mean, std, training=False)
    epochs = 3 if quick else epochs
    compile_for_training(network, steps=len(train), epochs=epochs)
    started = time.time()
    network.fit(
        train,
        validation_data=validation,
        epochs=epochs,
        callbacks=[
            tfee.callbacks.SDNRamp(),
            keras.callbacks.BackupAndRestore(os.path.join(cache_dir, f"backup_{tag}")),
        ],
        verbose=2,
    )
    seconds = time.time() - started
    with open(_normalisation_path(cache_dir, quick), "w") as f:
        json.dump({"mean": mean.tolist(), "std": std.tolist()}, f)
    network.save(path + ".partial.keras")
    os.replace(path + ".partial.keras", path)
    test = pipeline(*splits["test"], mean, std, training=False)
    result = {
        "setup": "reference" if not quick else "quick (smoke check only, not a result)",
        "epochs": epochs,
        "weight_decay": f"L2 {L2:g} on convolution kernels (SGD weight decay "
        f"{2 * L2:g} as PyTorch applies it)",
        "train_seconds": round(seconds, 1),
        "test_exit_accuracy": exit_accuracies(network, test),
        "exits": [
            {
                "name": e.name,
                "attach_layer": e.attach_layer,
                "cumulative_macs": e.cumulative_macs,
            }
            for e in tfee.exits(network)
        ],
        "full_macs": tfee.cost.analyze(network).full_macs,
        "normalisation": {"mean": mean.tolist(), "std": std.tolist()},
        "record": machine_record(),
    }
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"reference_network_{tag}.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    return network


def main(argv):
    del argv
    reference_network(
        FLAGS.archive, FLAGS.cache_dir, FLAGS.quick, FLAGS.reference_epochs
    )


if __name__ == "__main__":
    app.run(main)
