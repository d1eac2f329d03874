"""Magnitude pruning of early-exit networks: global, per layer or per section,
with heads and backbone pruned together or in order.

Görmez & Koyuncu, "Pruning Early Exit Networks" (2022), compare pruning the
backbone and the exit heads at once ("together") with pruning the backbone
first and then the heads with the backbone frozen ("ordered"), both with
unstructured magnitude pruning in rounds of (prune, fine-tune) under one
global threshold. tfmot's wrappers do the masking; the thresholds, phases and
schedules are tfee's (see `PruningScheduler`).
"""

import numbers
import warnings

from tfee import _checks
from tfee import structure as structure_lib
from tfee import training
from tfee._keras import keras
from tfee.compress import scopes
from tfee.compress._copy import copy_network
from tfee.compress._copy import steps_per_epoch as _steps_per_epoch
from tfee.compress.batch_norm import batch_norm_layers
from tfee.compress.callbacks import Phase
from tfee.compress.callbacks import PruningScheduler
from tfee.compress.callbacks import planned_pruning
from tfee.compress.schedules import Rounds
from tfee.compress.schedules import Schedule
from tfee.compress.stripping import _check_network
from tfee.compress.stripping import strip

__all__ = [
    "ORDERS",
    "PruningPlan",
    "prune",
    "pruning_plan",
]

ORDERS = ("together", "ordered")


def _check_sparsity(value):
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not 0 <= value < 1
    ):
        return "a number in [0, 1)"
    return None


def pruning_plan(
    network,
    sparsity,
    *,
    scope="global",
    order="together",
    schedule=None,
    phase_steps=None,
    batch_norm_data=None,
):
    """Wraps a copy of `network` for pruning; returns it with the callback that prunes.

    The lower-level entry point for callers who drive `fit` themselves:

        pruned, scheduler = tfee.compress.pruning_plan(net, 0.8)
        pruned.compile("adam", loss=tfee.losses.joint(pruned))
        pruned.fit(train_ds, epochs=4, callbacks=[scheduler])
        small = tfee.compress.strip(pruned)

    The pruned model trains only with its scheduler among `fit`'s callbacks
    until the plan ends: a training step without it (tfmot's
    `UpdatePruningStep` alone) raises instead of never pruning. It saves
    and loads at any point of the plan (`keras.models.load_model`, with
    tfee imported); to resume, build the same plan again and pass its
    scheduler: `_, scheduler = pruning_plan(network, <same args>)`.

    Args:
      network: a tfee early-exit network (left unchanged).
      sparsity: the target: a number in [0, 1) or, for scope "layer" or
        "section", a dict (see `tfee.compress.scopes`).
      scope: "global" (one magnitude threshold across all layers), "layer"
        (each layer to the target) or "section".
      order: "together" (backbone and heads at once) or "ordered" (phase 1
        prunes the backbone with the heads frozen and only the deepest exit's
        loss; phase 2 prunes the heads with the backbone frozen). Ordered
        runs need `compile(loss=tfee.losses.joint(pruned))`.
      schedule: a `tfee.compress.Schedule` per phase (default: prune to the
        target at the first step, `ConstantSparsity`-like `Rounds(1, ...)`).
      phase_steps: for "ordered": the step at which phase 2 (heads) begins.
      batch_norm_data: images (a dataset or array, as for the model) from
        which the BatchNormalization statistics are re-estimated
        (`tfee.compress.reestimate_batch_norm`) when phase 2 freezes the
        pruned backbone ("ordered") and when training ends (either order:
        moving averages lag behind the weights the last pruning step
        changed, and the deepest exit can come back at chance). Without
        them a network with BatchNormalization keeps stale statistics, and
        a warning says so.

    Returns:
      A `PruningPlan`: the tuple (pruned model, `PruningScheduler`), which
      explains itself when used as a model. Layers the caller froze are not
      wrapped and never change.

    Raises:
      ValueError: bad sparsity, scope, order, section keys or schedule;
        layers tfmot cannot prune (named).
    """
    api = "tfee.compress.pruning_plan"
    _check_network(network, api)
    if order not in ORDERS:
        raise ValueError(
            f"{api}: `order` must be one of {list(ORDERS)}. Received: order={order!r}"
        )
    if schedule is None:
        schedule = Rounds(rounds=1, steps_per_round=1)
    if not isinstance(schedule, Schedule):
        raise TypeError(
            f"{api}: `schedule` must be a tfee.compress.Schedule (Rounds, "
            f"ConstantSparsity, PolynomialDecay). Received: schedule={schedule!r}"
        )
    structure = structure_lib.read_structure(network, api)
    groups, frozen = scopes.resolve(
        structure,
        sparsity,
        scope,
        api=api,
        argument="sparsity",
        check=_check_sparsity,
        weights_of=scopes.prunable_weights,
    )
    scopes.warn_frozen(frozen, api, {layer.name: layer for layer in network.layers})
    roles = scopes.layer_roles(structure)
    if order == "together":
        phases = [Phase(tuple(groups), schedule)]
    else:
        if (
            isinstance(phase_steps, bool)
            or not isinstance(phase_steps, int)
            or phase_steps < 1
        ):
            raise ValueError(
                f"{api}: order='ordered' needs `phase_steps`, the training step at "
                f"which the heads' phase begins (a positive integer). Received: "
                f"phase_steps={phase_steps!r}"
            )
        if schedule.length is None or schedule.length > phase_steps:
            raise ValueError(
                f"{api}: the schedule must end within a phase ({phase_steps} steps) "
                f"for order='ordered'. Received: schedule={schedule!r} "
                f"(length {schedule.length})"
            )
        split = scopes.split_by_role(structure, groups)
        heads = tuple(n for n, (_, role) in roles.items() if role == "heads")
        backbone = tuple(n for n, (_, role) in roles.items() if role == "backbone")
        exit_names = [s.exit_name for s in structure.sections]
        phases = [
            Phase(
                tuple(g for g in split if g.role == "backbone"),
                schedule,
                0,
                frozen=heads,
                loss_weights={name: 0.0 for name in exit_names[:-1]},
            ),
            Phase(
                tuple(g for g in split if g.role == "heads"),
                schedule,
                phase_steps,
                frozen=backbone,
            ),
        ]
    to_wrap = {name for group in groups for name in group.layers}
    dense = copy_network(network)

    def wrap(layer):
        if layer.name in to_wrap:
            return planned_pruning(layer)
        return layer

    if batch_norm_data is None and batch_norm_layers(network, structure.nodes):
        frozen_then = (
            "order='ordered' freezes the pruned backbone in phase 2, so its "
            if order == "ordered"
            else "moving averages lag behind the weights pruning changes, so the "
        )
        warnings.warn(
            f"{api}: {frozen_then}BatchNormalization statistics stay those of "
            "unpruned weights and the exits can fall to chance. Pass "
            "batch_norm_data= (training images) to re-estimate them when phase 2 "
            "begins and when training ends. Received: batch_norm_data=None",
            stacklevel=2,
        )
    pruned = keras.models.clone_model(dense, clone_function=wrap)
    scheduler = PruningScheduler(phases, batch_norm_data=batch_norm_data)
    scheduler.frozen = tuple(frozen)
    return PruningPlan(pruned, scheduler)


class PruningPlan(tuple):
    """`(model, scheduler)`, as `pruning_plan` returns them.

    tfmot's `prune_low_magnitude` returns the model alone; code written for
    it (`model = ...; model.compile(...)`) would meet a plain tuple's
    "no attribute 'compile'". This tuple names the mistake instead.
    """

    def __new__(cls, model, scheduler):
        return super().__new__(cls, (model, scheduler))

    @property
    def model(self):
        return self[0]

    @property
    def scheduler(self):
        return self[1]

    def __getattr__(self, name):
        raise AttributeError(
            f"tfee.compress.pruning_plan returns (model, scheduler), not a "
            f"model, so it has no {name!r}: unpack it, `pruned, scheduler = "
            "tfee.compress.pruning_plan(...)`, and pass the scheduler to "
            "fit(callbacks=[scheduler]) (unlike tfmot, tfee's plan needs it)."
        )


def prune_low_magnitude(network, sparsity, **kwargs):
    """Deprecated: `pruning_plan`, the same call (it returns (model,
    scheduler), unlike tfmot's function of this name)."""
    _checks.warn_renamed(
        "tfee.compress.prune_low_magnitude", "tfee.compress.pruning_plan"
    )
    return pruning_plan(network, sparsity, **kwargs)


def prune(
    network,
    train_data,
    sparsity=0.8,
    *,
    scope="global",
    order="together",
    schedule=None,
    epochs=2,
    steps_per_epoch=None,
    optimizer=None,
    loss=None,
    validation_data=None,
    callbacks=(),
    verbose="auto",
):
    """Prunes an early-exit network with fine-tuning; returns it stripped.

    Görmez & Koyuncu (2022): unstructured magnitude pruning in rounds of
    (prune a fraction of the remaining weights, fine-tune), one global
    threshold, heads and backbone "together" or "ordered".

    Args:
      network: a trained tfee early-exit network (left unchanged; it can serve
        as the dense baseline afterwards).
      train_data: a finite tf.data.Dataset of (images, labels) batches.
      sparsity: the target; see `pruning_plan`.
      scope: "global", "layer" or "section".
      order: "together" or "ordered" (each phase then trains `epochs` epochs).
      schedule: a `tfee.compress.Schedule` per phase (default: one round per
        epoch, `Rounds(epochs, steps_per_epoch)`).
      epochs: fine-tuning epochs per phase.
      steps_per_epoch: batches per epoch, when `train_data` cannot tell.
      optimizer: an optimizer or its name (default Adam 1e-4).
      loss: `compile` losses (default `tfee.losses.joint(network)`, uniform).
      validation_data: passed to `fit`.
      callbacks: more Keras callbacks (e.g. BackupAndRestore; a
        `keras.callbacks.History()` keeps the fit history).
      verbose: passed to `fit`.

    Returns:
      The pruned Keras model, stripped of tfmot's wrappers (a copy: pruned
      weights are zero). `tfee.compress.sparsity_report(pruned)` measures
      what it reached; `tfee.compress.cluster(pruned, ...)` continues from it.

    Raises:
      ValueError / TypeError: see `pruning_plan`; a schedule longer
        than the training.

    Example:
      >>> pruned = tfee.compress.prune(net, train_ds, 0.8, order="ordered")
      >>> print(tfee.compress.sparsity_report(pruned).table())
    """
    api = "tfee.compress.prune"
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(
            f"{api}: `epochs` must be a positive integer. Received: epochs={epochs!r}"
        )
    steps = _steps_per_epoch(train_data, steps_per_epoch, api)
    phase_steps = epochs * steps
    if schedule is None:
        schedule = Rounds(rounds=epochs, steps_per_round=steps)
    if isinstance(schedule, Schedule) and (
        schedule.length is not None and schedule.length > phase_steps
    ):
        raise ValueError(
            f"{api}: the schedule needs {schedule.length} steps but a phase trains "
            f"{phase_steps} ({epochs} epochs x {steps} steps). Received: "
            f"schedule={schedule!r}"
        )
    pruned, scheduler = pruning_plan(
        network,
        sparsity,
        scope=scope,
        order=order,
        schedule=schedule,
        phase_steps=phase_steps,
        batch_norm_data=train_data,
    )
    if optimizer is None:
        optimizer = keras.optimizers.Adam(1e-4)
    pruned.compile(
        optimizer=optimizer,
        loss=loss if loss is not None else training.losses.joint(pruned),
    )
    total = epochs * (2 if order == "ordered" else 1)
    pruned.fit(
        train_data,
        epochs=total,
        steps_per_epoch=steps_per_epoch,
        validation_data=validation_data,
        callbacks=[scheduler, *callbacks],
        verbose=verbose,
    )
    return strip(pruned)
