"""Compressing early-exit networks: pruning and section-wise clustering (tfmot)."""

from tfee.compress import scopes
from tfee.compress.callbacks import Phase
from tfee.compress.callbacks import PruningScheduler
from tfee.compress.callbacks import UpdatePruningStep
from tfee.compress.prune import PruningResult
from tfee.compress.prune import prune
from tfee.compress.prune import prune_low_magnitude
from tfee.compress.prune import prune_low_magnitude_sections
from tfee.compress.prune import strip
from tfee.compress.schedules import ConstantSparsity
from tfee.compress.schedules import PolynomialDecay
from tfee.compress.schedules import Rounds
from tfee.compress.schedules import Schedule
from tfee.compress.sparsity import SparsityReport
from tfee.compress.sparsity import gzip_bytes
from tfee.compress.sparsity import sparsity_report

__all__ = [
    "ConstantSparsity",
    "Phase",
    "PolynomialDecay",
    "PruningResult",
    "PruningScheduler",
    "Rounds",
    "Schedule",
    "SparsityReport",
    "UpdatePruningStep",
    "gzip_bytes",
    "prune",
    "prune_low_magnitude",
    "prune_low_magnitude_sections",
    "scopes",
    "sparsity_report",
    "strip",
]
