"""The LiteRT backend: a .tflite's stage signatures run as a cascade.

`Cascade` loads a .tflite written by `tfee.export.tflite` and hands its
`stage_k` signatures to the cascade engine (`tfee.runtime.engine`): stage 1
runs on a batch, the policy decides from the dequantized logits which
samples leave, only the others' features go on to stage 2, and so on.
"""

import os

import numpy as np

from tfee import _flatbuffer
from tfee import naming
from tfee.policy import outputs as outputs_lib
from tfee.policy import policies
from tfee.runtime import _litert
from tfee.runtime import engine
from tfee.runtime.quantization import dequantize_output
from tfee.runtime.quantization import quantize_input

__all__ = ["Cascade", "read_metadata"]


def read_metadata(path):
    """The "tfee" metadata of a .tflite written by `tfee.export.tflite`.

    Args:
      path: the .tflite file.

    Returns:
      A dict (num_exits, exit_names, learned_confidence,
      quantize, signatures, cumulative_macs, full_macs), or {} for other
      files.

    Raises:
      FileNotFoundError: no file at `path`.
    """
    if not isinstance(path, str) or not os.path.isfile(path):
        raise FileNotFoundError(
            f"tfee.runtime.read_metadata: no .tflite file at path={path!r}"
        )
    with open(path, "rb") as f:
        return _flatbuffer.metadata(f.read())


class _Backend:
    """The engine's view of a .tflite's stage signatures (see `engine`)."""

    def __init__(self, interpreter, learned, exit_macs):
        self.num_exits = len(learned)
        self.exit_macs = exit_macs
        self.learned = learned
        self.stages = []
        for k in range(1, self.num_exits + 1):
            wanted = [naming.LOGITS]
            if learned[k - 1]:
                wanted.append(naming.CONFIDENCE)
            if k < self.num_exits:
                wanted.append(naming.features_name(k))
            self.stages.append(
                _litert.SignatureCall(
                    interpreter,
                    naming.stage_name(k),
                    naming.stage_input_name(k),
                    wanted,
                )
            )
        self.image_details = self.stages[0].input_details

    def prepare(self, images):
        return quantize_input(images, self.image_details, "tfee.runtime.Cascade")

    def run_stage(self, k, inputs):
        stage = self.stages[k]
        outputs = stage(inputs)
        details = stage.output_details
        logits = dequantize_output(outputs[0], details[naming.LOGITS])
        confidence = None
        if self.learned[k]:
            confidence = dequantize_output(
                outputs[1], details[naming.CONFIDENCE]
            ).reshape(-1)
        features = outputs[-1] if k < self.num_exits - 1 else None
        return engine.StageOutputs(logits, confidence, features)

    def ceilings(self):
        """Per exit, the largest learned confidence it can output (or None)."""
        return [
            (
                engine.confidence_ceiling(stage.output_details[naming.CONFIDENCE])
                if learned
                else None
            )
            for stage, learned in zip(self.stages, self.learned)
        ]

    @staticmethod
    def select(features, keep):
        return features[keep]


class Cascade:
    """Runs a multi-signature .tflite as an early-exit cascade under a policy.

    Args:
      path: a .tflite from `tfee.export.tflite` with stage_1..stage_K.
      policy: a tfee policy with K exits (e.g. from `tfee.calibrate`); None
        for a cascade that only computes `exit_logits` / `collect_outputs`.
      num_threads: LiteRT CPU threads.

    Raises:
      FileNotFoundError: `path` does not exist.
      TypeError: `policy` is not a tfee policy.
      ValueError: the file lacks stage signatures, or the policy's exit count
        differs from the file's.

    Example:
      >>> cascade = tfee.runtime.Cascade("net.tflite", policy)
      >>> result = cascade.predict(test_images, batch_size=1)
      >>> result.predictions, result.exit_indices, result.mean_macs
      >>> # What the file itself computes at every exit, e.g. to calibrate:
      >>> logits = tfee.runtime.Cascade("net.tflite").exit_logits(val_images)
    """

    def __init__(self, path, policy=None, num_threads=1):
        from ai_edge_litert.interpreter import Interpreter

        api = "tfee.runtime.Cascade"
        if not isinstance(path, str) or not os.path.isfile(path):
            raise FileNotFoundError(f"{api}: no .tflite file at path={path!r}")
        self.metadata = read_metadata(path)
        interpreter = Interpreter(model_path=path, num_threads=num_threads)
        available = interpreter.get_signature_list()
        stages = [n for n in available if naming.parse_signature(n)]
        stages = sorted(
            (n for n in stages if naming.parse_signature(n)[0] == naming.STAGE),
            key=lambda n: naming.parse_signature(n)[1],
        )
        expected = [naming.stage_name(k) for k in range(1, len(stages) + 1)]
        if not stages or stages != expected:
            raise ValueError(
                f"{api}: {path} needs the signatures stage_1..stage_K (export "
                "them with tfee.export.tflite(signatures=None)). Received "
                f"signatures: {sorted(available)}"
            )
        learned = self.metadata.get("learned_confidence", [False] * len(stages))
        if policy is not None:
            policies.check_policy(policy, len(stages), learned, api)
        self.path = path
        self.policy = policy
        self.num_exits = len(stages)
        self._backend = _Backend(
            interpreter, learned, self.metadata.get("cumulative_macs")
        )
        if policy is not None:
            engine.warn_unreachable(policy, self._backend.ceilings(), api)
        self.input_shape = tuple(
            int(d) for d in self._backend.image_details["shape"][1:]
        )

    def _require_policy(self, method):
        if self.policy is None:
            raise ValueError(
                f"tfee.runtime.Cascade.{method}: this cascade has no exit "
                "policy; pass one as Cascade(path, policy). Received: policy=None"
            )

    def _check_images(self, images, method):
        return engine.check_images(
            images, self.input_shape, f"tfee.runtime.Cascade.{method}"
        )

    def _every_exit(self, images, batch_size, method):
        """(logits, confidences) of every stage for every checked image;
        confidences hold None where a head learns none."""
        api = f"tfee.runtime.Cascade.{method}"
        batch_size = engine.batch_size(batch_size, len(images), api)
        backend = self._backend
        logits = [[] for _ in range(self.num_exits)]
        confidences = [[] for _ in range(self.num_exits)]
        for start in range(0, len(images), batch_size):
            values = backend.prepare(images[start : start + batch_size])
            for k in range(self.num_exits):
                outputs = backend.run_stage(k, values)
                logits[k].append(outputs.logits)
                if outputs.confidence is not None:
                    confidences[k].append(outputs.confidence)
                values = outputs.features
        return (
            [np.concatenate(x) for x in logits],
            [np.concatenate(c) if c else None for c in confidences],
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
        api = "tfee.runtime.Cascade.collect_outputs"
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

    def predict_batch(self, images):
        """One batch through the cascade; returns a `CascadeResult`."""
        self._require_policy("predict_batch")
        images = self._check_images(images, "predict_batch")
        return engine.run(self._backend, self.policy, images)

    def predict(self, images, batch_size=None):
        """The cascade's answers: classes, exits taken, their logits and MACs.

        Args:
          images: float array (n, height, width, channels), preprocessed as
            for the network (or one image without the batch axis).
          batch_size: samples run together (default: all at once); 1 is the
            on-device setting.

        Returns:
          A `CascadeResult`; exit indices are 0-based (0 means exit_1).

        Raises:
          ValueError: images of the wrong shape or type, a bad batch size, or
            a cascade made without a policy.
        """
        self._require_policy("predict")
        images = self._check_images(images, "predict")
        size = engine.batch_size(batch_size, len(images), "tfee.runtime.Cascade")
        if size >= len(images):
            return engine.run(self._backend, self.policy, images)
        return engine.CascadeResult.concatenate(
            [
                engine.run(self._backend, self.policy, images[i : i + size])
                for i in range(0, len(images), size)
            ]
        )
