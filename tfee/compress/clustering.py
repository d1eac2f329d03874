"""Section-wise weight clustering of early-exit networks (ESCEPE).

Khalilian Gourtani & Meratnia, "ESCEPE" (EdgeSys 2023): the network is cut
into sections at its exits, each section's weights are clustered to its own
number of centroids (sections feeding shallow exits are protected), and the
network is retrained after each clustering stage with knowledge distillation
from the uncompressed network. tfmot's `cluster_weights` does the clustering.
"""

import numbers
import warnings

import numpy as np

from tfee import network as network_lib
from tfee._keras import keras
from tfee._keras import tf
from tfee._keras import tfmot
from tfee.compress import fold
from tfee.compress import scopes
from tfee.compress._copy import copy_network
from tfee.compress._tfmot import ClusterWeights
from tfee.compress.stripping import _check_network
from tfee.compress.stripping import strip

__all__ = [
    "CENTROID_INITS",
    "cluster",
    "cluster_weights",
    "clustering_stages",
    "parse_clusters",
]

_Init = tfmot.clustering.keras.CentroidInitialization
CENTROID_INITS = {
    "kmeans++": _Init.KMEANS_PLUS_PLUS,
    "linear": _Init.LINEAR,
    "density": _Init.DENSITY_BASED,
    "random": _Init.RANDOM,
}


def _check_clusters(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 2:
        return "an integer >= 2 (the number of clusters)"
    return None


def parse_clusters(text):
    """Reads per-section cluster counts written as on a command line.

    Args:
      text: "16" (every section), or comma-separated `key:count` pairs whose
        keys are section numbers, "backbone" or "heads", e.g.
        "1:32,2:16,3:8" or "backbone:16,heads:8".

    Returns:
      An int, or a dict {section number or role: count} for
      `tfee.compress.cluster`.

    Raises:
      ValueError: text that does not parse; counts are checked by `cluster`.
    """
    api = "tfee.compress.parse_clusters"
    if not isinstance(text, str) or not text.strip():
        raise ValueError(
            f"{api}: `text` must be a count such as '16' or pairs such as "
            f"'1:32,2:16,3:8'. Received: text={text!r}"
        )
    try:
        if ":" not in text:
            return int(text)
        result = {}
        for pair in text.split(","):
            key, count = (part.strip() for part in pair.split(":"))
            result[key if key in scopes.ROLES else int(key)] = int(count)
        return result
    except ValueError:
        raise ValueError(
            f"{api}: `text` must be a count such as '16' or pairs such as "
            f"'1:32,2:16,3:8' (keys: section numbers, 'backbone', 'heads'). "
            f"Received: text={text!r}"
        ) from None


def _resolve(network, clusters, api):
    scope = "section"
    targets = clusters
    if isinstance(clusters, dict) and any(
        isinstance(k, str) and k not in scopes.ROLES for k in clusters
    ):
        scope = "layer"
    groups, frozen = scopes.resolve(
        network,
        targets,
        scope,
        api=api,
        argument="clusters",
        check=_check_clusters,
        weights_of=scopes.clusterable_weights,
    )
    per_layer = {}
    for group in groups:
        for name in group.layers:
            per_layer[name] = group.target
    layers = {layer.name: layer for layer in network.layers}
    for name, count in list(per_layer.items()):
        # tfmot clusters every weight of a layer with one count; a weight
        # with fewer elements holds at most that many values already.
        sizes = {
            weight_name: int(np.prod(weight.shape))
            for weight_name, weight in scopes.clusterable_weights(layers[name])
        }
        smallest = min(sizes, key=sizes.get, default=None)
        if smallest is None or sizes[smallest] >= count:
            continue
        if sizes[smallest] < 2:
            raise ValueError(
                f"{api}: layer '{name}' has {sizes[smallest]} weight in "
                f"'{smallest}', too few to cluster; leave the layer out of "
                f"`clusters`. Received: {count} clusters for it"
            )
        per_layer[name] = sizes[smallest]
        warnings.warn(
            f"{api}: layer '{name}' has only {sizes[smallest]} weights in "
            f"'{smallest}', and tfmot clusters all of a layer's weights with one "
            f"count: it gets {sizes[smallest]} clusters instead of the {count} "
            "asked for its section.",
            stacklevel=3,
        )
    return groups, per_layer, frozen


def cluster_weights(
    network, clusters, *, init="kmeans++", preserve_sparsity=False, per_channel=False
):
    """Wraps a copy of `network` for clustering, section by section.

    Args:
      network: a tfee early-exit network (left unchanged).
      clusters: an int for every section, or a dict {section k: count,
        "backbone": count, "heads": count} (sections left out stay
        unclustered), or {layer name: count}.
      init: centroid initialisation: "kmeans++", "linear", "density",
        "random", or a `tfmot.clustering.keras.CentroidInitialization`.
      preserve_sparsity: keep pruned (zero) weights at zero.
      per_channel: one set of centroids per output channel (tfmot does this
        for Conv2D layers; other layers are clustered per tensor).

    Returns:
      A model whose clusterable layers are wrapped by tfmot; train it, then
      `tfee.compress.strip` it. Non-weight layers (activations, adds, BN) and
      frozen layers pass through unwrapped.

    Raises:
      ValueError: fewer than 2 clusters, more clusters than weights in a
        layer, unknown sections or init, layers tfmot cannot cluster (named).
    """
    api = "tfee.compress.cluster_weights"
    _check_network(network, api)
    initialisation = CENTROID_INITS.get(init, init)
    if initialisation not in CENTROID_INITS.values():
        raise ValueError(
            f"{api}: `init` must be one of {sorted(CENTROID_INITS)} or a "
            f"CentroidInitialization. Received: init={init!r}"
        )
    _, per_layer, _ = _resolve(network, clusters, api)
    dense = copy_network(network)

    def wrap(layer):
        if layer.name not in per_layer:
            return layer
        wrapper = tfmot.clustering.keras.cluster_weights(
            layer,
            number_of_clusters=per_layer[layer.name],
            cluster_centroids_init=initialisation,
            preserve_sparsity=preserve_sparsity,
            cluster_per_channel=per_channel,
        )
        try:
            wrapper.build(layer.input_shape)
        except tf.errors.InvalidArgumentError as error:
            raise ValueError(
                f"{api}: tfmot could not initialise {per_layer[layer.name]} "
                f"centroids for layer '{layer.name}' with init={init!r} "
                f"(too few distinct or non-zero weights). Use init='linear' or "
                f"fewer clusters. tfmot said: {error.message.splitlines()[0]}"
            ) from None
        return wrapper

    return keras.models.clone_model(dense, clone_function=wrap)


def _spelled_out(network, clusters):
    if isinstance(clusters, dict):
        return clusters
    # One count for every section, spelled out so that a staged run clusters
    # them one stage each, like a dict of counts.
    return dict.fromkeys(
        (section.index for section in network_lib.sections(network)), clusters
    )


def _stages(network, clusters, staged):
    keys = sorted(
        _spelled_out(network, clusters),
        key=lambda k: (isinstance(k, str), str(k).zfill(8)),
    )
    return tuple((k,) for k in keys) if staged else (tuple(keys),)


def clustering_stages(network, clusters, staged=True):
    """The keys `cluster(network, ..., clusters, staged=staged)` clusters at
    each stage, in order: the plan of a run, for the record.

    Args:
      network: a tfee early-exit network.
      clusters, staged: as for `cluster`.

    Returns:
      A tuple of stages, each a tuple of section numbers, "backbone"/"heads"
      or layer names.

    Raises:
      ValueError: `clusters` that `cluster` would reject.

    Example:
      >>> tfee.compress.clustering_stages(net, 8)  # three sections
      ((1,), (2,), (3,))
    """
    api = "tfee.compress.clustering_stages"
    _check_network(network, api)
    _resolve(network, clusters, api)
    return _stages(network, clusters, staged)


class _KeepZeros(keras.callbacks.Callback):
    """Puts zero weights of layers that are not (yet) clustered back to zero
    after every batch, so that a pruned network stays pruned while a staged
    run retrains sections it clusters later."""

    def __init__(self, model):
        super().__init__()
        self._masks = []
        for layer in model.layers:
            if isinstance(layer, ClusterWeights) or not layer.trainable:
                continue
            for _, weight in scopes.clusterable_weights(layer) or []:
                mask = keras.backend.get_value(weight) != 0
                if not mask.all():
                    self._masks.append((weight, mask.astype("float32")))

    def on_train_batch_end(self, batch, logs=None):
        for weight, mask in self._masks:
            weight.assign(weight * mask)


def _retrain(
    student,
    teacher,
    data,
    epochs,
    optimizer,
    distill,
    temperature,
    kd_weight,
    verbose,
    preserve_sparsity,
):
    fresh = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    callbacks = [_KeepZeros(student)] if preserve_sparsity else []
    if distill:
        from tfee.training import Distiller

        trainer = Distiller(
            student, teacher=teacher, temperature=temperature, kd_weight=kd_weight
        )
        trainer.compile(optimizer=fresh)
        trainer.fit(data, epochs=epochs, callbacks=callbacks, verbose=verbose)
    else:
        from tfee.training import losses

        student.compile(optimizer=fresh, loss=losses.joint(student))
        student.fit(data, epochs=epochs, callbacks=callbacks, verbose=verbose)


def cluster(
    network,
    train_data,
    clusters,
    *,
    staged=True,
    distill=True,
    teacher="dense",
    epochs=1,
    init="kmeans++",
    preserve_sparsity=False,
    per_channel=False,
    fold_batch_norm=True,
    optimizer=None,
    temperature=3.0,
    kd_weight=0.3,
    verbose="auto",
):
    """ESCEPE: clusters an early-exit network section by section, retraining
    with knowledge distillation after each stage; returns it stripped.

    Args:
      network: a trained tfee early-exit network (left unchanged).
      train_data: a tf.data.Dataset of (images, labels) batches.
      clusters: per-section counts, see `cluster_weights`.
      staged: cluster one section key per stage (with an int, one stage per
        section), shallowest first, freezing the sections already clustered
        (ESCEPE); False clusters all at once.
      distill: retrain with `tfee.training.Distiller`; False uses plain
        cross-entropy on every exit.
      teacher: "dense" (a frozen copy of the input network), None
        (self-distillation from the deepest exit) or a model.
      epochs: retraining epochs per stage.
      init, per_channel: see `cluster_weights`.
      fold_batch_norm: fold BatchNormalization into the Conv2D / Dense before
        it first (`tfee.compress.fold_batch_norm`) and cluster the folded
        kernels; the returned network has identity layers where the folded
        BNs were. The TFLite converter folds BN anyway, scaling every output
        channel by its own factor: folded first, a kernel keeps its exact
        cluster count in float32 files and in int8 files with per-tensor
        scales (`tfee.export.tflite(per_channel=False)`). False keeps BN as a
        layer whose per-channel scale retraining can adjust, which is more
        accurate at few clusters (4 per kernel on the reference network, one
        epoch per stage: worst exit 5.4 points below the dense network,
        against 8.5 folded); export it as int8 with per-channel scales, which
        divide the folded factor out again: every channel keeps at most its
        kernel's cluster count of values, but a channel that lacks the
        largest centroid is scaled to other int8 values (16 clusters reached
        the file as up to 76 values per kernel on the reference network).
      preserve_sparsity: keep zero (pruned) weights at zero: tfmot keeps them
        in clustered layers, and layers not clustered yet (later stages,
        sections left out) have their zeros restored after every batch.
      optimizer: an optimizer to copy for every stage (default Adam 1e-4).
      temperature, kd_weight: distillation settings (ESCEPE: 3 and 0.3).
      verbose: passed to `fit`.

    Returns:
      The clustered Keras model, stripped of tfmot's wrappers (a copy:
      clustered weights hold their centroids). Measure it beside the call:
      `tfee.policy.exit_accuracy(clustered, data)` for accuracy,
      `tfee.compress.clustering_stages(network, clusters, staged)` for the
      stages it ran, `tfee.export.compression_report(clustered)` for sizes.

    Example:
      >>> clustered = tfee.compress.cluster(
      ...     tfee.compress.prune(net, train, 0.8), train, {1: 32, 2: 16, 3: 8},
      ...     preserve_sparsity=True)
    """
    api = "tfee.compress.cluster"
    _check_network(network, api)
    if not isinstance(fold_batch_norm, bool):
        raise TypeError(
            f"{api}: `fold_batch_norm` must be True or False. "
            f"Received: fold_batch_norm={fold_batch_norm!r}"
        )
    _, _, frozen = _resolve(network, clusters, api)
    scopes.warn_frozen(frozen, api, {layer.name: layer for layer in network.layers})
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(
            f"{api}: `epochs` must be an integer >= 0. Received: epochs={epochs!r}"
        )
    if isinstance(teacher, str):
        if teacher != "dense":
            raise ValueError(
                f"{api}: `teacher` must be 'dense', None or a model. "
                f"Received: teacher={teacher!r}"
            )
        teacher = copy_network(network)
        teacher.trainable = False
    optimizer = optimizer or keras.optimizers.Adam(1e-4)
    if isinstance(optimizer, str):
        optimizer = keras.optimizers.get(optimizer)
    stages = _stages(network, clusters, staged)
    clusters = _spelled_out(network, clusters)
    current = (
        fold.fold_batch_norm(network) if fold_batch_norm else copy_network(network)
    )
    original_trainable = {layer.name: layer.trainable for layer in current.layers}
    done = set()
    for stage in stages:
        spec = {k: clusters[k] for k in stage}
        wrapped = cluster_weights(
            current,
            spec,
            init=init,
            preserve_sparsity=preserve_sparsity,
            per_channel=per_channel,
        )
        if epochs:
            _retrain(
                wrapped,
                teacher,
                train_data,
                epochs,
                optimizer,
                distill,
                temperature,
                kd_weight,
                verbose,
                preserve_sparsity,
            )
        current = strip(wrapped)
        if staged:
            # Clustered sections keep their centroids exactly: freeze them.
            _, layer_counts, _ = _resolve(network, spec, api)
            done.update(layer_counts)
            for layer in current.layers:
                if layer.name in done:
                    layer.trainable = False
    for layer in current.layers:
        layer.trainable = original_trainable.get(layer.name, layer.trainable)
    return current
