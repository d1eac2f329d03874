"""Dynamic early exit in TensorFlow: stop computing for samples that have left.

`DynamicPredictor` runs an early-exit network section by section
(`tfee.stage_models`) and forwards to the next section only the samples the
policy has not let go (`tf.boolean_mask`), so easy samples cost only the
sections up to their exit. Its answers equal the policy applied to the full
network's outputs (`policy.exit_indices`), for any batch size including 1.

At batch 1 under a `ThresholdPolicy`, the whole cascade is one XLA-compiled
`tf.function` of nested `tf.cond`s (a plain graph where XLA cannot compile a
layer): a call per stage from Python, with its tensor copies, costs more than
the sections an easy sample skips.
"""

import dataclasses

import numpy as np

from tfee import network as network_lib
from tfee import stages as stages_lib
from tfee._keras import tf
from tfee.policy import policies

__all__ = ["DynamicPredictor", "DynamicResult"]


@dataclasses.dataclass(frozen=True)
class DynamicResult:
    """What `DynamicPredictor.predict` returns.

    Attributes:
      predictions: int array (samples,): the class answered at the exit taken.
      exit_indices: int array (samples,): the 0-based exit each sample left at.
      logits: float array (samples, classes): the logits of that exit.
    """

    predictions: np.ndarray
    exit_indices: np.ndarray
    logits: np.ndarray


class DynamicPredictor:
    """Runs an early-exit network stage by stage, dropping samples that exit.

    Args:
      network: a tfee early-exit network.
      policy: a `ThresholdPolicy` or `PatiencePolicy` for its number of exits.

    Raises:
      TypeError: `policy` is not a tfee policy.
      ValueError: `network` is not an early-exit network, or the policy is for
        a different number of exits.

    Example:
      >>> predictor = tfee.DynamicPredictor(net, policy)
      >>> result = predictor.predict(images, batch_size=128)
      >>> result.predictions, result.exit_indices
    """

    def __init__(self, network, policy):
        api = "tfee.DynamicPredictor"
        network_lib._require_network(network, api)
        if not isinstance(policy, policies.Policy):
            raise TypeError(
                f"{api}: `policy` must be a tfee policy (ThresholdPolicy, "
                f"PatiencePolicy). Received: policy={type(policy).__name__}"
            )
        stage_models = stages_lib.stage_models(network)
        if policy.num_exits != len(stage_models):
            raise ValueError(
                f"{api}: the policy is for {policy.num_exits} exits but the network "
                f"has {len(stage_models)}. Calibrate a policy for this network."
            )
        self._policy = policy
        self._stage_models = stage_models
        self._stages = [self._compile(stage) for stage in stage_models]
        self._dtype = stage_models[0].inputs[0].dtype
        self._single = None  # The batch-1 graph, traced on first use.
        if isinstance(policy, policies.ThresholdPolicy):
            # An input of that graph, not constants in it: its program, and
            # so the logits it computes, do not depend on the thresholds.
            self._thresholds = tf.constant(
                [np.inf if t is None else t for t in policy.thresholds], tf.float64
            )

    @property
    def policy(self):
        """The exit policy, fixed at construction (the batch-1 graph is built
        for its rule)."""
        return self._policy

    @staticmethod
    def _compile(stage):
        spec = stage.inputs[0]
        signature = tf.TensorSpec([None] + spec.shape[1:].as_list(), spec.dtype)
        return tf.function(
            lambda x: stage(x, training=False), input_signature=[signature]
        )

    @property
    def num_exits(self):
        return len(self._stages)

    def predict_batch(self, images):
        """One batch through the cascade.

        Args:
          images: array or tensor (batch, ...) of the network's input shape.

        Returns:
          A `DynamicResult` for the batch.
        """
        features = tf.cast(tf.convert_to_tensor(images), self._dtype)
        if features.shape.rank is None or features.shape[0] == 0:
            raise ValueError(
                "DynamicPredictor.predict_batch: `images` must hold at least one "
                f"sample. Received: shape {features.shape}"
            )
        size = int(features.shape[0])
        if size == 1 and isinstance(self.policy, policies.ThresholdPolicy):
            return self._predict_one(features)
        return self._predict_stagewise(features)

    def _predict_stagewise(self, features, first_decision=0):
        """Stage by stage from Python; exits before `first_decision` are not
        asked (the batch-1 graph has already decided to stay there)."""
        size = int(features.shape[0])
        state = self.policy.initial_state(size)
        remaining = np.arange(size)
        exit_indices = np.empty(size, np.int64)
        chosen = None
        for k, stage in enumerate(self._stages):
            result = stage(features)
            logits = result["logits"].numpy()
            confidence = result.get("confidence")
            confidence = None if confidence is None else confidence.numpy()
            if k < first_decision:
                # Decided already: NaN never leaves, and the state still
                # sees every exit in order.
                logits = np.full_like(logits, np.nan)
                confidence = None if confidence is None else logits[:, 0]
            leave, state = self.policy.update(state, k, logits, confidence)
            if chosen is None:
                chosen = np.empty((size, logits.shape[-1]), logits.dtype)
            exit_indices[remaining[leave]] = k
            chosen[remaining[leave]] = logits[leave]
            if leave.all():
                break
            features = result["features"]
            if leave.any():
                stay = ~leave
                features = tf.boolean_mask(features, stay)
                remaining = remaining[stay]
        return DynamicResult(
            predictions=np.argmax(chosen, axis=-1),
            exit_indices=exit_indices,
            logits=chosen,
        )

    def _build_single(self, jit_compile):
        spec = self._stage_models[0].inputs[0]
        rule = self.policy.rule
        return tf.function(
            lambda x, t: _threshold_cascade(self._stage_models, rule, x, t),
            input_signature=[
                tf.TensorSpec([1] + spec.shape[1:].as_list(), spec.dtype),
                tf.TensorSpec([len(self._stage_models) - 1], tf.float64),
            ],
            jit_compile=jit_compile,
        )

    def _run_single(self, features):
        if self._single is None:
            # XLA compiles the nested conds into one program, which runs the
            # taken branch without the executor's per-branch overhead; layers
            # XLA cannot compile fall back to a plain graph.
            try:
                self._single = self._build_single(jit_compile=True)
                return self._single(features, self._thresholds)
            except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError):
                self._single = self._build_single(jit_compile=False)
        return self._single(features, self._thresholds)

    def _predict_one(self, features):
        outputs = self._run_single(features)
        logits, confidence, exit_index, unsure = (x.numpy() for x in outputs)
        exit_index = int(exit_index)
        if unsure and not self.policy.leaves(
            exit_index, logits[0], None if self.policy.rule != "learned" else confidence
        ):
            # A score within float round-off of its threshold: the numpy
            # policy decides on the graph's own outputs that the sample stays.
            return self._predict_stagewise(features, first_decision=exit_index + 1)
        return DynamicResult(
            predictions=np.argmax(logits, axis=-1),
            exit_indices=np.array([exit_index], np.int64),
            logits=logits,
        )

    def predict(self, data, batch_size=128):
        """Runs the cascade over arrays or a tf.data dataset.

        Args:
          data: an array (samples, ...), or a tf.data.Dataset of image batches
            or (images, labels) batches (labels are ignored).
          batch_size: batch size for arrays (datasets keep their own).

        Returns:
          A `DynamicResult` over all samples, in order.
        """
        api = "DynamicPredictor.predict"
        if isinstance(data, tf.data.Dataset):
            batches = (b[0] if isinstance(b, (tuple, list)) else b for b in data)
        else:
            if not isinstance(batch_size, int) or batch_size < 1:
                raise ValueError(
                    f"{api}: `batch_size` must be a positive int. "
                    f"Received: batch_size={batch_size!r}"
                )
            data = np.asarray(data)
            if len(data) == 0:
                raise ValueError(f"{api}: `data` is empty (0 samples).")
            batches = (
                data[i : i + batch_size] for i in range(0, len(data), batch_size)
            )
        results = [self.predict_batch(b) for b in batches]
        if not results:
            raise ValueError(f"{api}: `data` is empty (0 batches).")
        return DynamicResult(
            predictions=np.concatenate([r.predictions for r in results]),
            exit_indices=np.concatenate([r.exit_indices for r in results]),
            logits=np.concatenate([r.logits for r in results]),
        )


# Scores this close to a threshold are decided by the numpy policy itself, so
# that float differences between TF and numpy never change an exit.
_TIE_BAND = 1e-9


def _tf_score(rule, logits, confidence):
    """`tfee.policy.confidence_scores` for one sample, in float64 TF."""
    if rule == "learned":
        return tf.reshape(tf.cast(confidence, tf.float64), [])
    logits = tf.cast(logits, tf.float64)
    if rule == "max_softmax":
        return 1.0 / tf.reduce_sum(tf.exp(logits - tf.reduce_max(logits)))
    probabilities = tf.nn.softmax(logits)
    if rule == "entropy":
        log_p = tf.math.log(tf.maximum(probabilities, 1e-300))
        entropy = -tf.reduce_sum(probabilities * log_p)
        classes = tf.cast(tf.size(logits), tf.float64)
        score = 1.0 - entropy / tf.math.log(classes)
    else:
        top2 = tf.math.top_k(probabilities, 2).values
        score = top2[0] - top2[1]
    return tf.clip_by_value(score, 0.0, 1.0)


def _threshold_cascade(stage_models, rule, images, thresholds):
    """One sample stage by stage in-graph: (logits (1, classes), its learned
    confidence or 0, 0-based exit, unsure). `unsure` marks a score within
    `_TIE_BAND` of its threshold, left for the numpy policy to decide; an
    infinite threshold never lets the sample leave."""
    last = len(stage_models) - 1

    def run(k, features):
        outputs = stage_models[k](features, training=False)
        logits = outputs["logits"]
        confidence = outputs.get("confidence")
        value = tf.zeros([]) if confidence is None else tf.reshape(confidence, [])

        def answer(unsure):
            return logits, value, tf.constant(k, tf.int64), tf.constant(unsure)

        if k == last:
            return answer(False)
        finite = tf.reduce_all(tf.math.is_finite(logits))
        if rule == "learned":
            finite = tf.logical_and(finite, tf.math.is_finite(value))
        score = _tf_score(rule, logits[0], confidence)
        safe = tf.where(finite, score, tf.constant(-1.0, tf.float64))
        return tf.cond(
            safe >= thresholds[k] + _TIE_BAND,
            lambda: answer(False),
            lambda: tf.cond(
                safe < thresholds[k] - _TIE_BAND,
                lambda: run(k + 1, outputs["features"]),
                lambda: answer(True),
            ),
        )

    return run(0, images)
