"""Compressing early-exit networks: pruning, section-wise clustering and
cluster-preserving quantization-aware training (tfmot)."""

from tfee.compress import scopes
from tfee.compress.batch_norm import reestimate_batch_norm
from tfee.compress.callbacks import Phase
from tfee.compress.callbacks import PruningScheduler
from tfee.compress.callbacks import UpdatePruningStep
from tfee.compress.clustering import ClusteringPhase
from tfee.compress.clustering import ClusteringPlan
from tfee.compress.clustering import cluster
from tfee.compress.clustering import cluster_weights
from tfee.compress.clustering import clustering_stages
from tfee.compress.clustering import parse_clusters
from tfee.compress.fold import fold_batch_norm
from tfee.compress.pruning import PruningPlan
from tfee.compress.pruning import prune
from tfee.compress.pruning import prune_low_magnitude  # noqa: F401  (old name)
from tfee.compress.pruning import pruning_plan
from tfee.compress.qat import ExitHeadQuantizeConfig
from tfee.compress.qat import is_quantization_aware
from tfee.compress.qat import quantization_aware_training
from tfee.compress.qat import quantize_preserving_clusters
from tfee.compress.schedules import ConstantSparsity
from tfee.compress.schedules import PolynomialDecay
from tfee.compress.schedules import Rounds
from tfee.compress.schedules import Schedule
from tfee.compress.sparsity import SparsityReport
from tfee.compress.sparsity import gzip_bytes
from tfee.compress.sparsity import sparsity_report
from tfee.compress.stripping import strip

__all__ = [
    "ExitHeadQuantizeConfig",
    "is_quantization_aware",
    "ClusteringPhase",
    "ClusteringPlan",
    "cluster",
    "cluster_weights",
    "clustering_stages",
    "fold_batch_norm",
    "ConstantSparsity",
    "Phase",
    "PolynomialDecay",
    "PruningPlan",
    "PruningScheduler",
    "Rounds",
    "Schedule",
    "SparsityReport",
    "UpdatePruningStep",
    "gzip_bytes",
    "prune",
    "parse_clusters",
    "pruning_plan",
    "quantization_aware_training",
    "quantize_preserving_clusters",
    "reestimate_batch_norm",
    "scopes",
    "sparsity_report",
    "strip",
]

# Private modules stay out of the public namespace (they remain importable).
del _copy  # noqa: F821
