"""Keras callbacks that drive early-exit training schedules."""

import sys
import warnings

import numpy as np

from tfee import naming
from tfee._keras import keras
from tfee.training.losses import SDN_MAX_WEIGHTS
from tfee.training.losses import ExitCrossEntropy

__all__ = ["SDNRamp"]


class SDNRamp(keras.callbacks.Callback):
    """Ramps internal exits' loss weights linearly, as Shallow-Deep Networks do.

    At the start of epoch e, internal exit k gets weight
    min(max_k, 0.01 + e * max_k / ramp_epochs); the deepest exit keeps its
    weight. Works with the losses from `tfee.losses.joint(net, "sdn")` and
    with `tfee.Distiller(net, weights="sdn")`, and resumes correctly under
    BackupAndRestore because it depends only on e.

    Because the weights change, `loss` and `val_loss` are not comparable
    across epochs: a callback that keeps the "best" epoch by them keeps an
    early, barely weighted one. The ramp therefore logs, every epoch,
    `mean_exit_loss` (the unweighted cross-entropy averaged over the exits,
    and `val_mean_exit_loss`) and `mean_exit_accuracy` where exit accuracies
    are logged, for callbacks listed after it to monitor; and it warns when
    an EarlyStopping, ModelCheckpoint or ReduceLROnPlateau monitors `loss`
    or `val_loss`.

    Args:
      max_weights: final weights of the internal exits, shallowest first
        (default SDN's 0.15, 0.30, ..., spread evenly when there are not 6).
      ramp_epochs: epochs to reach them (default: the fit's `epochs`).

    Example:
      >>> net.fit(train, epochs=30, callbacks=[tfee.callbacks.SDNRamp()])
    """

    def __init__(self, max_weights=None, ramp_epochs=None):
        super().__init__()
        if ramp_epochs is not None and (
            not isinstance(ramp_epochs, int) or ramp_epochs < 1
        ):
            raise ValueError(
                "SDNRamp: `ramp_epochs` must be a positive integer or None. "
                f"Received: ramp_epochs={ramp_epochs!r}"
            )
        self.max_weights = None if max_weights is None else tuple(max_weights)
        self.ramp_epochs = ramp_epochs

    def _named_weights(self):
        """[(exit name, its weight variable, whether its logged loss is
        weighted)], shallowest first: the joint loss's `ExitCrossEntropy`
        weights, or a `tfee.Distiller`'s `exit_weights`."""
        wrapper_weights = getattr(self.model, "exit_weights", None)
        if wrapper_weights is not None:
            names = self.model._exit_names  # noqa: SLF001 (tfee's own wrapper)
            return [(n, w, False) for n, w in zip(names, wrapper_weights)]
        losses = self.model.loss if isinstance(self.model.loss, dict) else {}
        # Output names may be tfmot-wrapped (prune_low_magnitude_exit_2).
        named = [
            (naming.exit_number(name), name, loss)
            for name, loss in losses.items()
            if naming.exit_number(name) and isinstance(loss, ExitCrossEntropy)
        ]
        named.sort(key=lambda item: item[0])
        if not named:
            raise ValueError(
                "SDNRamp needs the model compiled with tfee.losses.joint(...) losses "
                "or a tfee.Distiller; received loss="
                f"{getattr(self.model, 'loss', None)!r}"
            )
        return [(name, loss.weight, True) for _, name, loss in named]

    def _targets(self, count):
        if self.max_weights is not None:
            if len(self.max_weights) != count:
                raise ValueError(
                    f"SDNRamp: `max_weights` needs one weight per internal exit "
                    f"({count}). Received: {len(self.max_weights)}"
                )
            return self.max_weights
        if count == len(SDN_MAX_WEIGHTS):
            return SDN_MAX_WEIGHTS
        return tuple(0.9 * (k + 1) / count for k in range(count))

    def on_epoch_begin(self, epoch, logs=None):
        internal = [weight for _, weight, _ in self._named_weights()[:-1]]
        ramp = self.ramp_epochs or self.params.get("epochs") or 1
        for weight, target in zip(internal, self._targets(len(internal))):
            weight.assign(min(target, 0.01 + epoch * target / ramp))

    def on_train_begin(self, logs=None):
        # Keras gives a callback no handle on its siblings; the CallbackList
        # calling this method holds them (tf_keras: `callbacks` attribute).
        caller = sys._getframe(1).f_locals.get("self")
        for callback in getattr(caller, "callbacks", ()):
            monitor = getattr(callback, "monitor", None)
            if monitor in RAMPED_LOSSES and isinstance(callback, _MONITORING):
                warnings.warn(
                    f"tfee.callbacks.SDNRamp: {type(callback).__name__} monitors "
                    f"{monitor!r}, which the ramp re-weights every epoch, so its "
                    "'best' epoch is an early one. Monitor "
                    f"'{monitor.replace('loss', 'mean_exit_loss')}' (logged by "
                    "SDNRamp; list the callback after it) or an exit's accuracy.",
                    stacklevel=2,
                )

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        named = self._named_weights()
        for prefix in ("", "val_"):
            unweighted = [
                logs[f"{prefix}{name}_loss"] / (float(weight.numpy()) if scaled else 1)
                for name, weight, scaled in named
                if f"{prefix}{name}_loss" in logs
                and (not scaled or float(weight.numpy()) > 0)
            ]
            if len(unweighted) == len(named):
                logs[f"{prefix}mean_exit_loss"] = float(np.mean(unweighted))
            accuracies = [
                logs[f"{prefix}{name}_accuracy"]
                for name, _, _ in named
                if f"{prefix}{name}_accuracy" in logs
            ]
            if len(accuracies) == len(named):
                logs[f"{prefix}mean_exit_accuracy"] = float(np.mean(accuracies))


# The logged losses the ramp re-weights, and the callbacks that keep a "best".
RAMPED_LOSSES = ("loss", "val_loss")
_MONITORING = (
    keras.callbacks.EarlyStopping,
    keras.callbacks.ModelCheckpoint,
    keras.callbacks.ReduceLROnPlateau,
)
