"""Whether a policy fits a network: its exit count, learned confidences,
ensemble classes and fingerprint (the network it was calibrated on)."""

from tfee.policy.base_policy import Policy

__all__ = [
    "check_ensemble_classes",
    "check_fingerprint",
    "check_policy",
    "check_policy_for",
    "fingerprint",
]

# How far an exit's MACs may differ from the fingerprint's and still be the
# same network (an input normalisation added later adds a few MACs to every
# exit; a different architecture moves them by far more).
_FINGERPRINT_TOLERANCE = 0.05


def fingerprint(exit_macs, classes):
    """What identifies the network a policy is calibrated on (`exit_macs`
    None where they counted non-zero weights only: the class count alone)."""
    return {
        "classes": int(classes),
        "exit_macs": None if exit_macs is None else [int(m) for m in exit_macs],
    }


def check_fingerprint(policy, exit_macs, classes, api):
    """Raises where `policy` was calibrated on another network than the one
    with these exits' cumulative MACs and class count (a hand-written policy,
    with no fingerprint, passes)."""
    known = getattr(policy, "fingerprint", None)
    if known is None:
        return
    same = classes is None or known["classes"] == int(classes)
    theirs = None
    if known["exit_macs"] is not None and exit_macs is not None:
        if None not in list(exit_macs):
            theirs = [int(m) for m in exit_macs]
            same = same and len(known["exit_macs"]) == len(theirs)
            same = same and all(
                abs(a - b) <= _FINGERPRINT_TOLERANCE * max(a, b, 1)
                for a, b in zip(known["exit_macs"], theirs)
            )
    if not same:
        raise ValueError(
            f"{api}: the policy was calibrated on another network "
            f"({known['classes']} classes, exits at {known['exit_macs']} MACs); "
            f"this one has {'?' if classes is None else int(classes)} classes and "
            f"exits at {theirs} MACs, so "
            "its thresholds would mean nothing here. Calibrate a policy on this "
            "network's own outputs (tfee.calibrate)."
        )


def check_policy(policy, num_exits, learned, api, exit_macs=None, classes=None):
    """Raises unless `policy` is a tfee policy a network can run.

    Args:
      policy: the policy to check.
      num_exits: the network's (or file's) number of exits.
      learned: per exit, whether its head outputs a learned confidence.
      api: the public API asking, for messages.
      exit_macs, classes: the network's exits' cumulative MACs and class
        count, to check the policy's fingerprint against (where known).

    Returns:
      The policy.

    Raises:
      TypeError: not a tfee policy.
      ValueError: a policy for another number of exits, or the learned rule
        where an exit that may let samples leave has no learned confidence.
    """
    if not isinstance(policy, Policy):
        raise TypeError(
            f"{api}: `policy` must be a tfee policy (tfee.ThresholdPolicy, "
            "tfee.PatiencePolicy, tfee.DecisionPolicy, e.g. from tfee.calibrate). "
            "Received: "
            f"policy={type(policy).__name__}"
        )
    if policy.num_exits != num_exits:
        raise ValueError(
            f"{api}: the policy is for {policy.num_exits} exits but the network "
            f"has {num_exits}. Calibrate a policy for this network. Received: "
            f"policy.num_exits={policy.num_exits}"
        )
    missing = [
        k + 1
        for k, threshold in enumerate(getattr(policy, "thresholds", ()))
        if threshold is not None and not learned[k]
    ]
    if policy.rule == "learned" and missing:
        raise ValueError(
            f"{api}: the policy uses rule='learned' but exits {missing} have no "
            "learned confidence (attach_exits(..., with_confidence=True)). "
            f"Received: policy={policy!r}"
        )
    if exit_macs is not None or classes is not None:
        check_fingerprint(policy, exit_macs, classes, api)
    return policy


def check_ensemble_classes(policy, classes, api):
    """Raises unless `policy`'s ensemble (if any) answers over `classes`: a
    generated firmware would compile with the wrong count (C++ zero-fills the
    missing biases) and answer wrongly."""
    ensemble = getattr(policy, "ensemble", None)
    if ensemble is not None and ensemble.num_classes != classes:
        raise ValueError(
            f"{api}: `policy.ensemble` answers over {ensemble.num_classes} classes "
            f"but the network has {classes}; calibrate the policy on this "
            f"network's outputs. Received: policy.ensemble={ensemble!r}"
        )
    return policy


def check_policy_for(policy, structure, api):
    """`check_policy` and `check_ensemble_classes` against the network a
    `tfee.Structure` was read from (its exits, learned confidences, exits'
    MACs and class count): where a policy meets a Keras network."""
    check_policy(
        policy,
        structure.num_exits,
        list(structure.learned),
        api,
        exit_macs=structure.exit_macs,
        classes=structure.num_classes,
    )
    return check_ensemble_classes(policy, structure.num_classes, api)
