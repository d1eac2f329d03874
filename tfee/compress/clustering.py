"""Section-wise weight clustering of early-exit networks (ESCEPE).

Khalilian Gourtani & Meratnia, "ESCEPE" (EdgeSys 2023): the network is cut
into sections at its exits, each section's weights are clustered to its own
number of centroids (sections feeding shallow exits are protected), and the
network is retrained after each clustering stage with knowledge distillation
from the uncompressed network. tfmot's `cluster_weights` does the clustering.
"""

import json
import numbers
import os
import warnings

import numpy as np

from tfee import _checks
from tfee import structure as structure_lib
from tfee import training
from tfee._files import write_atomically
from tfee._files import write_bytes_atomically
from tfee._keras import keras
from tfee._keras import tf
from tfee._keras import tfmot
from tfee._tfmot import ClusterWeights
from tfee.compress import fold
from tfee.compress import scopes
from tfee.compress._copy import copy_network
from tfee.compress.stripping import _check_network
from tfee.compress.stripping import strip
from tfee.layers.exit_head import ExitHead

__all__ = [
    "CENTROID_INITS",
    "ClusteringPhase",
    "ClusteringPlan",
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
    """(groups, {layer: clusters}, frozen) for a network or its `Structure`."""
    structure = structure_lib.structure_of(network, api)
    network = structure.network
    scope = "section"
    targets = clusters
    if isinstance(clusters, dict) and any(
        isinstance(k, str) and k not in scopes.ROLES for k in clusters
    ):
        scope = "layer"
    groups, frozen = scopes.resolve(
        structure,
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
            for weight_name, weight in _to_cluster(layers[name], count)
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


def _within(weight, count):
    return len(np.unique(keras.backend.get_value(weight))) <= count


def _to_cluster(layer, count):
    """The weights of `layer` that clustering to `count` values changes: a
    tfee exit head leaves out kernels that already hold at most `count`."""
    weights = scopes.clusterable_weights(layer) or []
    if isinstance(layer, ExitHead):
        return [(n, w) for n, w in weights if not _within(w, count)]
    return weights


def cluster_weights(
    network,
    clusters,
    *,
    init="kmeans++",
    preserve_sparsity=False,
    cluster_per_channel=False,
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
      cluster_per_channel: one set of centroids per output channel (tfmot does this
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
    _checks.check_bool(preserve_sparsity, "preserve_sparsity", api)
    _checks.check_bool(cluster_per_channel, "cluster_per_channel", api)
    initialisation = CENTROID_INITS.get(init, init)
    if initialisation not in CENTROID_INITS.values():
        raise ValueError(
            f"{api}: `init` must be one of {sorted(CENTROID_INITS)} or a "
            f"CentroidInitialization. Received: init={init!r}"
        )
    _, per_layer, _ = _resolve(
        structure_lib.read_structure(network, api), clusters, api
    )
    dense = copy_network(network)

    def wrap(layer):
        if layer.name not in per_layer:
            return layer
        if isinstance(layer, ExitHead):  # Our own copy (`dense`).
            changed = {n for n, _ in _to_cluster(layer, per_layer[layer.name])}
            if not changed:
                return layer  # Every kernel already holds at most the count.
            layer.keep_unclustered = tuple(
                n for n, _ in layer._owned_kernels() if n not in changed
            )
        wrapper = tfmot.clustering.keras.cluster_weights(
            layer,
            number_of_clusters=per_layer[layer.name],
            cluster_centroids_init=initialisation,
            preserve_sparsity=preserve_sparsity,
            cluster_per_channel=cluster_per_channel,
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
        (
            section.index
            for section in structure_lib.structure_of(network, "tfee.compress").sections
        ),
        clusters,
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
    structure = structure_lib.read_structure(network, api)
    _resolve(structure, clusters, api)
    return _stages(structure, clusters, staged)


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

    def lost(self):
        """{weight name: (zeros kept at the start, zeros left)} where a fit
        without this callback turned pruned zeros into values."""
        lost = {}
        for weight, mask in self._masks:
            values = keras.backend.get_value(weight)
            left = int(np.sum((values == 0) & (mask == 0)))
            pruned = int(np.sum(mask == 0))
            if left < pruned:
                lost[weight.name] = (pruned, left)
        return lost


class _PhaseGuard(keras.callbacks.Callback):
    """Refuses to fit a phase's model out of order, or another model."""

    def __init__(self, phase):
        super().__init__()
        self._phase = phase

    def on_train_begin(self, logs=None):
        phase, plan = self._phase, self._phase._plan
        if plan._current is not phase:
            current = plan._current.number if plan._current else "none (finished)"
            raise ValueError(
                f"tfee.compress.ClusteringPlan: phase {phase.number} was fitted after "
                f"the plan moved on; fit each phase inside its loop iteration. "
                f"Received: phase {phase.number}; the current phase is {current}"
            )
        if self.model is not phase.model:
            raise ValueError(
                "tfee.compress.ClusteringPlan: phase.callbacks belong to "
                f"phase.model ('{phase.model.name}'). Received: fit on "
                f"'{self.model.name}'"
            )


class ClusteringPhase:
    """One phase of a `ClusteringPlan`: compile `model`, fit it with `callbacks`.

    Attributes:
      number: 1, 2, ... in the plan's order.
      keys: the section numbers ("backbone"/"heads", or layer names) whose
        weights this phase clusters.
      network: the network with this phase's layers in tfmot's clustering
        wrappers (the sections of earlier phases frozen at their centroids).
      model: what to compile and fit: a `tfee.Distiller` around
        `network` when the plan distils, else `network` itself.
      callbacks: pass them to `fit` (with any of your own): they keep pruned
        zeros at zero and refuse a fit out of order.
    """

    def __init__(self, plan, number, keys, network, model):
        self._plan = plan
        self.number = number
        self.keys = keys
        self.network = network
        self.model = model
        self.callbacks = [_PhaseGuard(self)]
        self._keep_zeros = None
        if plan.preserve_sparsity:
            self._keep_zeros = _KeepZeros(network)
            self.callbacks.append(self._keep_zeros)

    def _check_zeros_kept(self, api):
        """Raises where the phase was fitted without its callbacks and so lost
        pruned zeros (pruning refuses a fit without its scheduler alike)."""
        lost = {} if self._keep_zeros is None else self._keep_zeros.lost()
        if lost:
            shown = ", ".join(
                f"{name}: {left} of {pruned} zeros left"
                for name, (pruned, left) in list(lost.items())[:4]
            )
            raise ValueError(
                f"{api}: phase {self.number} was fitted without phase.callbacks, "
                "which preserve_sparsity=True needs to keep the pruned weights of "
                f"the sections not clustered yet at zero ({shown}). Fit each "
                "phase with fit(..., callbacks=[*phase.callbacks, ...]); this "
                "phase's result is not kept."
            )

    def compile(self, optimizer="adam", **kwargs):
        """`model.compile` with this phase's loss: the Distiller's own, or the
        joint cross-entropy of every exit (`tfee.losses.joint`)."""
        if self._plan.distill:
            self.model.compile(optimizer=optimizer, **kwargs)
        else:
            loss = training.losses.joint(self.network)
            self.model.compile(optimizer=optimizer, loss=loss, **kwargs)

    def __repr__(self):
        return f"ClusteringPhase(number={self.number}, keys={self.keys})"


class ClusteringPlan:
    """Section-by-section clustering (ESCEPE) driven by your own `fit`.

    Iterating gives one `ClusteringPhase` per stage; compile and fit each
    phase's model inside the loop, with its callbacks and your own. When the
    loop asks for the next phase, the one before is stripped and its sections
    are frozen at their centroids, so later phases cannot move them.

        plan = tfee.compress.ClusteringPlan(net, {1: 32, 2: 16, 3: 8})
        for phase in plan:
            phase.compile(keras.optimizers.Adam(1e-4))
            phase.model.fit(train_ds, epochs=1,
                            callbacks=[*phase.callbacks, keras.callbacks.CSVLogger(f)])
        clustered = plan.result()

    With `directory`, each finished phase's network is saved there, and a
    plan made again with the same arguments and directory skips the phases
    already done; within a phase, `keras.callbacks.BackupAndRestore` in your
    `fit` resumes the epochs (the phase's variables are rebuilt identically).

    Args:
      network: a trained tfee early-exit network (left unchanged).
      clusters: per-section counts, see `cluster_weights`.
      staged: one section key per phase, shallowest first (ESCEPE); False
        clusters all in one phase.
      distill: phase models are `tfee.Distiller`s; False trains with
        plain cross-entropy on every exit.
      teacher: "dense" (a frozen copy of the input network), None
        (self-distillation from the deepest exit) or a model.
      init, cluster_per_channel, preserve_sparsity, fold_batch_norm, temperature,
        kd_weight: see `cluster`.
      directory: where finished phases are saved, or None.

    Raises:
      ValueError / TypeError: bad clusters, teacher or fold_batch_norm; a
        directory holding another plan's phases.
    """

    def __init__(
        self,
        network,
        clusters,
        *,
        staged=True,
        distill=True,
        teacher="dense",
        init="kmeans++",
        preserve_sparsity=False,
        cluster_per_channel=False,
        fold_batch_norm=True,
        temperature=3.0,
        kd_weight=0.3,
        directory=None,
        _api="tfee.compress.ClusteringPlan",
    ):
        api = _api  # cluster() builds its plan under its own name.
        _check_network(network, api)
        _checks.check_bool(fold_batch_norm, "fold_batch_norm", api)
        _checks.check_bool(preserve_sparsity, "preserve_sparsity", api)
        _checks.check_bool(cluster_per_channel, "cluster_per_channel", api)
        structure = structure_lib.read_structure(network, api)
        _, _, frozen = _resolve(structure, clusters, api)
        scopes.warn_frozen(frozen, api, {layer.name: layer for layer in network.layers})
        if isinstance(teacher, str):
            if teacher != "dense":
                raise ValueError(
                    f"{api}: `teacher` must be 'dense', None or a model. "
                    f"Received: teacher={teacher!r}"
                )
            teacher = copy_network(network)
            teacher.trainable = False
        self.network = network
        self.phases = _stages(structure, clusters, staged)
        self.clusters = _spelled_out(structure, clusters)
        self.staged = staged
        self.distill = distill
        self.teacher = teacher
        self.init = init
        self.preserve_sparsity = preserve_sparsity
        self.cluster_per_channel = cluster_per_channel
        self.fold_batch_norm = fold_batch_norm
        self.temperature = temperature
        self.kd_weight = kd_weight
        self.directory = directory
        self._api = api
        self._current = None
        self._result = None
        self._check_directory()

    # -- saved phases -----------------------------------------------------------
    def _record(self):
        return {
            "phases": [list(map(str, keys)) for keys in self.phases],
            "clusters": {str(k): v for k, v in self.clusters.items()},
            "fold_batch_norm": self.fold_batch_norm,
        }

    def _state_path(self):
        return os.path.join(self.directory, "clustering_plan.json")

    def _phase_path(self, number):
        return os.path.join(self.directory, f"phase_{number}.keras")

    def _completed(self):
        if self.directory is None or not os.path.exists(self._state_path()):
            return 0
        with open(self._state_path()) as f:
            return json.load(f)["completed"]

    def _check_directory(self):
        if self.directory is None or not os.path.exists(self._state_path()):
            return
        with open(self._state_path()) as f:
            saved = json.load(f)
        if saved["plan"] != self._record():
            raise ValueError(
                f"{self._api}: `directory` holds the phases of another plan; use "
                f"a new directory. Received: directory={self.directory!r} with "
                f"{saved['plan']}, this plan is {self._record()}"
            )

    def _save(self, number, network):
        # The network first, then the state that points at it.
        write_atomically(self._phase_path(number), network.save)
        state = {"plan": self._record(), "completed": number}
        write_bytes_atomically(self._state_path(), json.dumps(state, indent=1))

    # -- the phases -------------------------------------------------------------
    def __len__(self):
        return len(self.phases)

    def __iter__(self):
        if self._current is not None:
            raise ValueError(
                f"{self._api}: the plan is being iterated already; finish that "
                "loop (one plan, one pass)."
            )
        original = {layer.name: layer.trainable for layer in self.network.layers}
        completed = self._completed()
        if completed:
            current = keras.models.load_model(self._phase_path(completed))
        elif self.fold_batch_norm:
            current = fold.fold_batch_norm(self.network)
        else:
            current = copy_network(self.network)
        done = set()
        for keys in self.phases[:completed]:
            done.update(self._layers_of(keys))
        for number, keys in enumerate(self.phases, start=1):
            if number <= completed:
                continue
            self._freeze(current, done)
            spec = {k: self.clusters[k] for k in keys}
            wrapped = cluster_weights(
                current,
                spec,
                init=self.init,
                preserve_sparsity=self.preserve_sparsity,
                cluster_per_channel=self.cluster_per_channel,
            )
            model = wrapped
            if self.distill:
                model = training.Distiller(
                    wrapped,
                    teacher=self.teacher,
                    temperature=self.temperature,
                    kd_weight=self.kd_weight,
                )
            phase = ClusteringPhase(self, number, keys, wrapped, model)
            self._current = phase
            try:
                yield phase
            finally:
                self._current = None
            phase._check_zeros_kept(self._api)
            current = strip(wrapped)
            if self.staged:
                done.update(self._layers_of(keys))
            if self.directory is not None:
                self._save(number, current)
        for layer in current.layers:
            layer.trainable = original.get(layer.name, layer.trainable)
        self._result = current

    def _layers_of(self, keys):
        _, layer_counts, _ = _resolve(
            self.network, {k: self.clusters[k] for k in keys}, self._api
        )
        return set(layer_counts)

    @staticmethod
    def _freeze(network, done):
        # Clustered sections keep their centroids exactly: freeze them.
        for layer in network.layers:
            if layer.name in done:
                layer.trainable = False

    def result(self):
        """The clustered network, stripped, once every phase has been fitted."""
        if self._result is None:
            raise ValueError(
                f"{self._api}: result() needs every phase done: iterate the plan "
                f"to its end first. Received: a plan of {len(self.phases)} phases "
                "not finished"
            )
        return self._result


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
    cluster_per_channel=False,
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
      distill: retrain with `tfee.Distiller`; False uses plain
        cross-entropy on every exit.
      teacher: "dense" (a frozen copy of the input network), None
        (self-distillation from the deepest exit) or a model.
      epochs: retraining epochs per stage.
      init, cluster_per_channel: see `cluster_weights`.
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
      `tfee.exit_accuracy(clustered, data)` for accuracy,
      `tfee.compress.clustering_stages(network, clusters, staged)` for the
      stages it ran, `tfee.export.compression_report(clustered)` for sizes.

    Example:
      >>> clustered = tfee.compress.cluster(
      ...     tfee.compress.prune(net, train, 0.8), train, {1: 32, 2: 16, 3: 8},
      ...     preserve_sparsity=True)
    """
    api = "tfee.compress.cluster"
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(
            f"{api}: `epochs` must be an integer >= 0. Received: epochs={epochs!r}"
        )
    plan = ClusteringPlan(
        network,
        clusters,
        staged=staged,
        distill=distill,
        teacher=teacher,
        init=init,
        preserve_sparsity=preserve_sparsity,
        cluster_per_channel=cluster_per_channel,
        fold_batch_norm=fold_batch_norm,
        temperature=temperature,
        kd_weight=kd_weight,
        _api=api,
    )
    optimizer = optimizer or keras.optimizers.Adam(1e-4)
    if isinstance(optimizer, str):
        optimizer = keras.optimizers.get(optimizer)
    for phase in plan:
        if epochs:
            # A fresh copy per phase: the phases train different variables.
            phase.compile(
                keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
            )
            phase.model.fit(
                train_data, epochs=epochs, callbacks=phase.callbacks, verbose=verbose
            )
    return plan.result()
