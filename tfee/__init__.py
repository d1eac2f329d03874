"""tfee: early-exit networks for tf_keras, from training to TFLite.

The public API is re-exported here, one name per line; nothing private is
reachable from this namespace. `tfee.tuning` (keras-tuner) is imported on
demand, `import tfee.tuning`, because keras-tuner loads Keras 3 as well.
"""

# Sets TF_USE_LEGACY_KERAS before TensorFlow loads Keras.
from tfee import _keras  # noqa: F401
from tfee import backbones
from tfee import compress
from tfee import cost
from tfee import data
from tfee import export
from tfee import layers
from tfee import policy
from tfee import recipes
from tfee import report
from tfee import rules
from tfee import runtime
from tfee import training
from tfee._keras import keras
from tfee._keras import tf
from tfee._keras import tfmot
from tfee.flatten import flatten_model
from tfee.input_normalisation import include_normalisation
from tfee.input_normalisation import included_normalisation
from tfee.keras3 import from_keras3
from tfee.network import attach_exits
from tfee.network import detach_exits
from tfee.placement import FlopsFractions
from tfee.placement import Layers
from tfee.placement import Placement
from tfee.placement import PTEENet
from tfee.policy import DecisionPolicy
from tfee.policy import PatiencePolicy
from tfee.policy import ThresholdPolicy
from tfee.policy import calibrate
from tfee.policy import collect_outputs
from tfee.policy import evaluate
from tfee.policy import exit_accuracy
from tfee.policy import load_policy
from tfee.policy import oracle
from tfee.runtime import Cascade
from tfee.runtime import CascadeResult
from tfee.runtime import DynamicPredictor
from tfee.saving import load_model
from tfee.stages import stage_models
from tfee.structure import ExitInfo
from tfee.structure import Section
from tfee.structure import Structure
from tfee.structure import exits
from tfee.structure import is_early_exit
from tfee.structure import read_structure
from tfee.structure import sections
from tfee.training import Distiller
from tfee.training import EENet
from tfee.training import callbacks
from tfee.training import losses
from tfee.version import __version__

__all__ = [
    "Cascade",
    "CascadeResult",
    "DynamicPredictor",
    "Distiller",
    "EENet",
    "ExitInfo",
    "FlopsFractions",
    "Layers",
    "PTEENet",
    "DecisionPolicy",
    "PatiencePolicy",
    "Placement",
    "Section",
    "Structure",
    "ThresholdPolicy",
    "__version__",
    "attach_exits",
    "backbones",
    "calibrate",
    "callbacks",
    "collect_outputs",
    "compress",
    "cost",
    "data",
    "detach_exits",
    "evaluate",
    "exit_accuracy",
    "exits",
    "flatten_model",
    "include_normalisation",
    "included_normalisation",
    "export",
    "is_early_exit",
    "keras",
    "layers",
    "load_model",
    "from_keras3",
    "load_policy",
    "losses",
    "oracle",
    "policy",
    "recipes",
    "report",
    "read_structure",
    "rules",
    "runtime",
    "sections",
    "stage_models",
    "tf",
    "tfmot",
    "training",
]

# Private modules stay out of the public namespace (they remain importable).
del _checks, _files, _flatbuffer, _graph, _keras, _macs, _tfmot  # noqa: F821
