"""Does every signature of an exported .tflite agree with the Keras network?"""

import dataclasses
import os

import numpy as np

from tfee import _checks
from tfee import naming
from tfee.export import _signatures
from tfee.runtime import litert
from tfee.runtime.litert import Cascade
from tfee.runtime.quantization import dequantize_output
from tfee.runtime.quantization import quantize_input

__all__ = ["SignatureCheck", "Verification", "verify", "DEFAULT_TOLERANCE"]

# Largest |tflite - keras| logit difference, relative to max(1, max |keras logit|).
DEFAULT_TOLERANCE = {"float32": 1e-4, "float16": 2e-2}


@dataclasses.dataclass(frozen=True)
class SignatureCheck:
    """One signature's comparison with Keras.

    Attributes:
      signature: "exit_k" or "stage_k" (stages run chained from stage_1).
      max_abs_difference: the largest |tflite - keras| logit.
      top1_agreement: fraction of samples whose argmax agrees.
      passed: within the tolerance (float) or agreement target (quantized).
    """

    signature: str
    max_abs_difference: float
    top1_agreement: float
    passed: bool


@dataclasses.dataclass(frozen=True)
class Verification:
    """All signatures' checks; `passed` when every one passed."""

    path: str
    quantize: str
    criterion: str
    checks: tuple

    @property
    def passed(self):
        return all(c.passed for c in self.checks)

    def __str__(self):
        lines = [f"{self.path} ({self.quantize}; {self.criterion})"]
        for c in self.checks:
            lines.append(
                f"  {c.signature:<10} max|diff| {c.max_abs_difference:.3g}  "
                f"top-1 agreement {100 * c.top1_agreement:.1f}%  "
                f"{'ok' if c.passed else 'FAILED'}"
            )
        return "\n".join(lines)


def verify(path, network, images, tolerance=None, min_agreement=0.99, samples=512):
    """Compares every signature in `path` with the Keras network on `images`.

    Float32 and float16 files pass when the largest logit difference, divided
    by max(1, largest |Keras logit|), is within `tolerance`; dynamic-range and
    int8 files pass when top-1 agreement with Keras is at least
    `min_agreement`. Stage signatures are run as a chain (stage_k reads the
    features stage_(k-1) of the file wrote), as a device would run them,
    when the file has all of them.

    Args:
      path: a .tflite from `tfee.export.tflite`.
      network: the Keras network it was exported from.
      images: preprocessed float images: an array, or a tf.data.Dataset of
        images or (images, labels) tuples.
      tolerance: relative logit tolerance for float files (default 1e-4 for
        float32, 2e-2 for float16).
      min_agreement: top-1 agreement needed by quantized files.
      samples: at most this many images are compared.

    Returns:
      A `Verification`; `.passed` says whether every signature passed.

    Raises:
      FileNotFoundError: no file at `path`.
      ValueError: images that do not fit the network, or a file without tfee
        metadata.
    """
    api = "tfee.export.verify"
    if not isinstance(path, str) or not os.path.isfile(path):
        raise FileNotFoundError(f"{api}: no .tflite file at path={path!r}")
    if not 0.0 <= min_agreement <= 1.0:
        raise ValueError(
            f"{api}: `min_agreement` must lie in [0, 1]. "
            f"Received: min_agreement={min_agreement!r}"
        )
    metadata = litert.read_metadata(path)
    if not metadata:
        raise ValueError(
            f"{api}: {path} has no tfee metadata; verify files written by "
            "tfee.export.tflite."
        )
    stripped = _signatures.stripped_network(network, api)
    data = _checks.check_images(images, stripped, samples, api, argument="images")
    keras_logits = [
        np.asarray(x)
        for x in stripped.predict(data, verbose=0)[: metadata["num_exits"]]
    ]
    quantize = metadata["quantize"]
    if quantize in DEFAULT_TOLERANCE:
        limit = DEFAULT_TOLERANCE[quantize] if tolerance is None else tolerance
        criterion = f"relative logit tolerance {limit:g}"
    else:
        limit = None
        criterion = f"top-1 agreement >= {100 * min_agreement:g}%"
    checks = []
    for name, logits in _file_logits(path, metadata, data).items():
        expected = keras_logits[naming.parse_signature(name)[1] - 1]
        difference = float(np.max(np.abs(logits - expected)))
        agreement = float(np.mean(np.argmax(logits, -1) == np.argmax(expected, -1)))
        if limit is not None:
            scale = max(1.0, float(np.max(np.abs(expected))))
            passed = difference / scale <= limit
        else:
            passed = agreement >= min_agreement
        checks.append(SignatureCheck(name, difference, agreement, bool(passed)))
    return Verification(path, quantize, criterion, tuple(checks))


def _file_logits(path, metadata, images):
    """{signature: the file's float logits}: each exit_k on the images, and
    the stage_k signatures chained as a device runs them (the runtime's
    `Cascade.exit_logits`; only when the file has every stage)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    available = interpreter.get_signature_list()
    logits = {}
    for name in metadata["signatures"]:
        if name in available and naming.parse_signature(name)[0] == naming.EXIT:
            runner = interpreter.get_signature_runner(name)
            details = runner.get_input_details()[naming.IMAGE]
            outputs = runner(**{naming.IMAGE: quantize_input(images, details)})
            logits[name] = dequantize_output(
                outputs[naming.LOGITS], runner.get_output_details()[naming.LOGITS]
            )
    stages = [naming.stage_name(k) for k in range(1, metadata["num_exits"] + 1)]
    if all(name in available for name in stages):
        chained = Cascade(path).exit_logits(images)
        logits.update(zip(stages, chained))
    return logits
