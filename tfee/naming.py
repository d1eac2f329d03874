"""The names tfee gives to outputs, signatures and files, in one place.

An early-exit network's outputs are `exit_1 .. exit_K` (logits, shallowest
first) and `confidence_k` where head k learns a confidence. Exported files
add `stage_k` signatures whose outputs are `logits`, `confidence` and
`features_k`. tfmot renames outputs it wraps (`prune_low_magnitude_exit_1`,
`cluster_exit_1`, `quant_exit_1`); those still name exit 1. Every module that
asks "is this an exit output, and which" asks here.
"""

import re

__all__ = [
    "CONFIDENCE",
    "EXIT",
    "FEATURES",
    "IMAGE",
    "LOGITS",
    "STAGE",
    "TFMOT_PREFIXES",
    "confidence_name",
    "exit_name",
    "exit_number",
    "features_name",
    "handed_on",
    "parse_output",
    "parse_signature",
    "previous_logits_name",
    "stage_input_name",
    "stage_name",
]

EXIT = "exit"
CONFIDENCE = "confidence"
STAGE = "stage"
# Output names inside a signature, and the first stage's input.
LOGITS = "logits"
FEATURES = "features"
IMAGE = "image"

# Prefixes tfmot puts in front of the layers (and so the outputs) it wraps.
TFMOT_PREFIXES = ("prune_low_magnitude_", "cluster_", "quant_")

_PREFIXES = "|".join(TFMOT_PREFIXES)
_OUTPUT = re.compile(rf"^(?:{_PREFIXES})*({EXIT}|{CONFIDENCE})_([1-9]\d*)$")
_SIGNATURE = re.compile(rf"^({EXIT}|{STAGE})_([1-9]\d*)$")


def exit_name(k):
    """`exit_k`: exit k's logits output (1-based)."""
    return f"{EXIT}_{k}"


def confidence_name(k):
    """`confidence_k`: exit k's learned confidence output (1-based)."""
    return f"{CONFIDENCE}_{k}"


def stage_name(k):
    """`stage_k`: the signature (or micro model) from stage k-1 to exit k."""
    return f"{STAGE}_{k}"


def features_name(k):
    """`features_k`: what stage k hands to stage k+1."""
    return f"{FEATURES}_{k}"


def stage_input_name(k):
    """The input of stage k: the image for k=1, else `features_(k-1)`."""
    return IMAGE if k == 1 else features_name(k - 1)


def previous_logits_name(k):
    """The second input of a cascading stage k: `logits_(k-1)`, exit k-1's
    logits (stage k-1's `logits` output, handed on unchanged)."""
    return f"{LOGITS}_{k - 1}"


def handed_on(k, next_inputs):
    """[(stage k output, stage k+1 input)] of what stage k hands stage k+1,
    given stage k+1's input names: features_k, then exit k's logits where
    stage k+1 is cascading (it has a `logits_k` input). Every exporter and
    runtime chains stages by this list."""
    pairs = [(features_name(k), features_name(k))]
    if previous_logits_name(k + 1) in next_inputs:
        pairs.append((LOGITS, previous_logits_name(k + 1)))
    return pairs


def parse_output(name):
    """(kind, k) for an exit or confidence output name, else None.

    tfmot's prefixes are looked through and any Keras scope before the last
    "/" is ignored.

    Example:
      >>> parse_output("prune_low_magnitude_exit_2")
      ('exit', 2)
      >>> parse_output("dense") is None
      True
    """
    match = _OUTPUT.match(str(name).rsplit("/", 1)[-1])
    return None if match is None else (match.group(1), int(match.group(2)))


def exit_number(name):
    """k for an `exit_k` output name (tfmot prefixes looked through), else None."""
    parsed = parse_output(name)
    return parsed[1] if parsed and parsed[0] == EXIT else None


def parse_signature(name):
    """(kind, k) for an `exit_k` or `stage_k` signature name, else None."""
    match = _SIGNATURE.match(str(name))
    return None if match is None else (match.group(1), int(match.group(2)))
