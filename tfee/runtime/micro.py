"""The TensorFlow Lite Micro backend: per-stage int8 models in the real interpreter.

`MicroCascade` runs the stage models `tfee.export.micro` writes in the
TensorFlow Lite Micro interpreter of the `tflite-micro` package (the same
kernels a microcontroller runs), one sample at a time as on the device, and
hands them to the cascade engine. Its decisions are those of the generated
C++: dequantized logits, `tfee.rules`, the same loop. Stages exported with
`compress="lut"` run as the device runs them: that interpreter registers
the DECODE operator that expands their look-up-table weights, in the arena
the manifest gives.
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from tfee import naming
from tfee.policy import base_policy
from tfee.policy import compatibility
from tfee.runtime import engine
from tfee.runtime.quantization import dequantize_output
from tfee.runtime.quantization import quantize_input

__all__ = [
    "CASCADING_MANIFEST_FORMAT",
    "MANIFEST_FORMAT",
    "MicroCascade",
    "measure_arena",
    "measure_arenas",
]

# The manifest tfee.export.micro writes beside the stage models.
MANIFEST_FORMAT = "tfee.export.micro/1"
# Format 1 plus stages with two inputs (cascading heads, `inputs` per stage):
# written only then, so that a format-1 reader refuses what it would run
# wrongly and still reads every other manifest.
CASCADING_MANIFEST_FORMAT = "tfee.export.micro/2"


# Probes arenas in a child process: the interpreter of `tflite-micro` can
# crash (not fail) when an arena is too small, which must not take the
# caller down. Its arguments are the alignment, then per model its path and
# the (low, high) bracket to bisect; per model it prints "try I N", then
# "ok I N" or "fail I N", for every size it tries.
_PROBE = """
import sys
import numpy as np
from tflite_micro import runtime

alignment = int(sys.argv[1])
jobs = sys.argv[2:]
for i in range(0, len(jobs), 4):
    index, path, low, high = jobs[i], jobs[i + 1], int(jobs[i + 2]), int(jobs[i + 3])
    data = open(path, "rb").read()
    while high - low > alignment:
        size = (low + high) // 2 // alignment * alignment
        if size <= low:
            break
        print("try", index, size, flush=True)
        try:
            interpreter = runtime.Interpreter.from_bytes(data, arena_size=size)
            details = interpreter.get_input_details(0)
            interpreter.set_input(np.zeros(details["shape"], details["dtype"]), 0)
            interpreter.invoke()
            print("ok", index, size, flush=True)
            high = size
        except RuntimeError:
            print("fail", index, size, flush=True)
            low = size
"""


def _runs(data, arena_size):
    from tflite_micro import runtime

    try:
        interpreter = runtime.Interpreter.from_bytes(data, arena_size=arena_size)
        details = interpreter.get_input_details(0)
        interpreter.set_input(np.zeros(details["shape"], details["dtype"]), 0)
        interpreter.invoke()
    except RuntimeError:
        return False
    return True


_BYTES = (bytes, bytearray, memoryview)


def _model_bytes(data, api):
    """`data` as bytes; a TypeError naming `api` for anything else (a path,
    say)."""
    if not isinstance(data, _BYTES):
        raise TypeError(
            f"{api}: a model must be the .tflite file's bytes (open(path, "
            f"'rb').read()). Received: {type(data).__name__}"
        )
    return bytes(data)


def measure_arena(data, alignment=16):
    """The smallest tensor arena in which TFLite Micro runs a model, in bytes.

    Bisects `arena_size` of the real interpreter (`tflite-micro`): the model
    must allocate its tensors and invoke. The probes run in a child process,
    because too small an arena can crash that interpreter instead of making
    it fail; a crash counts as a failure. The interpreter runs on this
    machine, where pointers are 8 bytes; a 32-bit microcontroller's
    persistent allocations are smaller, so the figure is an upper bound there.

    Args:
      data: the .tflite model bytes.
      alignment: the result is a multiple of this.

    Returns:
      An int.

    Raises:
      TypeError: `data` is not bytes (a path, say).
      ValueError: the model does not run in TensorFlow Lite Micro (an
        operator TFLM lacks, for instance).
    """
    return measure_arenas(
        [_model_bytes(data, "tfee.runtime.measure_arena")], alignment
    )[0]


def measure_arenas(models, alignment=16):
    """`measure_arena` of several models, probed in one child process (a
    process and its imports cost more than a tiny model's probes); a crash
    restarts it where it stopped.

    Args:
      models: a list of .tflite model bytes.
      alignment: every result is a multiple of this.

    Returns:
      A list of ints, one per model.

    Raises:
      TypeError: `models` is one model, or holds something other than bytes.
      ValueError: a model does not run in TensorFlow Lite Micro.
    """
    if isinstance(models, _BYTES):
        raise TypeError(
            "tfee.runtime.measure_arenas: `models` must be a list of .tflite "
            "model bytes; measure_arena takes a single model. Received: one "
            f"{type(models).__name__} of {len(models)} bytes"
        )
    models = [_model_bytes(data, "tfee.runtime.measure_arenas") for data in models]
    brackets = []
    for data in models:
        high = max(1 << 20, 16 * len(data))
        if not _runs(data, high):
            raise ValueError(
                "tfee.runtime.measure_arenas: a model does not run in TensorFlow "
                f"Lite Micro even with an arena of {high} bytes (an operator it "
                f"lacks?). Received: a model of {len(data)} bytes"
            )
        brackets.append([0, high])
    with tempfile.TemporaryDirectory() as directory:
        paths = []
        for i, data in enumerate(models):
            paths.append(os.path.join(directory, f"model_{i}.tflite"))
            with open(paths[-1], "wb") as f:
                f.write(data)
        while True:
            open_ = [
                i for i, (low, high) in enumerate(brackets) if high - low > alignment
            ]
            if not open_:
                break
            jobs = []
            for i in open_:
                jobs += [str(i), paths[i], str(brackets[i][0]), str(brackets[i][1])]
            child = subprocess.run(
                [sys.executable, "-c", _PROBE, str(alignment), *jobs],
                capture_output=True,
                text=True,
                check=False,
            )
            tried = None
            for word, index, size in (
                line.split() for line in child.stdout.splitlines()
            ):
                index, size = int(index), int(size)
                if word == "try":
                    tried = (index, size)
                elif word == "ok":
                    brackets[index][1], tried = size, None
                else:
                    brackets[index][0], tried = size, None
            if child.returncode == 0:
                break
            if tried is None:
                raise RuntimeError(
                    "tfee.runtime.measure_arena: the probing process failed: "
                    + child.stderr[-500:]
                )
            brackets[tried[0]][0] = tried[1]  # It crashed on this size: too small.
    return [high for _, high in brackets]


def _details(details):
    """TFLM tensor details in the form `tfee.runtime.quantization` reads."""
    parameters = details.get("quantization_parameters") or {}
    scales = parameters.get("scales", [])
    zero_points = parameters.get("zero_points", [])
    quantization = (float(scales[0]), int(zero_points[0])) if len(scales) else (0.0, 0)
    return {
        "dtype": details["dtype"],
        "shape": tuple(details["shape"]),
        "quantization": quantization,
    }


def _read_manifest(path, api):
    if not isinstance(path, str):
        raise TypeError(
            f"{api}: `manifest` must be the path of a *_manifest.json written by "
            f"tfee.export.micro. Received: manifest={path!r}"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{api}: no manifest file at manifest={path!r}")
    with open(path) as f:
        try:
            manifest = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{api}: {path} is not valid JSON ({error})") from error
    readable = (MANIFEST_FORMAT, CASCADING_MANIFEST_FORMAT)
    if not isinstance(manifest, dict) or manifest.get("format") not in readable:
        raise ValueError(
            f'{api}: {path} is not a tfee micro manifest (expected "format" '
            f"in {list(readable)}). Received: format="
            f'{manifest.get("format") if isinstance(manifest, dict) else manifest!r}'
        )
    return manifest


class _Backend:
    """The engine's view of the stage models (see `engine`)."""

    def __init__(self, manifest, directory):
        from tflite_micro import runtime

        self.num_exits = manifest["num_exits"]
        self.exit_macs = manifest.get("cumulative_macs")
        self.learned = [
            naming.CONFIDENCE in stage["outputs"] for stage in manifest["stages"]
        ]
        self.stages = []
        for k, stage in enumerate(manifest["stages"], start=1):
            path = os.path.join(directory, stage["model"])
            # The arena the export measured and wrote into the firmware: a
            # model that needs more fails here as it would on the device.
            interpreter = runtime.Interpreter.from_file(
                path, arena_size=int(stage["arena_bytes"])
            )
            outputs = stage["outputs"]
            # Manifests before cascading heads name no inputs: one, at 0.
            inputs = stage.get("inputs") or {naming.stage_input_name(k): 0}
            # In the order stage k-1 hands them on: features (or the image),
            # then exit k-1's logits for a cascading head.
            names = [
                n
                for n in (naming.stage_input_name(k), naming.previous_logits_name(k))
                if n in inputs
            ]
            self.stages.append(
                {
                    "interpreter": interpreter,
                    "names": names,
                    "inputs": [inputs[n] for n in names],
                    # The image or features input (stage 1's is quantized to).
                    "input": _details(interpreter.get_input_details(inputs[names[0]])),
                    "outputs": {
                        name: (index, _details(interpreter.get_output_details(index)))
                        for name, index in outputs.items()
                    },
                }
            )
        logits = self.stages[0]["outputs"][naming.LOGITS][1]
        self.num_classes = int(logits["shape"][-1])

    def prepare(self, images):
        return quantize_input(
            images, self.stages[0]["input"], "tfee.runtime.MicroCascade"
        )

    def raw_stage(self, k, inputs):
        """Stage k's integer outputs for every row: {name: (batch, ...) array}.

        `inputs`: the int8 images for k = 0, else what stage k-1 carried (a
        list: features, and its logits for a cascading stage)."""
        stage = self.stages[k]
        interpreter = stage["interpreter"]
        inputs = inputs if k else [inputs]
        rows = {name: [] for name in stage["outputs"]}
        for i in range(len(inputs[0])):
            for position, values in zip(stage["inputs"], inputs):
                interpreter.set_input(values[i][None], position)
            interpreter.invoke()
            for name, (index, _) in stage["outputs"].items():
                rows[name].append(np.array(interpreter.get_output(index)))
        return {name: np.concatenate(v) for name, v in rows.items()}

    def run_stage(self, k, inputs):
        values = self.raw_stage(k, inputs)
        details = {name: d for name, (_, d) in self.stages[k]["outputs"].items()}
        confidence = None
        if naming.CONFIDENCE in values:
            confidence = dequantize_output(
                values[naming.CONFIDENCE], details[naming.CONFIDENCE]
            ).reshape(-1)
        return engine.StageOutputs(
            dequantize_output(values[naming.LOGITS], details[naming.LOGITS]),
            confidence,
            self.carried(k, values),
        )

    def carried(self, k, values):
        """What stage k hands stage k+1 from its raw outputs (None after the
        last): features_k, plus its int8 logits for a cascading stage k+1."""
        if k + 1 >= self.num_exits:
            return None
        next_inputs = self.stages[k + 1]["names"]
        return [values[out] for out, _ in naming.handed_on(k + 1, next_inputs)]

    def ceilings(self):
        """Per exit, the largest learned confidence it can output (or None)."""
        return [
            (
                engine.confidence_ceiling(stage["outputs"][naming.CONFIDENCE][1])
                if naming.CONFIDENCE in stage["outputs"]
                else None
            )
            for stage in self.stages
        ]

    @staticmethod
    def select(features, keep):
        return [values[keep] for values in features]


class MicroCascade:
    """Runs `tfee.export.micro`'s stage models as a cascade in TFLite Micro.

    Args:
      manifest: the `{name}_manifest.json` path (`MicroExport.manifest_path`).
      policy: a tfee policy for the models' number of exits; None for the
        one the export compiled into the firmware (the manifest holds it),
        as `tfee.Cascade(path)` reads a file's embedded policy.

    Raises:
      FileNotFoundError: no manifest (or a stage model) at the path.
      TypeError: a bad manifest argument or policy.
      ValueError: not a tfee micro manifest, a policy for another number
        of exits, or no policy where the manifest holds none.

    Example:
      >>> export = tfee.export.micro(net, "firmware/", val_images, policy=policy)
      >>> result = tfee.runtime.MicroCascade(export.manifest_path, policy).predict(x)
    """

    def __init__(self, manifest, policy=None):
        api = "tfee.runtime.MicroCascade"
        data = _read_manifest(manifest, api)
        if policy is None:
            if data.get("policy") is None:
                raise ValueError(
                    f"{api}: {manifest} holds no policy (exported with "
                    "policy=None, or before manifests recorded it); pass one. "
                    "Received: policy=None"
                )
            policy = base_policy.Policy.from_dict(data["policy"])
        self._backend = _Backend(data, os.path.dirname(os.path.abspath(manifest)))
        self.policy = compatibility.check_policy(
            policy,
            data["num_exits"],
            self._backend.learned,
            api,
            exit_macs=self._backend.exit_macs,
            classes=self._backend.num_classes,
        )
        self.num_exits = data["num_exits"]
        engine.warn_unreachable(policy, self._backend.ceilings(), api)
        self.input_shape = self._backend.stages[0]["input"]["shape"][1:]

    def _check_images(self, images, api):
        return engine.check_images(images, self.input_shape, api)

    def exit_outputs(self, images):
        """Every exit's outputs for every sample, as the models compute them.

        Returns:
          (logits, confidences): K float32 arrays (n, classes), dequantized,
          and K arrays (n,) of learned confidences (NaN where a head learns
          none); the inputs of `policy.exit_indices` and `calibrate`.
        """
        images, _ = self._check_images(images, "tfee.runtime.MicroCascade.exit_outputs")
        values = self._backend.prepare(images)
        logits, confidences = [], []
        for k in range(self.num_exits):
            outputs = self._backend.run_stage(k, values)
            logits.append(outputs.logits)
            confidences.append(
                np.full(len(images), np.nan)
                if outputs.confidence is None
                else outputs.confidence
            )
            values = outputs.features
        return logits, confidences

    def raw_outputs(self, images):
        """Per stage, its integer outputs in the model's output order.

        What firmware sees: for stage k a list, by output index, of
        (values (n, ...), (scale, zero_point)); stages run chained.
        """
        images, _ = self._check_images(images, "tfee.runtime.MicroCascade.raw_outputs")
        values = self._backend.prepare(images)
        recorded = []
        for k, stage in enumerate(self._backend.stages):
            raw = self._backend.raw_stage(k, values)
            ordered = sorted(stage["outputs"].items(), key=lambda item: item[1][0])
            recorded.append(
                [(raw[name], details["quantization"]) for name, (_, details) in ordered]
            )
            values = self._backend.carried(k, raw)
        return recorded

    def predict(self, images):
        """The cascade's `tfee.CascadeResult` over `images`.

        Args:
          images: float array (n, ...) preprocessed as for the network (or
            one image without the batch axis); run one at a time, as on a
            device.
        """
        images, blocked = self._check_images(
            images, "tfee.runtime.MicroCascade.predict"
        )
        return engine.run(self._backend, self.policy, images, blocked)
