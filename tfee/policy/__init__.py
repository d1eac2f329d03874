"""Exit policies, their evaluation from cached outputs, the oracle, calibration."""

from tfee.policy.accuracy import ExitAccuracy
from tfee.policy.accuracy import exit_accuracy
from tfee.policy.base_policy import Policy
from tfee.policy.base_policy import load_policy
from tfee.policy.calibration import Front
from tfee.policy.calibration import FrontPoint
from tfee.policy.calibration import UnreachableTargetWarning
from tfee.policy.calibration import calibrate
from tfee.policy.calibration import front
from tfee.policy.costs import ExitCosts
from tfee.policy.decision_policy import DecisionPolicy
from tfee.policy.ensemble import ExitEnsemble
from tfee.policy.evaluation import Evaluation
from tfee.policy.evaluation import evaluate
from tfee.policy.evaluation import oracle
from tfee.policy.evaluation import oracle_exit_indices
from tfee.policy.evaluation import oracle_macs_at_accuracy
from tfee.policy.outputs import ExitOutputs
from tfee.policy.outputs import collect_outputs
from tfee.policy.patience_policy import PatiencePolicy
from tfee.policy.threshold_policy import ThresholdPolicy
from tfee.rules import RULES

__all__ = [
    "Evaluation",
    "ExitEnsemble",
    "ExitAccuracy",
    "ExitCosts",
    "ExitOutputs",
    "Front",
    "FrontPoint",
    "DecisionPolicy",
    "PatiencePolicy",
    "Policy",
    "RULES",
    "ThresholdPolicy",
    "UnreachableTargetWarning",
    "calibrate",
    "collect_outputs",
    "evaluate",
    "exit_accuracy",
    "front",
    "load_policy",
    "oracle",
    "oracle_exit_indices",
    "oracle_macs_at_accuracy",
]

# Private modules stay out of the public namespace (they remain importable).
del _thresholds  # noqa: F821
