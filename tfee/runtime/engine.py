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
  num_classes: the classes each exit's logits hold.
  learned: per exit, whether its head outputs a learned confidence.
  exit_macs: cumulative MACs to each exit, K numbers (or None if unknown).
  prepare(images) -> inputs of stage 1 (e.g. quantized).
  run_stage(k, inputs) -> StageOutputs (0-based k): `inputs` is what
    `prepare` returned for k = 0, else what stage k-1 carried.
  select(features, keep) -> what a stage carried, for the rows where `keep`
    is True.

and may implement, for the batch-1 path (one image under a threshold
policy, the on-device case):

  run_row(k, inputs) -> StageOutputs of one image, like run_stage, but its
    logits and confidence may be lists of Python floats ([row] and [value])
    and its features views of the runtime's own buffers, valid until stage
    k runs again.
"""

import dataclasses
import warnings

import numpy as np

from tfee import rules
from tfee._checks import check_int
from tfee.policy import base_policy
from tfee.policy import compatibility
from tfee.policy import threshold_policy

__all__ = [
    "CascadeResult",
    "StageOutputs",
    "batch_size",
    "confidence_ceiling",
    "empty_result",
    "exit_macs",
    "run",
    "warn_unreachable",
]


@dataclasses.dataclass(slots=True)  # Not frozen: made per stage and image.
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


def run(backend, policy, images, blocked=None, out=None, at=0):
    """Runs one batch through the cascade.

    Args:
      backend: see the module docstring.
      policy: a tfee policy for `backend.num_exits` exits.
      images: the batch, as the backend's `prepare` accepts it.
      blocked: `tfee.rules.non_finite_rows(images)`, where the caller has
        it already (a batch-1 loop over checked images); None computes it.
      out: a `CascadeResult` (from `empty_result`) to write the answers
        into, at rows `at` .. `at + len(images) - 1`: a batch-1 loop's
        preallocated result. None returns a new one.
      at: the first row of `out` to write.

    Returns:
      A `CascadeResult` for the batch (`out` where given).
    """
    _check_policy_once(backend, policy)
    inputs = backend.prepare(images)
    count = len(images)
    # The input rule (`tfee.rules`): decided here, from the images, because
    # whether a NaN reaches the logits depends on the CPU's kernels.
    if blocked is None:
        blocked = rules.non_finite_rows(images)
    if out is None:
        out, at = empty_result(count, backend.num_classes), 0
    # One sample under a threshold policy (the on-device case) needs no
    # stream state: its score on one row decides what `update` would.
    if count == 1 and not blocked[0] and _is_plain_threshold(policy):
        _run_one(backend, policy, inputs, out, at)
        return out
    rows = slice(at, at + count)
    state = policy.initial_state(count)
    alive = np.arange(count)
    exit_indices, chosen = out.exit_indices[rows], out.logits[rows]
    for k in range(backend.num_exits):
        outputs = backend.run_stage(k, inputs)
        logits, confidence = rules.blocked_outputs(
            outputs.logits, outputs.confidence, blocked[alive]
        )
        leave, state = policy.update(state, k, logits, confidence)
        # With an ensemble the samples answer with its logits, not the exit's.
        answers = logits if state.answers is None else state.answers
        chosen[alive[leave]] = answers[leave]
        exit_indices[alive[leave]] = k
        stay = ~leave
        if not stay.any():
            break
        inputs = outputs.features
        if not stay.all():  # Select only when some samples left.
            alive = alive[stay]
            inputs = backend.select(inputs, stay)
    out.predictions[rows] = rules.predictions(chosen)
    out.macs[rows] = exit_macs(backend, exit_indices)
    return out


def _run_one(backend, policy, inputs, out, at):
    """`run`'s loop for one sample under a threshold policy without ensemble.

    The decisions of `policy.update` (the `tfee.rules` score of each exit,
    compared by `rules.leaves`) without its stream state or any per-exit
    allocation: a backend's `run_row` (where it has one) hands views of its
    own buffers, the score is computed in the backend's `rules.RowScores`,
    and only the logits of the exit taken are copied, into `out`.
    """
    run_stage = getattr(backend, "run_row", backend.run_stage)
    scorer = _row_scores(backend)
    deepest = backend.num_exits - 1
    for k in range(backend.num_exits):
        outputs = run_stage(k, inputs)
        logits = outputs.logits[0]
        if k == deepest:
            break
        # Read at every call: a policy is a plain object a user may change.
        threshold = policy.thresholds[k]
        if threshold is not None:
            confidence = outputs.confidence
            if scorer.leaves(
                policy.rule,
                logits,
                threshold,
                None if confidence is None else confidence[0],
            ):
                break
        inputs = outputs.features
    out.logits[at] = logits
    out.exit_indices[at] = k
    out.predictions[at] = scorer.prediction(logits)
    out.macs[at] = np.nan if backend.exit_macs is None else backend.exit_macs[k]


def _row_scores(backend):
    """The backend's own `rules.RowScores` (one per runtime: not thread-safe)."""
    scorer = getattr(backend, "_row_scores", None)
    if scorer is None:
        scorer = backend._row_scores = rules.RowScores(backend.num_classes)
    return scorer


def _is_plain_threshold(policy):
    return (
        isinstance(policy, threshold_policy.ThresholdPolicy) and policy.ensemble is None
    )


def _check_policy_once(backend, policy):
    """`compatibility.check_policy`, skipped where the backend checked this very
    policy, unchanged, last (a batch-1 loop runs it on every image)."""
    if not isinstance(policy, base_policy.Policy):  # Raises, naming the API.
        compatibility.check_policy(
            policy, backend.num_exits, backend.learned, "tfee.runtime"
        )
    key = (
        id(policy),
        type(policy),
        policy.num_exits,
        getattr(policy, "rule", None),
        tuple(getattr(policy, "thresholds", ())),
    )
    if getattr(backend, "_checked_policy", None) == key:
        return
    compatibility.check_policy(
        policy, backend.num_exits, backend.learned, "tfee.runtime"
    )
    backend._checked_policy = key


def empty_result(count, classes):
    """A `CascadeResult` of `count` rows for `run(..., out=)` to fill (every
    row is written: every sample leaves somewhere)."""
    # Two allocations, not four: each numpy call counts at batch 1.
    columns = np.empty((3, count), np.int64)
    return CascadeResult(
        predictions=columns[0],
        exit_indices=columns[1],
        logits=np.empty((count, classes), np.float32),
        macs=columns[2].view(np.float64),
    )


def check_images(images, input_shape, api, warn=True):
    """(`images` as a float batch of `input_shape`, its blocked rows).

    Every runtime's input check. A single image gets a batch axis; the
    blocked rows are `tfee.rules.non_finite_rows` (warned about here unless
    `warn` is False), for `run(blocked=)`.

    Raises:
      ValueError: naming `api`, for anything but float images of that shape.
    """
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
    if rules.all_finite(images):
        return images, _no_rows(len(images))
    blocked = rules.non_finite_rows(images)
    if warn:
        warn_non_finite(blocked, api)
    return images, blocked


_NO_ROWS = {}


def _no_rows(count):
    """A read-only all-False `blocked` of `count` rows, made once per count
    (a batch-1 loop asks for one per image)."""
    rows = _NO_ROWS.get(count)
    if rows is None:
        rows = np.zeros(count, bool)
        rows.flags.writeable = False
        if count <= 64:
            _NO_ROWS[count] = rows
    return rows


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
