"""Keras callbacks that drive pruning inside `model.fit`.

`PruningScheduler` runs a pruning plan: phases (for example "backbone first,
then heads"), each pruning groups of layers to their targets on a tfee
schedule, with one magnitude threshold per group re-derived at every pruning
step. `UpdatePruningStep` is a drop-in for tfmot's callback that also works
when pruning wrappers are added in a later phase.
"""

import dataclasses
import warnings

import numpy as np

from tfee._keras import keras
from tfee._keras import tf
from tfee._keras import tfmot
from tfee.compress.batch_norm import batch_norm_layers
from tfee.compress.batch_norm import reestimate_batch_norm

__all__ = ["Phase", "PruningScheduler", "UpdatePruningStep", "pruning_wrappers"]

from tfee._tfmot import NamedOnLoad  # noqa: E402
from tfee._tfmot import PruneLowMagnitude as _Wrapper  # noqa: E402


def pruning_wrappers(model):
    """Every tfmot pruning wrapper in `model`, nested models included."""
    found = []
    for layer in model.layers:
        if isinstance(layer, _Wrapper):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(pruning_wrappers(layer))
    return found


def _name(layer):
    """The name of the layer inside a pruning wrapper (plans use these)."""
    return layer.layer.name if isinstance(layer, _Wrapper) else layer.name


_UNDRIVEN = (
    "tfee.compress.pruning_plan: this pruned model prunes only while its "
    "PruningScheduler runs: pass the scheduler it returned, fit(callbacks="
    "[scheduler]). Without it (tfmot's or tfee's UpdatePruningStep alone) no "
    "weight would ever be pruned and the model would stay at 0% sparsity. "
    "Received: a training step with no PruningScheduler in fit's callbacks"
)


@keras.utils.register_keras_serializable(package="tfee", name="ControlledSparsity")
class _ControlledSparsity(tfmot.sparsity.keras.PruningSchedule):
    """A tfmot schedule whose decision and target are variables that
    `PruningScheduler` sets from Python, so no retracing is needed.

    `driven` is set while the scheduler runs (and after its plan has ended):
    a training step without it fails instead of silently never pruning.
    The schedule saves with the model (`get_config`), so a model saved in
    the middle of a plan loads under `tfmot.sparsity.keras.prune_scope()`
    and resumes with its scheduler.
    """

    def __init__(self):
        self.prune_now = tf.Variable(False, trainable=False, name="prune_now")
        self.target = tf.Variable(0.0, trainable=False, name="target_sparsity")
        self.driven = tf.Variable(False, trainable=False, name="driven")

    def __call__(self, step):
        return tf.identity(self.prune_now), tf.identity(self.target)

    def get_config(self):
        return {"class_name": "tfee>ControlledSparsity", "config": {}}


@keras.utils.register_keras_serializable(package="tfee", name="PruneLowMagnitude")
class PruneLowMagnitude(NamedOnLoad, _Wrapper):
    """tfmot's pruning wrapper, under a `_ControlledSparsity` schedule, that
    refuses a training step while no `PruningScheduler` drives it. tfmot
    names a wrapper after its class, so this one keeps tfmot's class name
    (and its layers tfmot's names, prune_low_magnitude_<layer>).

    The check runs before the wrapper's own updates (its step counter and
    masks) and before the forward pass, so a refused step changes nothing.
    """

    def add_weight(self, name=None, *args, **kwargs):
        # tfmot names every prunable weight's mask "mask" (and "threshold"):
        # a head with a logits and a confidence kernel gets two of each, and
        # .h5 saving, which keys weights by name, fails with "name already
        # exists". Numbered names keep them apart (.keras and .h5 loading
        # match weights by position, so older files still load).
        taken = {weight.name.split("/")[-1].split(":")[0] for weight in self.weights}
        unique, number = name, 1
        while name is not None and unique in taken:
            unique, number = f"{name}_{number}", number + 1
        return super().add_weight(unique, *args, **kwargs)

    def call(self, inputs, training=None, **kwargs):
        if training is None:
            training = keras.backend.learning_phase()

        def check():
            assertion = tf.debugging.Assert(self.pruning_schedule.driven, [_UNDRIVEN])
            with tf.control_dependencies([assertion]):
                return tf.no_op()

        guard = tf.__internal__.smart_cond.smart_cond(training, check, tf.no_op)
        with tf.control_dependencies([guard] if guard is not None else []):
            return super().call(inputs, training=training, **kwargs)


def planned_pruning(layer):
    """`layer` in a pruning wrapper that only a `PruningScheduler` prunes."""
    return PruneLowMagnitude(layer, pruning_schedule=_ControlledSparsity())


def _controlled_schedules(model):
    return [
        w.pruning_schedule
        for w in pruning_wrappers(model)
        if isinstance(w.pruning_schedule, _ControlledSparsity)
    ]


class UpdatePruningStep(keras.callbacks.Callback):
    """tfmot's `UpdatePruningStep`, fixed for wrappers added in a later phase.

    tfmot's callback initialises the pruning step only when the FIRST wrapper
    is still at -1, so wrappers added after a first `fit` stay at -1 and
    training fails with "Prune() wrapper requires the UpdatePruningStep
    callback". This one brings every uninitialised wrapper to the step of the
    others (0 for a fresh model) and re-applies the masks after each epoch.

    Example:
      >>> model.fit(train_ds, epochs=2, callbacks=[tfee.compress.UpdatePruningStep()])
    """

    def on_train_begin(self, logs=None):
        wrappers = pruning_wrappers(self.model)
        steps = [int(keras.backend.get_value(w.pruning_step)) for w in wrappers]
        start = max([s for s in steps if s >= 0], default=0)
        keras.backend.batch_set_value(
            [(w.pruning_step, start) for w, s in zip(wrappers, steps) if s < 0]
        )

    def _remask(self):
        for wrapper in pruning_wrappers(self.model):
            wrapper.pruning_obj.weight_mask_op()

    def on_epoch_end(self, epoch, logs=None):
        self._remask()

    def on_train_end(self, logs=None):
        self._remask()


@dataclasses.dataclass(frozen=True)
class Phase:
    """One phase of a pruning plan.

    Attributes:
      groups: the `tfee.compress.scopes.Group`s pruned in this phase.
      schedule: a `tfee.compress.Schedule`; its steps count from `start_step`.
      start_step: the training step (batch) at which the phase begins.
      frozen: layer names made non-trainable during the phase (layers the
        caller froze stay frozen in every phase).
      loss_weights: {exit name: weight} set on `ExitCrossEntropy` losses for
        the phase (the others return to their compiled weight).
    """

    groups: tuple
    schedule: object
    start_step: int = 0
    frozen: tuple = ()
    loss_weights: dict = None


class PruningScheduler(UpdatePruningStep):
    """Runs a pruning plan inside `fit`; made by `tfee.compress.pruning_plan`.

    At each pruning step of a phase's schedule, every group gets one
    magnitude threshold over its layers' current weights such that the group
    reaches the schedule's sparsity, and each layer's tfmot wrapper prunes to
    the share of its weights under that threshold (for a one-layer group
    this is tfmot's own per-layer pruning). When a phase starts, its layers
    are frozen or unfrozen and its loss weights set, and the train function
    is retraced. The plan's position comes from the wrappers' pruning steps,
    which checkpoints and `keras.callbacks.BackupAndRestore` save, so an
    interrupted run resumes where it stopped.

    Args:
      phases: a list of `Phase`, by increasing `start_step`.
      batch_norm_data: images from which every BatchNormalization layer's
        statistics are re-estimated when a later phase begins (its frozen
        layers would keep statistics of weights pruned away) and when
        training ends (the moving averages lag behind weights that a
        pruning step just changed), or None.

    Example:
      >>> pruned, scheduler = tfee.compress.pruning_plan(net, 0.8)
      >>> pruned.compile("adam", loss=tfee.losses.joint(pruned))
      >>> pruned.fit(train_ds, epochs=4, callbacks=[scheduler])
    """

    def __init__(self, phases, batch_norm_data=None):
        super().__init__()
        phases = list(phases)
        if not phases or not all(isinstance(p, Phase) for p in phases):
            raise ValueError(
                "tfee.compress.PruningScheduler: `phases` must be a non-empty list "
                f"of Phase. Received: phases={phases!r}"
            )
        starts = [p.start_step for p in phases]
        if starts != sorted(starts):
            raise ValueError(
                "tfee.compress.PruningScheduler: phases must be ordered by "
                f"start_step. Received start steps: {starts}"
            )
        self.phases = phases
        self.batch_norm_data = batch_norm_data
        self._step = None
        self._original_trainable = None
        self._compiled_weights = None
        self._pending = []
        self._phase = None

    # -- state ----------------------------------------------------------------
    def on_train_begin(self, logs=None):
        executions = getattr(self.model, "_steps_per_execution", None)
        if executions is not None and int(keras.backend.get_value(executions)) != 1:
            # Keras calls batch callbacks once per execution: the plan would
            # count one step where several ran and miss its round boundaries.
            raise ValueError(
                "tfee.compress.PruningScheduler: the plan prunes at batch "
                "boundaries, which compile(steps_per_execution=N > 1) hides; "
                "compile with steps_per_execution=1. Received: "
                f"steps_per_execution={int(keras.backend.get_value(executions))}"
            )
        super().on_train_begin(logs)
        for schedule in _controlled_schedules(self.model):
            schedule.driven.assign(True)
        if self._original_trainable is None:
            self._original_trainable = {
                _name(layer): layer.trainable for layer in self.model.layers
            }
        optimizer = self.model.optimizer
        if isinstance(optimizer, keras.optimizers.Optimizer) and not getattr(
            optimizer, "_built", False
        ):
            # Later phases unfreeze variables; the optimizer must know them all.
            optimizer.build(
                [
                    v
                    for layer in self.model.layers
                    if self._original_trainable.get(_name(layer))
                    for v in layer.trainable_weights
                ]
            )
        self._step, self._phase = None, None

    def _current_step(self):
        wrappers = pruning_wrappers(self.model)
        return max(
            (int(keras.backend.get_value(w.pruning_step)) for w in wrappers), default=0
        )

    def _enter(self, phase):
        frozen = set(phase.frozen)
        changed = False
        for layer in self.model.layers:
            name = _name(layer)
            wanted = self._original_trainable.get(name, layer.trainable) and (
                name not in frozen
            )
            if layer.trainable != wanted:
                layer.trainable = wanted
                changed = True
        self._set_loss_weights(phase.loss_weights or {})
        if self.batch_norm_data is not None and phase is not self.phases[0]:
            self._reestimate()
        if changed:
            self.model.train_function = self.model.make_train_function(force=True)
        self._phase = phase

    def _set_loss_weights(self, weights):
        losses = self.model.loss if isinstance(self.model.loss, dict) else {}
        if self._compiled_weights is None:
            self._compiled_weights = {
                name: float(keras.backend.get_value(loss.weight))
                for name, loss in losses.items()
                if isinstance(getattr(loss, "weight", None), tf.Variable)
            }
        missing = [n for n in weights if n not in self._compiled_weights]
        if missing:
            raise ValueError(
                "tfee.compress.PruningScheduler: this phase sets loss weights for "
                f"{missing}, which needs the model compiled with "
                "`loss=tfee.losses.joint(model)` (one ExitCrossEntropy per exit). "
                f"Received compiled losses: {self.model.loss!r}"
            )
        for name, value in self._compiled_weights.items():
            losses[name].weight.assign(weights.get(name, value))

    def _phase_at(self, step):
        active = None
        for phase in self.phases:
            if phase.start_step <= step:
                active = phase
        return active

    # -- pruning ----------------------------------------------------------------
    def _prune_group(self, group, sparsity):
        by_name = {w.layer.name: w for w in pruning_wrappers(self.model)}
        missing = [name for name in group.layers if name not in by_name]
        if missing:
            raise ValueError(
                f"tfee.compress.PruningScheduler: layers {missing} have no pruning "
                "wrapper; the scheduler runs only on the model that "
                "tfee.compress.pruning_plan returned with it."
            )
        wrappers = [by_name[name] for name in group.layers]
        for wrapper in wrappers:
            if not isinstance(wrapper.pruning_schedule, _ControlledSparsity):
                raise ValueError(
                    "tfee.compress.PruningScheduler: layer "
                    f"'{wrapper.name}' is not wrapped by "
                    "tfee.compress.pruning_plan."
                )
        magnitudes = [
            np.abs(keras.backend.get_value(weight)).ravel()
            for wrapper in wrappers
            for weight, _, _ in wrapper.pruning_vars
        ]
        everything = np.concatenate(magnitudes)
        keep = max(int(round(everything.size * (1.0 - sparsity))), 1)
        threshold = np.partition(everything, everything.size - keep)[
            everything.size - keep
        ]
        for wrapper in wrappers:
            values = np.concatenate(
                [
                    np.abs(keras.backend.get_value(w)).ravel()
                    for w, _, _ in wrapper.pruning_vars
                ]
            )
            layer_sparsity = 1.0 - np.count_nonzero(values >= threshold) / values.size
            schedule = wrapper.pruning_schedule
            schedule.target.assign(min(max(layer_sparsity, 0.0), 1.0))
            schedule.prune_now.assign(True)
            self._pending.append(schedule)

    def on_train_batch_begin(self, batch, logs=None):
        if self._step is None:
            self._step = self._current_step()
            phase = self._phase_at(self._step)
            if phase is not None:
                self._enter(phase)
        phase = self._phase_at(self._step)
        if phase is not None and phase is not self._phase:
            self._enter(phase)
        for phase in self.phases:
            local = self._step - phase.start_step
            if local < 0:
                continue
            for group in phase.groups:
                sparsity = phase.schedule.sparsity(local, group.target)
                if sparsity is not None:
                    self._prune_group(group, sparsity)

    def on_train_batch_end(self, batch, logs=None):
        for schedule in self._pending:
            schedule.prune_now.assign(False)
        self._pending = []
        self._step += 1

    def pruning_steps(self):
        """Steps until the plan's last pruning step has run (None: no end)."""
        last = self.phases[-1]
        final = last.schedule.last_step
        return None if final is None else last.start_step + final + 1

    def on_train_end(self, logs=None):
        super().on_train_end(logs)
        needed = self.pruning_steps()
        # Once the plan has ended, training on without the scheduler keeps
        # the masks; before, it would silently stop pruning.
        finished = needed is not None and self._current_step() >= needed
        for schedule in _controlled_schedules(self.model):
            schedule.driven.assign(finished)
        if self._step is not None and needed is not None and self._step < needed:
            warnings.warn(
                f"tfee.compress.PruningScheduler: fit ended after {self._step} "
                f"steps but the pruning plan prunes until step {needed} (phases "
                f"start at {[p.start_step for p in self.phases]}): the network "
                "has not reached its target sparsity. Train longer (more "
                "epochs; an interrupted plan resumes), or shorten the schedule.",
                stacklevel=2,
            )
        if self._original_trainable is not None:
            for layer in self.model.layers:
                layer.trainable = self._original_trainable.get(
                    _name(layer), layer.trainable
                )
        if self._compiled_weights:
            self._set_loss_weights({})
        if self.batch_norm_data is not None and batch_norm_layers(self.model):
            self._reestimate()

    def _reestimate(self):
        """BN statistics of the weights as they now are; the layers the
        caller froze keep theirs (they never change)."""
        reestimate_batch_norm(
            self.model, self.batch_norm_data, keep=getattr(self, "frozen", ())
        )
