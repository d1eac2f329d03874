"""tfee: early-exit networks for tf_keras, from training to TFLite.

The public API is re-exported here, one name per line; nothing private is
reachable from this namespace.
"""

from tfee import (  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
    _keras,
)
from tfee import backbones
from tfee import cost
from tfee import data
from tfee import layers
from tfee import training
from tfee._keras import keras
from tfee._keras import tf
from tfee._keras import tfmot
from tfee.network import ExitInfo
from tfee.network import Section
from tfee.network import attach_exits
from tfee.network import detach_exits
from tfee.network import exits
from tfee.network import is_early_exit
from tfee.network import sections
from tfee.placement import FlopsFractions
from tfee.placement import Layers
from tfee.placement import Placement
from tfee.placement import PTEENet
from tfee.stages import stage_models
from tfee.training import callbacks
from tfee.training import losses
from tfee.version import __version__

__all__ = [
    "ExitInfo",
    "FlopsFractions",
    "Layers",
    "PTEENet",
    "Placement",
    "Section",
    "__version__",
    "attach_exits",
    "backbones",
    "callbacks",
    "cost",
    "data",
    "detach_exits",
    "exits",
    "is_early_exit",
    "keras",
    "tf",
    "tfmot",
    "layers",
    "losses",
    "sections",
    "stage_models",
    "training",
]

# Private modules stay out of the public namespace (they remain importable).
del _graph, _keras  # noqa: F821
