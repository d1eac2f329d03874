"""A cascade over LiteRT: run stage signatures until the policy lets samples go.

`Cascade` loads a .tflite written by `tfee.export.tflite`, runs `stage_1` on a
batch, asks the exit policy which samples leave, forwards only the others'
features to `stage_2`, and so on; the deepest stage answers whatever is left.
"""

import os

import numpy as np

from tfee._checks import check_int
from tfee.export import _flatbuffer
from tfee.export import _litert
from tfee.policy import outputs as outputs_lib

__all__ = ["Cascade", "dequantize_output", "quantize_input", "read_metadata"]


def quantize_input(values, details):
    """Float values as the tensor described by `details` expects them."""
    dtype = np.dtype(details["dtype"])
    if dtype.kind == "f":
        return np.asarray(values, dtype)
    scale, zero_point = details["quantization"]
    info = np.iinfo(dtype)
    quantized = np.round(np.asarray(values, np.float32) / scale) + zero_point
    return np.clip(quantized, info.min, info.max).astype(dtype)


def dequantize_output(values, details):
    """A signature output as float32 (dequantized where it is integer)."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        return np.asarray(values, np.float32)
    scale, zero_point = details["quantization"]
    return (values.astype(np.float32) - zero_point) * scale


def read_metadata(path):
    """The "tfee" metadata of a .tflite written by `tfee.export.tflite`.

    Args:
      path: the .tflite file.

    Returns:
      A dict (num_exits, exit_names, learned_confidence, confidence_rule,
      quantize, signatures, cumulative_macs, full_macs), or {} for other
      files.

    Raises:
      FileNotFoundError: no file at `path`.
    """
    if not isinstance(path, str) or not os.path.isfile(path):
        raise FileNotFoundError(
            f"tfee.export.read_metadata: no .tflite file at path={path!r}"
        )
    with open(path, "rb") as f:
        return _flatbuffer.metadata(f.read())


def _check_policy(policy):
    missing = [
        name
        for name in ("initial_state", "update", "num_exits")
        if not hasattr(policy, name)
    ]
    if missing:
        raise TypeError(
            "tfee.export.Cascade: `policy` must be an exit policy with "
            "initial_state(batch_size), update(state, exit_index, logits, "
            f"confidence) and num_exits (e.g. from tfee.calibrate). Received: "
            f"policy={type(policy).__name__} without {missing}"
        )


class Cascade:
    """Runs a multi-signature .tflite as an early-exit cascade under a policy.

    Args:
      path: a .tflite from `tfee.export.tflite` with stage_1..stage_K.
      policy: an exit policy with K exits (`initial_state` / `update`
        streaming methods, e.g. a `tfee.ThresholdPolicy`); None for a
        cascade that only computes `exit_logits`.
      num_threads: LiteRT CPU threads.

    Raises:
      FileNotFoundError: `path` does not exist.
      TypeError: `policy` is not an exit policy.
      ValueError: the file lacks stage signatures, or the policy's exit count
        differs from the file's.

    Example:
      >>> cascade = tfee.export.Cascade("net.tflite", policy)
      >>> predictions, exit_indices = cascade.predict(test_images)
      >>> # What the file itself computes at every exit, e.g. to calibrate:
      >>> logits = tfee.export.Cascade("net.tflite").exit_logits(val_images)
    """

    def __init__(self, path, policy=None, num_threads=1):
        from ai_edge_litert.interpreter import Interpreter

        api = "tfee.export.Cascade"
        if not isinstance(path, str) or not os.path.isfile(path):
            raise FileNotFoundError(f"{api}: no .tflite file at path={path!r}")
        if policy is not None:
            _check_policy(policy)
        self.metadata = read_metadata(path)
        self._interpreter = Interpreter(model_path=path, num_threads=num_threads)
        available = self._interpreter.get_signature_list()
        stages = sorted(
            (n for n in available if n.startswith("stage_")),
            key=lambda n: int(n.split("_")[1]),
        )
        expected = [f"stage_{k}" for k in range(1, len(stages) + 1)]
        if not stages or stages != expected:
            raise ValueError(
                f"{api}: {path} needs the signatures stage_1..stage_K (export "
                "them with tfee.export.tflite(signatures=None)). Received "
                f"signatures: {sorted(available)}"
            )
        if policy is not None and policy.num_exits != len(stages):
            raise ValueError(
                f"{api}: the policy has {policy.num_exits} exits but {path} has "
                f"{len(stages)} stages. Received: policy.num_exits="
                f"{policy.num_exits}"
            )
        self.path = path
        self.policy = policy
        self.num_exits = len(stages)
        self._learned = self.metadata.get("learned_confidence", [False] * len(stages))
        self._stages = []
        for k in range(1, len(stages) + 1):
            wanted = ["logits"]
            if self._learned[k - 1]:
                wanted.append("confidence")
            if k < len(stages):
                wanted.append(f"features_{k}")
            self._stages.append(
                _litert.SignatureCall(
                    self._interpreter,
                    f"stage_{k}",
                    "image" if k == 1 else f"features_{k - 1}",
                    wanted,
                )
            )
        self._image_details = self._stages[0].input_details
        self._logits_details = [s.output_details["logits"] for s in self._stages]
        self._confidence_details = [
            s.output_details.get("confidence") for s in self._stages
        ]
        # Threshold policies answer one sample without stream states.
        self._leaves = getattr(policy, "leaves", None)
        self.input_shape = tuple(int(d) for d in self._image_details["shape"][1:])

    def _require_policy(self, method):
        if self.policy is None:
            raise ValueError(
                f"tfee.export.Cascade.{method}: this cascade has no exit "
                "policy; pass one as Cascade(path, policy). Received: policy=None"
            )

    def _check_images(self, images, method):
        images = np.asarray(images)
        if images.ndim == len(self.input_shape):
            images = images[None]
        if images.shape[1:] != self.input_shape or images.dtype.kind != "f":
            raise ValueError(
                f"tfee.export.Cascade.{method}: `images` must be float images of "
                f"shape (batch,) + {self.input_shape}, preprocessed as for the "
                f"network. Received: shape={images.shape}, dtype={images.dtype}"
            )
        return images

    def _check_batch_size(self, batch_size, count, method):
        if batch_size is None:
            return max(count, 1)
        return check_int(batch_size, "batch_size", f"tfee.export.Cascade.{method}")

    def _every_exit(self, images, batch_size, method):
        """(logits, confidences) of every stage for every checked image;
        confidences hold None where a head learns none."""
        batch_size = self._check_batch_size(batch_size, len(images), method)
        logits = [[] for _ in self._stages]
        confidences = [[] for _ in self._stages]
        for start in range(0, len(images), batch_size):
            values = quantize_input(
                images[start : start + batch_size], self._image_details
            )
            for k, stage in enumerate(self._stages):
                outputs = stage(values)
                logits[k].append(dequantize_output(outputs[0], self._logits_details[k]))
                if self._learned[k]:
                    confidences[k].append(
                        dequantize_output(outputs[1], self._confidence_details[k])
                    )
                values = outputs[-1]
        return (
            [np.concatenate(x) for x in logits],
            [np.concatenate(c).reshape(-1) if c else None for c in confidences],
        )

    def exit_logits(self, images, batch_size=None):
        """Every exit's float logits for every sample, as the file computes them.

        Runs every stage on every sample, whatever the policy: for measuring
        a (quantized) file's accuracy per exit.

        Args:
          images: float array (n, height, width, channels), preprocessed as
            for the network (or one image without the batch axis).
          batch_size: samples run together (default: all at once).

        Returns:
          A list of K float32 arrays (n, classes), exit_1 first.

        Raises:
          ValueError: images of the wrong shape or type, or a bad batch size.
        """
        images = self._check_images(images, "exit_logits")
        return self._every_exit(images, batch_size, "exit_logits")[0]

    def collect_outputs(self, images, labels, batch_size=None):
        """`tfee.policy.ExitOutputs` of the file itself, to calibrate a policy on.

        A quantized file's logits differ from the Keras network's, so a
        policy calibrated on Keras outputs can leave at other exits on the
        device. Calibrating on these outputs (`tfee.policy.calibrate`) and
        evaluating on them reports what the device will do.

        Args:
          images: float array (n, height, width, channels), preprocessed as
            for the network.
          labels: integer labels (n,).
          batch_size: samples run together (default: all at once).

        Returns:
          An `ExitOutputs` whose MACs come from the file's metadata.

        Raises:
          ValueError: images of the wrong shape or type, labels that do not
            match them, a bad batch size, or a file exported before its
            metadata recorded the full network's MACs.
        """
        api = "tfee.export.Cascade.collect_outputs"
        labels = np.asarray(labels).reshape(-1)
        images = self._check_images(images, "collect_outputs")
        count = len(images)
        if len(labels) != count or labels.dtype.kind not in "iu":
            raise ValueError(
                f"{api}: `labels` must be {count} integer labels, one per image. "
                f"Received: {len(labels)} labels of dtype {labels.dtype}"
            )
        if "full_macs" not in self.metadata:
            raise ValueError(
                f"{api}: {self.path} has no full_macs in its tfee metadata; "
                "export it again with tfee.export.tflite."
            )
        logits, confidences = self._every_exit(images, batch_size, "collect_outputs")
        learned = None
        if any(c is not None for c in confidences):
            learned = np.stack(
                [np.full(count, np.nan) if c is None else c for c in confidences]
            )
        return outputs_lib.ExitOutputs(
            logits=np.stack(logits),
            confidences=learned,
            labels=labels,
            exit_macs=self.metadata["cumulative_macs"],
            full_macs=self.metadata["full_macs"],
        )

    def run_batch(self, images):
        """One batch through the cascade; returns (logits, exit indices)."""
        self._require_policy("run_batch")
        values = quantize_input(images, self._image_details)
        if len(values) == 1 and self._leaves is not None:
            return self._run_one(values)
        count = len(values)
        state = self.policy.initial_state(count)
        alive = np.arange(count)
        answers = None
        exit_indices = np.full(count, -1, np.int64)
        for k, stage in enumerate(self._stages):
            outputs = stage(values)
            logits = dequantize_output(outputs[0], self._logits_details[k])
            if answers is None:
                answers = np.zeros((count, logits.shape[-1]), np.float32)
            confidence = None
            if self._learned[k]:
                confidence = dequantize_output(outputs[1], self._confidence_details[k])
            leave, state = self.policy.update(state, k, logits, confidence)
            leave = np.asarray(leave, bool)
            if k == self.num_exits - 1:
                leave = np.ones(len(alive), bool)
            answers[alive[leave]] = logits[leave]
            exit_indices[alive[leave]] = k
            stay = ~leave
            if not stay.any():
                break
            values = outputs[-1]
            if not stay.all():  # Copy only when some samples left.
                alive = alive[stay]
                values = values[stay]
        return answers, exit_indices

    def _run_one(self, values):
        """Batch 1 under a policy with `leaves`: no masks, no stream state."""
        for k, stage in enumerate(self._stages):
            outputs = stage(values)
            logits = dequantize_output(outputs[0], self._logits_details[k])
            confidence = None
            if self._learned[k]:
                confidence = dequantize_output(outputs[1], self._confidence_details[k])[
                    0
                ]
            if self._leaves(k, logits[0], confidence):
                return logits, np.array([k], np.int64)
            values = outputs[-1]
        raise AssertionError("the deepest exit answers every sample")

    def predict(self, images, batch_size=None):
        """Predicted classes and the exit that answered each sample.

        Args:
          images: float array (n, height, width, channels), preprocessed as
            for the network (or one image without the batch axis).
          batch_size: samples run together (default: all at once); 1 is the
            on-device setting.

        Returns:
          (predictions, exit_indices): int arrays (n,); exit indices are
          0-based (exit_indices == 0 means exit_1 answered).

        Raises:
          ValueError: images of the wrong shape or type, a bad batch size, or
            a cascade made without a policy.
        """
        self._require_policy("predict")
        images = self._check_images(images, "predict")
        batch_size = self._check_batch_size(batch_size, len(images), "predict")
        predictions, exits = [], []
        for start in range(0, len(images), batch_size):
            logits, exit_indices = self.run_batch(images[start : start + batch_size])
            predictions.append(np.argmax(logits, axis=-1))
            exits.append(exit_indices)
        return np.concatenate(predictions), np.concatenate(exits)
