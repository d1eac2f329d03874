"""Exit policies: when a sample may leave at an exit.

A policy answers, exit by exit, which samples leave. Three kinds:

  - `ThresholdPolicy`: leave at the first exit whose confidence under a rule
    (max softmax, normalised entropy, margin, learned) reaches that exit's
    threshold (SDN, BranchyNet, PTEENet, MSDNet's budgeted thresholds).
  - `PatiencePolicy`: leave once `patience` consecutive exits agree on the
    class (PABEE, Zhou et al., 2020).
  - `DecisionPolicy`: a learned decision: per exit, a logistic model over
    that exit's and the earlier exits' signals (`tfee.rules.decision_step`:
    confidences, agreement with the exits' running ensemble, patience's
    streak), thresholded (EENet, Ilhan et al. 2023; ZTW's ensemble as a
    signal). `tfee.calibrate(..., rule="decision")` fits and calibrates it.

Every policy works two ways that give the same answer: vectorised over cached
per-exit outputs (`exit_indices`, for evaluation and calibration), and
streaming, one exit at a time (`initial_state` / `update`, for runtimes that
stop computing once a sample has left). The deepest exit takes every sample
still there. NaN or infinite confidences (or logits) never let a sample leave.

The base class and each kind live in modules of their own (`base_policy`,
`threshold_policy`, `patience_policy`, `decision_policy`; whether a policy
fits a network in `compatibility`); this module holds the table of kinds a saved
policy may name (`KINDS`).
"""

from tfee.policy.decision_policy import DecisionPolicy
from tfee.policy.patience_policy import PatiencePolicy
from tfee.policy.threshold_policy import ThresholdPolicy

__all__ = ["KINDS"]

# The kinds a saved policy may name in its "type" (`Policy.from_dict`).
KINDS = (ThresholdPolicy, PatiencePolicy, DecisionPolicy)
