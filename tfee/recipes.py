"""Recipes: one call per training mode, and the reference setup as a library.

Each function only picks tfee's pieces and plain Keras underneath, so users
can call it as is or copy the few lines when they need something else:

- `fit`: train a network with one of tfee's losses (joint, EENet, distill).
- `train_digits_network`: the small digits network the examples start from.
- The reference setup of every tfee figure (shared/BENCHMARK.md): CIFAR-10
  split 45,000 / 5,000 / 10,000 (`reference_data`), per-channel
  normalisation (`tfee.data.channel_moments`, `normalise`), the tf.data pipeline with
  crop+flip augmentation (`reference_pipeline`), a CIFAR ResNet-20 with SDN
  heads at 15..90% of the full network's MACs (`build_reference_network`) trained jointly
  with SDN's ramp and SGD (`compile_for_training`, `train_reference_network`),
  and the trained network cached for every experiment (`reference_network`).

Example:
  >>> data = tfee.recipes.reference_data("cifar10-images.tar.gz", "/tmp/ref")
  >>> network = tfee.recipes.reference_network("cifar10-images.tar.gz", "/tmp/ref")
  >>> tfee.exit_accuracy(network, data.pipeline("test"))
"""

import hashlib
import json
import os
import tarfile
import typing

import numpy as np

from tfee import _checks
from tfee import backbones
from tfee import data as data_lib
from tfee import network as network_lib
from tfee import placement
from tfee._files import write_atomically
from tfee._files import write_bytes_atomically
from tfee._keras import keras
from tfee._keras import tf
from tfee.training import callbacks as callbacks_lib
from tfee.training import losses
from tfee.training.distillation import Distiller
from tfee.training.eenet import EENet

__all__ = [
    "BATCH",
    "L2",
    "MODES",
    "QUICK_SIZES",
    "ReferenceData",
    "SDN_FRACTIONS",
    "COMMITTED_REFERENCE",
    "build_reference_network",
    "committed_reference",
    "compile_for_training",
    "fit",
    "normalise",
    "reference_data",
    "reference_network",
    "reference_network_path",
    "reference_pipeline",
    "save_committed_reference",
    "train_digits_network",
    "train_small_network",
    "train_reference_network",
    "weights_digest",
]

MODES = ("joint", "eenet", "distill")

# SDN's exit placement: about 15/30/45/60/75/90% of the full network's MACs.
SDN_FRACTIONS = (0.15, 0.3, 0.45, 0.6, 0.75, 0.9)
BATCH = 128
# BENCHMARK.md's "SGD with momentum 0.9, weight decay 5e-4" is SDN's PyTorch
# recipe, where weight decay is added to the gradient before momentum: an L2
# loss of 5e-4 / 2 on the kernels. Keras' SGD(weight_decay=...) decays the
# weights after the momentum update instead, about ten times weaker here.
L2 = 2.5e-4
# BENCHMARK.md's quick mode: the same code path on fewer images, 3 epochs.
QUICK_SIZES = {"train": 5000, "validation": 1000, "test": 2000}
QUICK_EPOCHS = 3
VALIDATION_PER_CLASS = 500
SPLITS = ("train", "validation", "test")


def fit(
    network,
    train_data,
    validation_data=None,
    *,
    mode="joint",
    epochs=1,
    optimizer="adam",
    weights=None,
    lam=0.9,
    version="v1",
    costs="fraction_of_full",
    targets="labels",
    teacher=None,
    temperature=3.0,
    kd_weight=0.3,
    callbacks=(),
    verbose="auto",
):
    """Trains `network` in place with one of tfee's losses; returns the History.

    For a post-trained (PTEENet) network, attach the exits with
    `freeze_backbone=True` and use mode "joint" (or "eenet"): only the heads
    train.

    Args:
      network: a tfee early-exit network.
      train_data: a `tf.data.Dataset` of (images, labels) batches.
      validation_data: optional validation dataset (logs `val_*`).
      mode: "joint" (`tfee.losses.joint(network, weights)`, plus `SDNRamp`
        when weights="sdn"), "eenet" (`tfee.EENet`) or "distill"
        (`tfee.Distiller`).
      epochs: training epochs.
      optimizer: a Keras optimizer or its name.
      weights: per-exit loss weights of the joint and distill modes
        ("uniform", "sdn" or a list; "sdn" adds `SDNRamp`). None: "sdn" for
        joint, "uniform" for distill.
      lam, version, costs, targets: EENet mode's settings.
      teacher, temperature, kd_weight: distill mode's settings.
      callbacks: extra Keras callbacks.
      verbose: passed to `fit`.

    Returns:
      The `keras.callbacks.History`; its keys include `exit_k_accuracy`.

    Raises:
      ValueError: `mode` is not one of `MODES`.
    """
    if mode not in MODES:
        raise ValueError(
            f"tfee.recipes.fit: `mode` must be one of {MODES}. Received: mode={mode!r}"
        )
    callbacks = list(callbacks)
    if weights is None:
        weights = "sdn" if mode == "joint" else "uniform"
    if mode == "joint":
        model = network
        loss = losses.joint(network, weights)
        model.compile(
            optimizer=optimizer,
            loss=loss,
            metrics={name: ["accuracy"] for name in loss},
        )
    elif mode == "eenet":
        model = EENet(network, lam=lam, version=version, costs=costs, targets=targets)
        model.compile(optimizer=optimizer)
    else:
        model = Distiller(
            network,
            teacher=teacher,
            temperature=temperature,
            kd_weight=kd_weight,
            weights=weights,
        )
        model.compile(optimizer=optimizer)
    if mode != "eenet" and isinstance(weights, str) and weights == "sdn":
        callbacks.insert(0, callbacks_lib.SDNRamp())
    return model.fit(
        train_data,
        validation_data=validation_data,
        epochs=epochs,
        callbacks=callbacks,
        verbose=verbose,
    )


def train_small_network(data, epochs=10, head="sdn", seed=0, verbose=2):
    """A small CNN with exits after its first two blocks, trained on `data`.

    The network the examples start from when no model is given:
    `tfee.backbones.small_cnn` sized for the data, joint uniform loss, Adam
    3e-3, per-exit accuracy in the logs.

    Args:
      data: a `tfee.data.DataSplits` (`tfee.data.load(...)`).
      epochs: training epochs.
      head: exit head type for both exits.
      seed: weights seed.
      verbose: Keras `fit` verbosity.

    Returns:
      The trained early-exit network (3 exits).
    """
    keras.utils.set_random_seed(seed)
    backbone = backbones.small_cnn(
        num_classes=data.num_classes, input_shape=data.input_shape
    )
    network = network_lib.attach_exits(
        backbone, ["block1_out", "block2_out"], head=head
    )
    network.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=losses.joint(network),
        metrics={name: ["accuracy"] for name in network.output_names},
    )
    network.fit(
        data.train, validation_data=data.validation, epochs=epochs, verbose=verbose
    )
    return network


def train_digits_network(epochs=10, head="sdn", seed=0, verbose=2):
    """`train_small_network` on scikit-learn's embedded 8x8 digits (the
    splits of `tfee.data.load("digits", seed=seed)`)."""
    data = data_lib.load("digits", seed=seed)
    return train_small_network(data, epochs, head=head, seed=seed, verbose=verbose)


def normalise(images, mean, std):
    """uint8 images as the reference network sees them: (x / 255 - mean) / std.

    Args:
      images: uint8 array (n, height, width, channels).
      mean, std: per-channel moments from `tfee.data.channel_moments`.

    Returns:
      float32 array of the same shape.
    """
    return ((np.asarray(images, "float32") / 255.0 - mean) / std).astype("float32")


def reference_pipeline(images, labels, mean, std, training, batch=BATCH, seed=0):
    """A normalised tf.data pipeline; training adds shuffle and crop+flip.

    Args:
      images: uint8 array (n, height, width, channels).
      labels: integer labels (n,).
      mean, std: per-channel moments from `tfee.data.channel_moments`.
      training: shuffle every epoch (seeded) and augment with
        `tfee.data.augment_crop_flip` (4-pixel padding).
      batch: batch size.
      seed: shuffle seed.

    Returns:
      A batched, prefetched `tf.data.Dataset` of (float32 images, labels).
    """
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if training:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    mean = tf.constant(mean, tf.float32)
    std = tf.constant(std, tf.float32)

    def normalised(image, label):
        return (tf.cast(image, tf.float32) / 255.0 - mean) / std, label

    ds = ds.map(normalised, num_parallel_calls=tf.data.AUTOTUNE)
    if training:
        ds = ds.map(data_lib.augment_crop_flip, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch).prefetch(tf.data.AUTOTUNE)


class ReferenceData(typing.NamedTuple):
    """Three splits as (uint8 images, int32 labels) and their normalisation.

    Attributes:
      train, validation, test: (images (n, h, w, c) uint8, labels (n,) int32).
      mean, std: the per-channel moments a network trained on `train` sees.
    """

    train: tuple
    validation: tuple
    test: tuple
    mean: np.ndarray
    std: np.ndarray

    def split(self, name):
        """The (images, labels) of split `name` ("train", "validation", "test")."""
        if name not in SPLITS:
            raise ValueError(
                f"tfee.recipes.ReferenceData: `split` must be one of {SPLITS}. "
                f"Received: split={name!r}"
            )
        return getattr(self, name)

    def pipeline(self, name, training=False, batch=BATCH):
        """`reference_pipeline` over split `name` (training: shuffle + augment)."""
        return reference_pipeline(
            *self.split(name), self.mean, self.std, training=training, batch=batch
        )

    def normalised(self, name):
        """The float32 normalised images of split `name`, as one array."""
        return normalise(self.split(name)[0], self.mean, self.std)


def _tag(quick):
    return "quick" if quick else "full"


def reference_network_path(cache_dir, quick=False):
    """Where `reference_network` caches the trained network (a .keras file)."""
    return os.path.join(cache_dir, f"reference_{_tag(quick)}.keras")


def _normalisation_path(cache_dir, quick):
    return os.path.join(cache_dir, f"reference_{_tag(quick)}.normalisation.json")


# The trained reference network shipped with tfee (package data): its
# weights and a record (checksum, architecture, normalisation, how it was
# trained), so that a fresh machine starts from it instead of training.
COMMITTED_REFERENCE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "_reference", "reference_full.json"
)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_digest(network):
    """A short sha256 of `network`'s weight values (shapes and bytes, in
    order): the same for every copy of one training, whatever file holds it,
    so a result can name the training it was measured on."""
    digest = hashlib.sha256()
    for weights in network.get_weights():
        digest.update(
            str(weights.shape).encode() + np.ascontiguousarray(weights).tobytes()
        )
    return digest.hexdigest()[:16]


def committed_reference(record=None):
    """The record of the reference network shipped with tfee, or None.

    Args:
      record: the record's path (default `COMMITTED_REFERENCE`).

    Returns:
      A dict: `weights` (the weights file beside the record), `sha256`,
      `network` (`build_reference_network`'s arguments), `mean`, `std`,
      `epochs` and `training` (command, date, machine, test accuracy per
      exit); or None when no record is there.
    """
    record = record or COMMITTED_REFERENCE
    if not os.path.isfile(record):
        return None
    with open(record) as f:
        return json.load(f)


def save_committed_reference(
    network, arguments, mean, std, epochs, training, record=None
):
    """Writes `network`'s weights and their record (see `committed_reference`)
    at `record` (a .json path; the weights go beside it), each atomically.

    Args:
      network: a trained reference network.
      arguments: the `build_reference_network` arguments that build it
        (JSON-ready); checked against `network`'s weights.
      mean, std: the normalisation it was trained with.
      epochs: its training epochs.
      training: a JSON-ready dict saying how it was trained.
      record: the record's path (default `COMMITTED_REFERENCE`).

    Raises:
      ValueError: `arguments` build a network of other weights.
    """
    record = record or COMMITTED_REFERENCE
    built = build_reference_network(**arguments)
    shapes = [w.shape for w in network.get_weights()]
    if [w.shape for w in built.get_weights()] != shapes:
        raise ValueError(
            "tfee.recipes.save_committed_reference: `arguments` build a network "
            "whose weights differ from `network`'s. Received: "
            f"arguments={arguments!r}"
        )
    directory = os.path.dirname(os.path.abspath(record))
    os.makedirs(directory, exist_ok=True)
    stem = os.path.splitext(os.path.basename(record))[0]
    weights = os.path.join(directory, f"{stem}.weights.h5")
    write_atomically(weights, network.save_weights)
    document = {
        "weights": os.path.basename(weights),
        "sha256": _sha256(weights),
        "weights_digest": weights_digest(network),
        "network": arguments,
        "mean": np.asarray(mean, np.float64).tolist(),
        "std": np.asarray(std, np.float64).tolist(),
        "epochs": int(epochs),
        "training": training,
    }
    write_bytes_atomically(record, json.dumps(document, indent=1))


def _install_committed(cache_dir, record=None):
    """Puts the committed reference into `cache_dir` as `reference_network`
    caches a trained one (network and normalisation); False when tfee ships
    none. A weights file that fails its checksum raises a ValueError."""
    document = committed_reference(record)
    if document is None:
        return False
    weights = os.path.join(
        os.path.dirname(os.path.abspath(record or COMMITTED_REFERENCE)),
        document["weights"],
    )
    digest = _sha256(weights) if os.path.isfile(weights) else "missing"
    if digest != document["sha256"]:
        raise ValueError(
            "tfee.recipes.reference_network: the committed reference weights "
            f"{weights} do not match their record (sha256 {digest}, expected "
            f"{document['sha256']}): reinstall tfee, or retrain with "
            "retrain=True."
        )
    network = build_reference_network(**document["network"])
    network.load_weights(weights)
    os.makedirs(cache_dir, exist_ok=True)
    write_bytes_atomically(
        _normalisation_path(cache_dir, False),
        json.dumps({"mean": document["mean"], "std": document["std"]}),
    )
    write_atomically(reference_network_path(cache_dir), network.save)
    return True


def _extract(archive, root):
    if os.path.isdir(os.path.join(root, "test")):
        return
    if not os.path.isfile(archive):
        raise ValueError(
            "tfee.recipes.reference_data: `archive` must be the CIFAR-10 images "
            "archive (train/<class>/*.jpg and test/<class>/*.jpg, as in "
            f"shared/datasets). Received: archive={archive!r}"
        )
    with tarfile.open(archive) as tar:
        tar.extractall(root + ".partial", filter="data")
    os.replace(root + ".partial", root)


def reference_data(
    archive, cache_dir, quick=False, validation_per_class=VALIDATION_PER_CLASS
):
    """The reference splits of CIFAR-10 and the normalisation to use with them.

    Extracts `archive` under `cache_dir` once and caches the decoded images
    there (.npz). Train is the training folder less 500 images per class
    (chosen with seed 0), which form validation; test is the test folder.
    Each split is shuffled with a seeded permutation, so any prefix covers
    every class. The normalisation is the training split's per-channel
    moments, or the moments a network cached in `cache_dir` was trained with.

    Args:
      archive: path of the CIFAR-10 images archive (shared/datasets).
      cache_dir: where the extracted images, decoded arrays and network go.
      quick: BENCHMARK.md's quick mode: the first 5,000 / 1,000 / 2,000
        images of each split (smoke checks only).
      validation_per_class: training images per class held out for
        validation (the reference holds out 500).

    Returns:
      A `ReferenceData`.

    Raises:
      ValueError: the images are not extracted yet and `archive` is missing.
    """
    os.makedirs(cache_dir, exist_ok=True)
    root = os.path.join(cache_dir, "cifar10")
    _extract(archive, root)
    train_x, train_y, _ = data_lib.load_image_folder(
        os.path.join(root, "train"), cache=os.path.join(cache_dir, "train.npz")
    )
    test_x, test_y, _ = data_lib.load_image_folder(
        os.path.join(root, "test"), cache=os.path.join(cache_dir, "test.npz")
    )
    rng = np.random.default_rng(0)
    # The split `tfee.data.load(folder, validation_per_class=500)` makes.
    validation = data_lib.stratified_holdout(train_y, validation_per_class, rng)
    splits = {
        "train": (train_x[~validation], train_y[~validation]),
        "validation": (train_x[validation], train_y[validation]),
        "test": (test_x, test_y),
    }
    sizes = QUICK_SIZES if quick else {}
    for name, (x, y) in splits.items():
        picked = rng.permutation(len(y))[: sizes.get(name, len(y))]
        splits[name] = (x[picked], y[picked])
    recorded = _normalisation_path(cache_dir, quick)
    if os.path.exists(recorded):
        # A cached network must see the inputs it was trained on.
        with open(recorded) as f:
            stored = json.load(f)
        mean, std = np.float32(stored["mean"]), np.float32(stored["std"])
    else:
        mean, std = data_lib.channel_moments(splits["train"][0])
    return ReferenceData(**splits, mean=mean, std=std)


def build_reference_network(
    depth=20,
    width=16,
    fractions=SDN_FRACTIONS,
    num_classes=10,
    input_shape=None,
    head="sdn",
    cascading=False,
):
    """The reference network, untrained: a CIFAR ResNet with SDN exits.

    Kernels carry the L2 loss `L2` (SDN's coupled weight decay of 5e-4).

    Args:
      depth, width: `tfee.backbones.resnet_cifar`'s depth (6n + 2) and width;
        the reference is 20 and 16.
      fractions: exit placement as fractions of the full network's MACs.
      num_classes: classes of every exit.
      input_shape: image shape; CIFAR's (32, 32, 3) when None.
      head: the exit head type ("sdn" in the reference; "linear", "conv").
      cascading: ZTW's cascading heads (`tfee.attach_exits(cascading=True)`).

    Returns:
      An early-exit network with len(fractions) `head` heads plus the
      backbone's classifier as the deepest exit.
    """
    backbone = backbones.resnet_cifar(
        depth=depth,
        num_classes=num_classes,
        input_shape=input_shape or (32, 32, 3),
        width=width,
        weight_decay=L2,
    )
    return network_lib.attach_exits(
        backbone,
        placement.FlopsFractions(list(fractions)),
        head=head,
        cascading=cascading,
    )


def reference_optimizer(steps, epochs, learning_rate=0.1):
    """The reference recipe's optimizer: SGD with momentum 0.9 and a cosine
    decay of `learning_rate` over `steps * epochs` steps."""
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps * epochs)
    return keras.optimizers.SGD(schedule, momentum=0.9)


def compile_for_training(network, steps, epochs, learning_rate=0.1):
    """Compiles `network` with the reference recipe, in place.

    SGD with momentum 0.9 and a cosine decay of `learning_rate` over
    `steps * epochs` steps, SDN's joint loss, accuracy per exit. Fit with
    `tfee.callbacks.SDNRamp()` for SDN's weight ramp.

    Args:
      network: an early-exit network.
      steps: training batches per epoch.
      epochs: epochs the schedule spans.
      learning_rate: the initial learning rate.
    """
    network.compile(
        optimizer=reference_optimizer(steps, epochs, learning_rate),
        loss=losses.joint(network, weights="sdn"),
        metrics={name: ["accuracy"] for name in network.output_names},
    )


def train_reference_network(
    data,
    epochs=30,
    *,
    depth=20,
    width=16,
    fractions=SDN_FRACTIONS,
    backup_dir=None,
    seed=0,
    verbose=2,
):
    """Builds a reference network and trains it on `data` with the reference recipe.

    Args:
      data: a `ReferenceData`.
      epochs: training epochs (the reference is 30).
      depth, width, fractions: `build_reference_network`'s settings; the
        classes and the image shape come from `data.train`.
      backup_dir: a `keras.callbacks.BackupAndRestore` folder, so that an
        interrupted run resumes at its last epoch; None trains from scratch.
      seed: the seed of weights, shuffling and augmentation.
      verbose: Keras `fit` verbosity.

    Returns:
      The trained network.
    """
    keras.utils.set_random_seed(seed)
    network = build_reference_network(
        depth=depth,
        width=width,
        fractions=fractions,
        num_classes=int(np.max(data.train[1])) + 1,
        input_shape=data.train[0].shape[1:],
    )
    train = data.pipeline("train", training=True)
    compile_for_training(network, steps=len(train), epochs=epochs)
    callbacks = [callbacks_lib.SDNRamp()]
    if backup_dir:
        callbacks.append(keras.callbacks.BackupAndRestore(backup_dir))
    network.fit(
        train,
        validation_data=data.pipeline("validation"),
        epochs=epochs,
        callbacks=callbacks,
        verbose=verbose,
    )
    return network


def reference_network(
    archive,
    cache_dir,
    quick=False,
    epochs=30,
    train_if_missing=True,
    verbose=2,
    retrain=False,
    committed=None,
):
    """The trained reference network: cached, committed, or trained now.

    In that order: the network cached in `cache_dir`; else the one shipped
    with tfee (`committed_reference`, when it was trained for `epochs`),
    copied into the cache; else trained now. Training (about three hours
    on 2 cores) backs up every epoch under `cache_dir`, so an interrupted
    call resumes; the network is saved at `reference_network_path(cache_dir,
    quick)` with the normalisation it was trained with, which
    `reference_data` then returns.

    Args:
      archive: the CIFAR-10 images archive (read only when training).
      cache_dir: where the data and the network are cached.
      quick: BENCHMARK.md's quick mode (fewer images, 3 epochs).
      epochs: training epochs when not quick.
      train_if_missing: False raises instead of training.
      verbose: Keras `fit` verbosity.
      retrain: train it again (resuming a backup in `cache_dir`), whatever
        is cached or committed.
      committed: the committed record's path (default `COMMITTED_REFERENCE`).

    Returns:
      The trained network.

    Raises:
      FileNotFoundError: the network is neither cached nor committed and
        `train_if_missing` is False.
      ValueError: the committed weights fail their checksum.
    """
    path = reference_network_path(cache_dir, quick)
    if not retrain:
        if os.path.exists(path):
            return keras.models.load_model(path)
        document = committed_reference(committed)
        uses_committed = (
            not quick and document is not None and document["epochs"] == epochs
        )
        if uses_committed and _install_committed(cache_dir, committed):
            return keras.models.load_model(path)
    if not train_if_missing:
        raise FileNotFoundError(
            f"tfee.recipes.reference_network: no trained network at {path} and "
            "`train_if_missing` is False. Received: "
            f"cache_dir={cache_dir!r}, quick={quick!r}"
        )
    data = reference_data(archive, cache_dir, quick)
    network = train_reference_network(
        data,
        epochs=QUICK_EPOCHS if quick else epochs,
        backup_dir=os.path.join(cache_dir, f"backup_{_tag(quick)}"),
        verbose=verbose,
    )
    write_bytes_atomically(
        _normalisation_path(cache_dir, quick),
        json.dumps({"mean": data.mean.tolist(), "std": data.std.tolist()}),
    )
    write_atomically(path, network.save)
    return network


def __getattr__(name):
    # Old spellings a released README used, each warning once.
    if name == "channel_moments":
        _checks.warn_renamed(
            "tfee.recipes.channel_moments", "tfee.data.channel_moments"
        )
        return data_lib.channel_moments
    raise AttributeError(f"module 'tfee.recipes' has no attribute {name!r}")
