"""The cascade engine: the one loop that runs stages under an exit policy.

A backend knows how to run stage k of a network on a batch (Keras, a LiteRT
.tflite, TensorFlow Lite Micro models); the engine owns everything else:
asking the policy which samples leave after each stage (`Policy.update`,
which scores with `tfee.rules`), forwarding only the others' features, and
collecting one `CascadeResult`. Every runtime's answers therefore equal
`policy.exit_indices` over the logits that runtime computes; the
conformance suite (tests/runtime/test_conformance.py) checks it.

A backend implements:

  num_exits: K.
  learned: per exit, whether its head outputs a learned confidence.
  exit_macs: cumulative MACs to each exit, K numbers (or None if unknown).
  prepare(images) -> inputs of stage 1 (e.g. quantized).
  run_stage(k, inputs) -> StageOutputs (0-based k): `inputs` is what
    `prepare` returned for k = 0, else what stage k-1 carried.
  select(features, keep) -> what a stage carried, for the rows where `keep`
    is True.
"""

import dataclasses
import warnings

import numpy as np

from tfee import rules
from tfee._checks import check_int
from tfee.policy import policies

__all__ = [
    "CascadeResult",
    "StageOutputs",
    "batch_size",
    "confidence_ceiling",
    "exit_macs",
    "run",
    "warn_unreachable",
]


@dataclasses.dataclass(frozen=True)
class StageOutputs:
    """What a backend's stage k hands the engine.

    Attributes:
      logits: float array (batch, classes): the exit's logits, dequantized
        for integer models; the rules score these.
      confidence: the head's learned confidence (batch,), dequantized, or
        None where the head learns none.
      features: what the next stage reads, in the backend's own form (None
        after the deepest stage): features_k, plus exit k's logits where
        stage k+1's head is cascading (`attach_exits(cascading=True)`).
    """

    logits: np.ndarray
    confidence: object
    features: object


@dataclasses.dataclass(frozen=True)
class CascadeResult:
    """What every cascade runtime returns.

    Attributes:
      predictions: int array (samples,): the class answered at the exit taken
        (`tfee.rules.predictions`: -1 where its logits are not finite).
      exit_indices: int array (samples,): the 0-based exit each sample left at.
      logits: float array (samples, classes): the logits of that exit.
      macs: float array (samples,): the MACs each sample paid (cumulative to
        its exit, heads on the way included); NaN where the backend does
        not know its exits' costs.
    """

    predictions: np.ndarray
    exit_indices: np.ndarray
    logits: np.ndarray
    macs: np.ndarray

    @property
    def mean_macs(self):
        """MACs per sample, averaged over the samples."""
        return float(np.mean(self.macs))

    @classmethod
    def concatenate(cls, results):
        """One result of several batches' results, in order."""
        return cls(
            *(
                np.concatenate([getattr(r, f.name) for r in results])
                for f in dataclasses.fields(cls)
            )
        )


def confidence_ceiling(details):
    """The largest learned confidence an output described by `details` can
    hold: 1 for floats, `(max - zero_point) * scale` for integers (255/256
    for TFLite's int8 sigmoid)."""
    dtype = np.dtype(details["dtype"])
    if dtype.kind == "f":
        return 1.0
    scale, zero_point = details["quantization"]
    return float(
        (np.float32(np.iinfo(dtype).max) - np.float32(zero_point)) * np.float32(scale)
    )


def warn_unreachable(policy, ceilings, api):
    """Warns where a learned-rule threshold is above what an exit's
    confidence output can hold: no sample can leave there, on any runtime
    of that file (an int8 sigmoid stops at 255/256)."""
    if getattr(policy, "rule", None) != "learned":
        return
    blocked = [
        (k + 1, threshold, ceiling)
        for k, (threshold, ceiling) in enumerate(zip(policy.thresholds, ceilings))
        if threshold is not None and ceiling is not None and threshold > ceiling
    ]
    if blocked:
        warnings.warn(
            f"{api}: learned-confidence thresholds above what the exits' "
            "quantized confidence can hold never let a sample leave: "
            + ", ".join(f"exit {k}: {t:g} > {c:.6g}" for k, t, c in blocked)
            + ". Calibrate the policy on this file's own outputs.",
            UserWarning,
            stacklevel=3,
        )


def exit_macs(backend, exit_indices):
    """The MACs each sample paid, from the exits it took (NaN if unknown)."""
    if backend.exit_macs is None:
        return np.full(len(exit_indices), np.nan)
    return np.asarray(backend.exit_macs, np.float64)[exit_indices]


def run(backend, policy, images, blocked=None):
    """Runs one batch through the cascade.

    Args:
      backend: see the module docstring.
      policy: a tfee policy for `backend.num_exits` exits.
      images: the batch, as the backend's `prepare` accepts it.
      blocked: `tfee.rules.non_finite_rows(images)`, where the caller has
        it already (a batch-1 loop over checked images); None computes it.

    Returns:
      A `CascadeResult` for the batch.
    """
    policies.check_policy(policy, backend.num_exits, backend.learned, "tfee.runtime")
    inputs = backend.prepare(images)
    count = len(images)
    # The input rule (`tfee.rules`): decided here, from the images, because
    # whether a NaN reaches the logits depends on the CPU's kernels.
    if blocked is None:
        blocked = rules.non_finite_rows(images)
    # One sample under a threshold policy (the on-device case) needs no
    # stream state: `leaves` answers what `update` would, for less.
    single = (
        count == 1
        and isinstance(policy, policies.ThresholdPolicy)
        and policy.ensemble is None
        and not blocked[0]
    )
    state = None if single else policy.initial_state(count)
    alive = np.arange(count)
    exit_indices = np.full(count, -1, np.int64)
    chosen = None
    for k in range(backend.num_exits):
        outputs = backend.run_stage(k, inputs)
        if single:
            confidence = outputs.confidence
            confidence = None if confidence is None else confidence[0]
            if policy.leaves(k, outputs.logits[0], confidence):
                chosen, exit_indices[0] = outputs.logits, k
                break
            inputs = outputs.features
            continue
        logits, confidence = rules.blocked_outputs(
            outputs.logits, outputs.confidence, blocked[alive]
        )
        leave, state = policy.update(state, k, logits, confidence)
        # With an ensemble the samples answer with its logits, not the exit's.
        answers = logits if state.answers is None else state.answers
        if chosen is None:
            chosen = np.zeros((count, answers.shape[-1]), np.float32)
        chosen[alive[leave]] = answers[leave]
        exit_indices[alive[leave]] = k
        stay = ~leave
        if not stay.any():
            break
        inputs = outputs.features
        if not stay.all():  # Select only when some samples left.
            alive = alive[stay]
            inputs = backend.select(inputs, stay)
    return CascadeResult(
        predictions=rules.predictions(chosen),
        exit_indices=exit_indices,
        logits=chosen,
        macs=exit_macs(backend, exit_indices),
    )


def check_images(images, input_shape, api):
    """`images` as a float batch of `input_shape` (a single image gets a batch
    axis); a ValueError naming `api` otherwise."""
    images = np.asarray(images)
    if images.ndim == len(input_shape):
        images = images[None]
    if (
        images.shape[1:] != tuple(input_shape)
        or images.dtype.kind != "f"
        or not len(images)
    ):
        raise ValueError(
            f"{api}: `images` must be at least one float image of shape (batch,) "
            f"+ {tuple(input_shape)}, preprocessed as for the network. Received: "
            f"shape={images.shape}, dtype={images.dtype}"
        )
    warn_non_finite(rules.non_finite_rows(images), api)
    return images


def warn_non_finite(rows, api):
    """Warns once for the images `rows` marks (`tfee.rules.non_finite_rows`)."""
    rows = np.asarray(rows, bool)
    if rows.any():
        warnings.warn(
            f"{api}: {int(rows.sum())} of {len(rows)} images hold NaN or infinite "
            f"values (rows {np.flatnonzero(rows)[:10].tolist()}); they never "
            "leave early and answer class -1 at the deepest exit, on every "
            "float runtime and at every batch size (integer inputs refuse them).",
            stacklevel=4,
        )


def batch_size(value, count, api):
    """The batch size to run `count` samples with (None: all at once)."""
    return max(count, 1) if value is None else check_int(value, "batch_size", api)
