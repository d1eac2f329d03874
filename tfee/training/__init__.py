"""Training early-exit networks with model.fit: losses, callbacks, wrappers.

Joint training (BranchyNet's fixed weights, SDN's ramp) is a plain
`compile(loss=tfee.losses.joint(net, ...))`; losses that need every exit at
once are `keras.Model` wrappers that train the network in place: `EENet`
(cost-aware loss with learned confidences) and `Distiller` (knowledge
distillation). Either way the logs hold `exit_k_accuracy` (and
`val_exit_k_accuracy`), so Keras callbacks work as usual:

- `EarlyStopping(monitor="val_exit_2_accuracy", mode="max")`.
- `ModelCheckpoint("net.keras")`: on a compiled network as usual; on a
  wrapper it saves the network the wrapper trains (`load_model` returns it),
  and `save_weights_only=True` saves the wrapper's weights.
- `BackupAndRestore(dir)`: an interrupted `fit` resumes at the next epoch
  with its weights; `SDNRamp` recomputes its weights from the epoch.
- `TensorBoard(log_dir)`: TF 2.21 no longer installs the `tensorboard`
  package and `tf.summary.scalar` then fails ("TensorBoard is not
  installed"); `pip install tensorboard` to use it.
- `tf.distribute`: build the network and the wrapper inside
  `strategy.scope()`; the wrappers scale their loss by the replica count as
  Keras does.
"""

from tfee.training import callbacks
from tfee.training import losses
from tfee.training.distillation import Distiller
from tfee.training.distillation import distillation_loss
from tfee.training.eenet import EENet
from tfee.training.eenet import eenet_loss
from tfee.training.eenet import exit_costs

__all__ = [
    "Distiller",
    "EENet",
    "callbacks",
    "distillation_loss",
    "eenet_loss",
    "exit_costs",
    "losses",
]

# The loss wrapper's module is private; importing it bound it here.
del _wrapper  # noqa: F821
