"""Dynamic early exit in TensorFlow: stop computing for samples that have left.

`DynamicPredictor` runs an early-exit network section by section
(`tfee.stage_models`) and forwards to the next section only the samples the
policy has not let go (`tf.boolean_mask`), so easy samples cost only the
sections up to their exit. Its answers equal the policy applied to the full
network's outputs (`policy.exit_indices`), for any batch size including 1.

The loop is the cascade engine's (`tfee.runtime.engine`). At batch 1 under
a `ThresholdPolicy`, the whole cascade is instead one XLA-compiled
`tf.function` of nested `tf.cond`s (a plain graph where XLA cannot compile a
layer): a call per stage from Python, with its tensor copies, costs more than
the sections an easy sample skips.
"""

import numpy as np

from tfee import naming
from tfee import rules
from tfee import stages as stages_lib
from tfee import structure as structure_lib
from tfee._keras import tf
from tfee.policy import compatibility
from tfee.policy import threshold_policy
from tfee.runtime import engine

__all__ = ["DynamicPredictor"]


class _Backend:
    """The engine's view of a network's stage models (see `engine`)."""

    def __init__(self, stage_models, learned, exit_macs):
        self.num_exits = len(stage_models)
        self.learned = learned
        self.exit_macs = exit_macs
        self.dtype = stage_models[0].inputs[0].dtype
        self.num_classes = int(stage_models[0].output[naming.LOGITS].shape[-1])
        self._models = stage_models
        self.stages = [self._compile(stage) for stage in stage_models]

    @staticmethod
    def _compile(stage):
        signature = [
            tf.TensorSpec([None] + spec.shape[1:].as_list(), spec.dtype)
            for spec in stage.inputs
        ]
        return tf.function(
            lambda *x: stage(list(x) if len(x) > 1 else x[0], training=False),
            input_signature=signature,
        )

    def prepare(self, images):
        return tf.cast(tf.convert_to_tensor(images), self.dtype)

    def run_stage(self, k, inputs):
        # Stage 1 reads the images; later stages what the previous one carried.
        result = self.stages[k](*(inputs if k else [inputs]))
        confidence = result.get("confidence")
        carried = None
        if k + 1 < self.num_exits:
            carried = stages_lib.next_stage_input(self._models[k + 1], result)
            carried = carried if isinstance(carried, list) else [carried]
        return engine.StageOutputs(
            logits=result["logits"].numpy(),
            confidence=None if confidence is None else confidence.numpy().reshape(-1),
            features=carried,
        )

    @staticmethod
    def select(features, keep):
        return [tf.boolean_mask(tensor, keep) for tensor in features]


class DynamicPredictor:
    """Runs an early-exit network stage by stage, dropping samples that exit.

    The Keras/TensorFlow backend of the cascade engine.

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
      >>> result.predictions, result.exit_indices, result.mean_macs
    """

    def __init__(self, network, policy):
        api = "tfee.DynamicPredictor"
        structure = structure_lib.read_structure(network, api)
        stage_models = stages_lib.stage_models(structure)
        learned = list(structure.learned)
        compatibility.check_policy_for(policy, structure, api)
        self._policy = policy
        self._stage_models = stage_models
        self.input_shape = tuple(stage_models[0].inputs[0].shape[1:])
        self._backend = _Backend(stage_models, learned, list(structure.exit_macs))
        self._single = None  # The batch-1 graph, traced on first use.
        if isinstance(policy, threshold_policy.ThresholdPolicy):
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

    @property
    def num_exits(self):
        return self._backend.num_exits

    def predict_batch(self, images):
        """One batch through the cascade.

        Args:
          images: float array or tensor (batch, ...) of the network's input
            shape, preprocessed as for the network (or one image).

        Returns:
          A `tfee.CascadeResult` for the batch.

        Raises:
          ValueError: images of another shape, or not floats (e.g. uint8
            pixels for a network trained on [0, 1]): every runtime's check.
        """
        images, blocked = engine.check_images(
            images, self.input_shape, "tfee.DynamicPredictor.predict_batch"
        )
        return self._run(images, blocked)

    def _run(self, images, blocked):
        features = self._backend.prepare(images)
        if (
            features.shape[0] == 1
            and isinstance(self.policy, threshold_policy.ThresholdPolicy)
            and self.policy.ensemble is None
            and not blocked[0]  # The engine's input rule.
        ):
            return self._predict_one(features)
        return engine.run(self._backend, self.policy, features, blocked)

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
        if unsure and not self.policy.leaves(exit_index, logits[0], confidence):
            # A score within float round-off of its threshold, which the
            # numpy rules say stays, on the graph's own logits: the engine
            # runs the rest, with the exits decided so far closed.
            rest = threshold_policy.ThresholdPolicy(
                [None] * (exit_index + 1)
                + list(self.policy.thresholds[exit_index + 1 :]),
                self.policy.rule,
            )
            return engine.run(self._backend, rest, features)
        exit_indices = np.array([exit_index], np.int64)
        return engine.CascadeResult(
            predictions=rules.predictions(logits),
            exit_indices=exit_indices,
            logits=logits,
            macs=engine.exit_macs(self._backend, exit_indices),
        )

    def predict(self, images, batch_size=128):
        """Runs the cascade over arrays or a tf.data dataset.

        Args:
          images: an array (samples, ...), or a tf.data.Dataset of image batches
            or (images, labels) batches (labels are ignored).
          batch_size: batch size for arrays (datasets keep their own).

        Returns:
          A `tfee.CascadeResult` over all samples, in order.
        """
        api = "tfee.DynamicPredictor.predict"
        if isinstance(images, tf.data.Dataset):
            batches = (b[0] if isinstance(b, (tuple, list)) else b for b in images)
        else:
            batch_size = engine.batch_size(batch_size, 0, api)
            images = np.asarray(images)
            if len(images) == 0:
                raise ValueError(f"{api}: `images` is empty (0 samples).")
            batches = (
                images[i : i + batch_size] for i in range(0, len(images), batch_size)
            )
        results, non_finite = [], []
        for batch in batches:
            # Warned about once, over every batch, below.
            batch, blocked = engine.check_images(
                batch, self.input_shape, api, warn=False
            )
            non_finite.append(blocked)
            results.append(self._run(batch, blocked))
        if not results:
            raise ValueError(f"{api}: `images` is empty (0 batches).")
        engine.warn_non_finite(np.concatenate(non_finite), api)
        return engine.CascadeResult.concatenate(results)


# Scores this close to a threshold are decided by the engine's numpy rules,
# so that float differences between TF and numpy never change an exit.
_TIE_BAND = 1e-9


def _threshold_cascade(stage_models, rule, images, thresholds):
    """One sample stage by stage in-graph: (logits (1, classes), its learned
    confidence (1,) or 0, 0-based exit, unsure). The scores are `tfee.rules.tf_scores` in float64; `unsure`
    marks a score within `_TIE_BAND` of its threshold, left to the engine;
    an infinite threshold never lets the sample leave."""
    last = len(stage_models) - 1

    def run(k, features):
        outputs = stage_models[k](features, training=False)
        logits = outputs["logits"]

        confidence = outputs.get("confidence")
        value = tf.zeros([1]) if confidence is None else tf.reshape(confidence, [1])

        def answer(unsure):
            return logits, value, tf.constant(k, tf.int64), tf.constant(unsure)

        if k == last:
            return answer(False)
        score = rules.tf_scores(logits, rule, confidence, dtype=tf.float64)[0]
        # NaN (undefined) never passes: it compares false both ways.
        safe = tf.where(tf.math.is_finite(score), score, tf.constant(-1.0, tf.float64))
        return tf.cond(
            safe >= thresholds[k] + _TIE_BAND,
            lambda: answer(False),
            lambda: tf.cond(
                safe < thresholds[k] - _TIE_BAND,
                lambda: run(
                    k + 1, stages_lib.next_stage_input(stage_models[k + 1], outputs)
                ),
                lambda: answer(True),
            ),
        )

    return run(0, images)
