"""The LiteRT backend: a .tflite's stage signatures run as a cascade.

`Cascade` loads a .tflite written by `tfee.export.tflite` and hands its
`stage_k` signatures to the cascade engine (`tfee.runtime.engine`): stage 1
runs on a batch, the policy decides from the dequantized logits which
samples leave, only the others' features go on to stage 2, and so on.
"""

import os
import struct
import time

import numpy as np

from tfee import _flatbuffer
from tfee import naming
from tfee import rules
from tfee._checks import check_int
from tfee.policy import base_policy
from tfee.policy import compatibility
from tfee.policy import outputs as outputs_lib
from tfee.policy import threshold_policy
from tfee.policy.costs import ExitCosts
from tfee.runtime import _litert
from tfee.runtime import engine
from tfee.runtime.quantization import dequantize_output
from tfee.runtime.quantization import quantize_input
from tfee.runtime.quantization import quantizer
from tfee.runtime.quantization import row_dequantizer

__all__ = [
    "CASCADING_METADATA_FORMAT",
    "Cascade",
    "METADATA_FORMAT",
    "embedded_policy",
    "read_metadata",
]


# The "tfee" metadata entry of an exported .tflite: a JSON document whose
# fields docs/tflite_metadata.md specifies. Older files are upgraded on read.
METADATA_FORMAT = "tfee.export.tflite/3"
# Format 3 plus `previous_logits`: a stage may read two inputs. Written only
# for networks with cascading heads, so that a format-3 reader refuses a file
# it would run wrongly (feeding one input) and still reads every other file.
CASCADING_METADATA_FORMAT = "tfee.export.tflite/4"
_FORMAT_2 = "tfee.export.tflite/2"
_READABLE = (_FORMAT_2, METADATA_FORMAT, CASCADING_METADATA_FORMAT)


def metadata_format(exits):
    """The format a document with these `exits` descriptions is written in."""
    if any(e["previous_logits"] is not None for e in exits):
        return CASCADING_METADATA_FORMAT
    return METADATA_FORMAT


def exit_description(
    k, num_exits, name, signatures, learned, cumulative_macs, cascading=False
):
    """`exits[k-1]` of the metadata document (docs/tflite_metadata.md)."""

    def present(signature):
        return signature if signature in signatures else None

    return {
        "name": name,
        "exit_signature": present(naming.exit_name(k)),
        "stage_signature": present(naming.stage_name(k)),
        "stage_input": naming.stage_input_name(k),
        # A cascading head's stage also reads stage k-1's logits output.
        "previous_logits": naming.previous_logits_name(k) if cascading else None,
        "logits": naming.LOGITS,
        "confidence": naming.CONFIDENCE if learned else None,
        "features": naming.features_name(k) if k < num_exits else None,
        "cumulative_macs": cumulative_macs,
    }


def _upgrade_format_2(metadata):
    """A format-2 document (flat per-exit lists, no policy) in format 3."""
    count = metadata["num_exits"]
    learned = metadata.get("learned_confidence", [False] * count)
    macs = metadata.get("cumulative_macs", [None] * count)
    signatures = metadata.get("signatures", [])
    exits = [
        exit_description(
            k,
            count,
            metadata["exit_names"][k - 1],
            signatures,
            learned[k - 1],
            macs[k - 1],
        )
        for k in range(1, count + 1)
    ]
    upgraded = dict(metadata, format=METADATA_FORMAT, exits=exits)
    upgraded.setdefault("policy", None)
    upgraded.setdefault("labels", None)
    upgraded.setdefault("input", None)
    return upgraded


def read_metadata(path):
    """The "tfee" metadata of a .tflite written by `tfee.export.tflite`.

    The format (docs/tflite_metadata.md) is a JSON document in the
    flatbuffer's standard `metadata` list, so any LiteRT client reads it
    (Python: `ai_edge_litert.schema_py_generated`; C++:
    `tflite::FlatBufferModel::ReadAllMetadata`).

    Args:
      path: the .tflite file.

    Returns:
      A dict (format, num_exits, exits, full_macs, policy, input, labels,
      quantize, signatures), or {} for a file tfee did not export.

    Raises:
      FileNotFoundError: no file at `path`.
      ValueError: metadata in a format this version cannot read.
    """
    if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
        raise FileNotFoundError(
            f"tfee.runtime.read_metadata: no .tflite file at path={path!r}"
        )
    with open(path, "rb") as f:
        data = f.read()
    if not _flatbuffer.is_tflite(data):
        raise ValueError(
            f"tfee.runtime.read_metadata: {path} is not a .tflite file (no TFLite "
            "identifier: a .keras or another file?). Received: "
            f"{len(data)} bytes starting {bytes(data[:8])!r}"
        )
    try:
        metadata = _flatbuffer.metadata(data)
    except (struct.error, IndexError, UnicodeDecodeError, ValueError) as error:
        raise ValueError(
            f"tfee.runtime.read_metadata: {path} is a truncated or corrupt .tflite "
            f"({type(error).__name__}: {error}); export it again"
        ) from None
    if not metadata:
        return {}
    if metadata.get("format") == _FORMAT_2:
        metadata = _upgrade_format_2(metadata)
    if metadata.get("format") not in _READABLE:
        raise ValueError(
            f"tfee.runtime.read_metadata: {path} holds tfee metadata in format "
            f"{metadata.get('format')!r}; this tfee reads {list(_READABLE)}. "
            "Export the network again."
        )
    # Files written before tfee.include_normalisation lack the field.
    if isinstance(metadata.get("input"), dict):
        metadata["input"].setdefault("normalised_in_model", None)
    # ... and before cascading heads.
    for description in metadata["exits"]:
        description.setdefault("previous_logits", None)
    return metadata


def embedded_policy(metadata):
    """The policy stored in a file's metadata, or None."""
    stored = metadata.get("policy")
    return None if stored is None else base_policy.Policy.from_dict(stored)


class _Backend:
    """The engine's view of a .tflite's stage signatures (see `engine`)."""

    def __init__(self, interpreter, exits):
        self.num_exits = len(exits)
        self.exit_macs = [e["cumulative_macs"] for e in exits]
        self.learned = [e["confidence"] is not None for e in exits]
        # Per stage but the last, the outputs it hands the next one, in order.
        self._handed_on = [
            [
                out
                for out, _ in naming.handed_on(
                    k, [e["stage_input"], e["previous_logits"]]
                )
            ]
            for k, e in enumerate(exits[1:], start=1)
        ]
        self.stages = []
        for k, description in enumerate(exits, start=1):
            wanted = [naming.LOGITS]
            if self.learned[k - 1]:
                wanted.append(naming.CONFIDENCE)
            if k < self.num_exits:
                wanted += [n for n in self._handed_on[k - 1] if n not in wanted]
            inputs = [description["stage_input"]]
            if description["previous_logits"] is not None:
                inputs.append(description["previous_logits"])
            self.stages.append(
                _litert.SignatureCall(
                    interpreter, description["stage_signature"], inputs, wanted
                )
            )
        # Where the handed-on tensors are among each call's outputs, found once
        # (not per sample: the batch-1 loop is the device's hot path).
        self._handed_on_positions = [
            [stage.output_names.index(n) for n in names]
            for stage, names in zip(self.stages, self._handed_on)
        ]
        self.image_details = self.stages[0].input_details
        logits_details = [stage.output_details[naming.LOGITS] for stage in self.stages]
        self.num_classes = int(logits_details[0]["shape"][-1])
        # The batch-1 path's (de)quantizers, each with its buffer (`run_row`).
        self._row_image = quantizer(
            self.image_details,
            (1,) + tuple(self.image_details["shape"][1:]),
            "tfee.Cascade",
        )
        self._row_logits = [row_dequantizer(d) for d in logits_details]
        self._row_confidence = [
            (
                row_dequantizer(stage.output_details[naming.CONFIDENCE])
                if learned
                else None
            )
            for stage, learned in zip(self.stages, self.learned)
        ]

    def prepare(self, images):
        if len(images) == 1:
            return self._row_image(images)
        return quantize_input(images, self.image_details, "tfee.Cascade")

    def run_stage(self, k, inputs):
        stage = self.stages[k]
        # Stage 1 reads the images; later stages what the previous one carried.
        outputs = stage(*(inputs if k else [inputs]))
        details = stage.output_details
        logits = dequantize_output(outputs[0], details[naming.LOGITS])
        confidence = None
        if self.learned[k]:
            confidence = dequantize_output(
                outputs[1], details[naming.CONFIDENCE]
            ).reshape(-1)
        carried = None
        if k < self.num_exits - 1:
            # The raw (int8 in an int8 file) tensors: their scales chain.
            carried = [outputs[i] for i in self._handed_on_positions[k]]
        return engine.StageOutputs(logits, confidence, carried)

    def run_row(self, k, inputs):
        """`run_stage` for one image, on the interpreter's own buffers: the
        arrays returned are valid until stage k runs again (`engine`)."""
        outputs = self.stages[k].row(*(inputs if k else [inputs]))
        confidence = self._row_confidence[k]
        if confidence is not None:
            confidence = confidence(outputs[1])
        carried = None
        if k < self.num_exits - 1:
            carried = [outputs[i] for i in self._handed_on_positions[k]]
        # One row of Python floats: the engine's row rules read them so.
        return engine.StageOutputs(
            [self._row_logits[k](outputs[0])], confidence, carried
        )

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
        return [values[keep] for values in features]


class Cascade:
    """Runs a multi-signature .tflite as an early-exit cascade under a policy.

    Args:
      path: a .tflite from `tfee.export.tflite` with stage_1..stage_K.
      policy: a tfee policy with K exits (e.g. from `tfee.calibrate`); None
        for the policy embedded in the file (`tfee.export.tflite(policy=)`,
        `tfee.export.set_policy`), and where it holds none, a cascade that
        only computes `exit_logits` / `collect_outputs`.
      num_threads: LiteRT CPU threads.

    Raises:
      FileNotFoundError: `path` does not exist.
      TypeError: `policy` is not a tfee policy.
      ValueError: the file lacks tfee metadata or stage signatures, or the
        policy's exit count differs from the file's.

    Example:
      >>> cascade = tfee.Cascade("net.tflite", policy)
      >>> result = cascade.predict(test_images, batch_size=1)
      >>> result.predictions, result.exit_indices, result.mean_macs
      >>> # What the file itself computes at every exit, e.g. to calibrate:
      >>> logits = tfee.Cascade("net.tflite").exit_logits(val_images)
    """

    def __init__(self, path, policy=None, num_threads=1):
        from ai_edge_litert.interpreter import Interpreter

        api = "tfee.Cascade"
        if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
            raise FileNotFoundError(f"{api}: no .tflite file at path={path!r}")
        self.metadata = read_metadata(path)
        if not self.metadata:
            raise ValueError(
                f"{api}: {path} has no tfee metadata (the exits, their outputs "
                "and MACs); run files written by tfee.export.tflite."
            )
        interpreter = Interpreter(model_path=os.fspath(path), num_threads=num_threads)
        available = interpreter.get_signature_list()
        exits = self.metadata["exits"]
        stages = [e["stage_signature"] for e in exits]
        if None in stages or not set(stages) <= set(available):
            raise ValueError(
                f"{api}: {path} needs the signatures stage_1..stage_{len(exits)} "
                "(export them with tfee.export.tflite(signatures=None)). "
                f"Received signatures: {sorted(available)}"
            )
        learned = [e["confidence"] is not None for e in exits]
        if policy is None:
            policy = embedded_policy(self.metadata)
        self._backend = _Backend(interpreter, exits)
        if policy is not None:
            compatibility.check_policy(
                policy,
                len(stages),
                learned,
                api,
                exit_macs=self._backend.exit_macs,
                classes=self._backend.num_classes,
            )
        self.path = path
        self.policy = policy
        self.num_exits = len(stages)
        self.num_classes = self._backend.num_classes
        self._interpreter = interpreter
        self.num_threads = num_threads
        if policy is not None:
            engine.warn_unreachable(policy, self._backend.ceilings(), api)
        self.input_shape = tuple(
            int(d) for d in self._backend.image_details["shape"][1:]
        )

    def _require_policy(self, method):
        if self.policy is None:
            raise ValueError(
                f"tfee.Cascade.{method}: this cascade has no exit "
                "policy and its file embeds none; pass one as Cascade(path, "
                "policy) or embed one with tfee.export.set_policy. "
                "Received: policy=None"
            )

    def _check_images(self, images, method):
        return engine.check_images(images, self.input_shape, f"tfee.Cascade.{method}")

    def _every_exit(self, images, batch_size, method):
        """(logits, confidences) of every stage for every checked image;
        confidences hold None where a head learns none."""
        api = f"tfee.Cascade.{method}"
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
        images, _ = self._check_images(images, "exit_logits")
        return self._every_exit(images, batch_size, "exit_logits")[0]

    def collect_outputs(self, images, labels, batch_size=None):
        """`tfee.policy.ExitOutputs` of the file itself, to calibrate a policy on.

        A quantized file's logits differ from the Keras network's, so a
        policy calibrated on Keras outputs can leave at other exits on the
        device. Calibrating on these outputs (`tfee.calibrate`) and
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
        api = "tfee.Cascade.collect_outputs"
        labels = np.asarray(labels).reshape(-1)
        images, _ = self._check_images(images, "collect_outputs")
        count = len(images)
        if len(labels) != count or labels.dtype.kind not in "iu":
            raise ValueError(
                f"{api}: `labels` must be {count} integer labels, one per image. "
                f"Received: {len(labels)} labels of dtype {labels.dtype}"
            )
        macs = [e["cumulative_macs"] for e in self.metadata["exits"]]
        if "full_macs" not in self.metadata or None in macs:
            raise ValueError(
                f"{api}: {self.path} has no MACs in its tfee metadata; "
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
            exit_macs=macs,
            full_macs=self.metadata["full_macs"],
        )

    def profile(self, images, warmup=10):
        """Each exit's latency on this machine, measured: `ExitCosts` in ms.

        MACs do not say what a cascade costs on LiteRT: an int8 network's
        first stages run slower per MAC than its later ones, and each stage
        adds a call and a decision. This times `predict(image,
        batch_size=1)` itself, once per exit k on each image, under a policy
        that makes the image leave at exit k (threshold 0 there, 1 before,
        so every earlier exit still computes its score); exit k's cost is
        the mean over the images that left there, warm (after `warmup`
        untimed images), the exits taking turns image by image so that
        drift in machine load hits them alike. Means, not medians: a
        budget (`tfee.calibrate(cost_budget=)`) bounds the mean latency,
        slow calls included. Costs that noise leaves out of order are
        raised to the cost of the exit before. The full model's cost is the
        file's `exit_K` signature (the network without exits) called as
        lean as a client can (quantize, copy in, invoke, arg-max), where the
        file has it. Give `tfee.calibrate(..., costs=)`
        the result to calibrate for time on this machine.

        Args:
          images: float images (n, height, width, channels) preprocessed as
            for the network, e.g. validation images; 200 or more give
            stable medians.
          warmup: images run untimed first.

        Returns:
          A `tfee.policy.ExitCosts` (unit "ms").

        Raises:
          ValueError: images of the wrong shape or type, or non-finite ones
            (they never leave early: time finite images).
        """
        api = "tfee.Cascade.profile"
        images, blocked = self._check_images(images, "profile")
        if blocked.any():
            raise ValueError(
                f"{api}: time finite images; rows {np.flatnonzero(blocked)[:10]} "
                "hold NaN or infinity."
            )
        warmup = check_int(warmup, "warmup", api, minimum=0)
        count = self.num_exits
        rule = getattr(self.policy, "rule", None) or "max_softmax"
        leave_at = [
            threshold_policy.ThresholdPolicy(
                [1.0] * k + [0.0] * min(1, count - 1 - k) + [None] * (count - 2 - k),
                rule,
            )
            for k in range(count)
        ]
        full = self._full_model_call()
        clock = time.perf_counter
        order = [i % len(images) for i in range(warmup)] + list(range(len(images)))
        seconds = [[] for _ in range(count + 1)]
        for row, i in enumerate(order):
            image = images[i]
            for k in np.roll(np.arange(count + 1), row):
                if k == count and full is None:
                    continue
                start = clock()
                if k < count:
                    left = self._predict(image, 1, leave_at[k]).exit_indices[0]
                else:
                    left = full(image)
                spent = clock() - start
                if row >= warmup and (k == count or left == k):
                    seconds[k].append(spent)
        if not all(seconds[:count]):
            raise ValueError(
                f"{api}: no image left at exits "
                f"{[k + 1 for k in range(count) if not seconds[k]]} (their scores "
                "are all exactly 1); time other images."
            )
        mean = [1e3 * float(np.mean(s)) for s in seconds[:count]]
        return ExitCosts(
            tuple(np.maximum.accumulate(mean)),
            unit="ms",
            full_cost=1e3 * float(np.mean(seconds[-1])) if full else None,
            source=f"tfee.Cascade.profile: {os.path.basename(self.path)}, "
            f"{len(images)} images at batch 1, means, LiteRT CPU, "
            f"{self.num_threads} thread(s)",
        )

    def _full_model_call(self):
        """The file's exit_K signature called lean on one image (None where
        the file lacks it): the full model a client would run instead."""
        deepest = self.metadata["exits"][-1]["exit_signature"]
        if deepest is None:
            return None
        (image_name,) = self._interpreter.get_signature_runner(
            deepest
        ).get_input_details()
        call = _litert.SignatureCall(
            self._interpreter, deepest, image_name, [naming.LOGITS]
        )
        backend, scorer = self._backend, rules.RowScores(self._backend.num_classes)
        return lambda image: scorer.prediction(
            call.row(backend.prepare(image[None]))[0][0]
        )

    def predict_batch(self, images):
        """One batch through the cascade; returns a `CascadeResult`."""
        self._require_policy("predict_batch")
        images, blocked = self._check_images(images, "predict_batch")
        return engine.run(self._backend, self.policy, images, blocked)

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
        return self._predict(images, batch_size, self.policy)

    def _predict(self, images, batch_size, policy):
        images, blocked = self._check_images(images, "predict")
        size = engine.batch_size(batch_size, len(images), "tfee.Cascade")
        result = engine.empty_result(len(images), self._backend.num_classes)
        for i in range(0, len(images), size):
            engine.run(
                self._backend,
                policy,
                images[i : i + size],
                blocked[i : i + size],
                out=result,
                at=i,
            )
        return result
