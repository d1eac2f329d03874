"""Dynamic early exit in TensorFlow: stop computing for samples that have left.

`DynamicPredictor` runs an early-exit network section by section
(`tfee.stage_models`) and forwards to the next section only the samples the
policy has not let go (`tf.boolean_mask`), so easy samples cost only the
sections up to their exit. Its answers equal the policy applied to the full
network's outputs (`policy.exit_indices`), for any batch size including 1.
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
        self.policy = policy
        self._stages = [self._compile(stage) for stage in stage_models]
        self._dtype = stage_models[0].inputs[0].dtype

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
        state = self.policy.initial_state(size)
        remaining = np.arange(size)
        exit_indices = np.empty(size, np.int64)
        chosen = None
        for k, stage in enumerate(self._stages):
            result = stage(features)
            logits = result["logits"].numpy()
            confidence = result.get("confidence")
            confidence = None if confidence is None else confidence.numpy()
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
