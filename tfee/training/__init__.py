"""Training early-exit networks with model.fit: losses, callbacks, wrappers."""

from tfee.training import callbacks
from tfee.training import losses
from tfee.training.distillation import Distiller
from tfee.training.distillation import distillation_loss
from tfee.training.eenet import EENet
from tfee.training.eenet import eenet_loss
from tfee.training.eenet import exit_costs
from tfee.training.recipes import MODES
from tfee.training.recipes import exit_accuracies
from tfee.training.recipes import fit

__all__ = [
    "Distiller",
    "EENet",
    "MODES",
    "callbacks",
    "distillation_loss",
    "eenet_loss",
    "exit_accuracies",
    "exit_costs",
    "fit",
    "losses",
]
