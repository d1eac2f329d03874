"""What every benchmark shares: the data and output flags, the reference
network and data (`tfee.recipes`), where results go and what they record.

--quick swaps the reference for a tiny stand-in that runs in seconds: a
ResNet-8 of width 4 with two SDN exits, trained one epoch on generated
32x32 images, cached in --cache_dir. Its figures mean nothing; it checks that
a benchmark runs end to end. Quick results go to a temporary folder unless
--results_dir says otherwise, never into benchmarks/results.
"""

import json
import os
import platform
import sys
import tempfile
import time

import numpy as np
from absl import flags

import tfee
import tfee.runtime
from tfee import keras
from tfee import recipes
from tfee import tf
from tfee._files import write_atomically

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
DEFAULT_ARCHIVE = os.path.join(
    HERE, "..", "..", "shared", "datasets", "cifar10-images.tar.gz"
)

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "archive", DEFAULT_ARCHIVE, "CIFAR-10 images archive (shared/datasets)."
)
flags.DEFINE_string(
    "cache_dir", "/tmp/tfee-reference", "Where data and the network are cached."
)
flags.DEFINE_bool(
    "quick",
    False,
    "Smoke check in seconds: a tiny network on generated data; results go to "
    "a temporary folder unless --results_dir is given. Never a result.",
)
flags.DEFINE_string(
    "results_dir", None, "Where results go (default: benchmarks/results)."
)
flags.DEFINE_integer(
    "wait_minutes", 0, "Wait this long for the trained network to appear."
)

# The quick stand-in: the reference's code path at a size that runs in seconds.
TINY_SIZES = {"train": 256, "validation": 128, "test": 128}
TINY_NETWORK = {"depth": 8, "width": 4, "fractions": (0.3, 0.6)}
TINY_SETUP = "quick (smoke check on a tiny network and generated data, not a result)"


def setup():
    """What the JSON's "setup" says: the reference, or the quick smoke check."""
    return TINY_SETUP if FLAGS.quick else "reference"


def results_dir():
    """Where this run writes: --results_dir, a fresh temporary folder when
    --quick, else benchmarks/results."""
    if FLAGS.results_dir:
        directory = FLAGS.results_dir
    elif FLAGS.quick:
        directory = tempfile.mkdtemp(prefix="tfee-benchmark-quick-")
        FLAGS.results_dir = directory
    else:
        directory = RESULTS
    os.makedirs(directory, exist_ok=True)
    return directory


def write_result(name, result):
    """Writes `result` as `name`.json in `results_dir()`; returns its path."""
    path = os.path.join(results_dir(), f"{name}.json")
    tfee.report.write_json(path, result)
    return path


def finish(name, result, keys):
    """Writes `result` as `<name>_quick|full.json`, prints `keys` of it and the
    path; returns the result (every benchmark's last step)."""
    path = write_result(f"{name}_{'quick' if FLAGS.quick else 'full'}", result)
    print(summary_line(result, keys))
    print(f"written: {path}")
    return result


def save_plot(figure, axes, name, title, legend_fontsize=8):
    """Titles (marked quick when it is), grids and legends `axes`, and writes
    `figure` as `<name>_quick|full.png` in `results_dir()`; returns the path."""
    from tfee import report

    axes.set_title(title + (" (quick)" if FLAGS.quick else ""), fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=legend_fontsize)
    tag = "quick" if FLAGS.quick else "full"
    return report.save_figure(figure, os.path.join(results_dir(), f"{name}_{tag}.png"))


# `recipes.weights_digest` of the reference network this process loaded,
# which every result then records (None: it loaded none).
_REFERENCE_DIGEST = None


def machine_record(argv=None):
    """Command, versions, machine and the reference network's training
    (`reference_weights`, see `recipes.weights_digest`), for every result JSON.

    The command is the process's own `sys.argv`: absl hands `main` an argv
    without the flags it parsed, which would record a rerun that differs.
    `argv` is accepted for callers that pass it, and not used.
    """
    del argv
    return {
        "command": " ".join(sys.argv),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "tf_keras": keras.__version__,
        "tfmot": tfee.tfmot.__version__,
        "tfee": tfee.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.node()}",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "reference_weights": _REFERENCE_DIGEST,
    }


def tiny_data():
    """Generated stand-in for the reference splits (uint8 32x32x3, 10 classes)."""
    rng = np.random.default_rng(0)
    splits = {
        name: (
            rng.integers(0, 256, (size, 32, 32, 3), dtype=np.uint8),
            rng.integers(0, 10, size).astype("int32"),
        )
        for name, size in TINY_SIZES.items()
    }
    return recipes.ReferenceData(
        **splits, mean=np.full(3, 0.5, "float32"), std=np.full(3, 0.25, "float32")
    )


def network_path():
    """The cached network benchmarks use (--quick: the tiny stand-in's)."""
    if FLAGS.quick:
        return os.path.join(FLAGS.cache_dir, "reference_tiny.keras")
    return recipes.reference_network_path(FLAGS.cache_dir)


def reference_data():
    """The reference splits and normalisation (--quick: `tiny_data()`)."""
    if FLAGS.quick:
        return tiny_data()
    return recipes.reference_data(FLAGS.archive, FLAGS.cache_dir)


def reference(train_if_missing=False):
    """(network, data): the trained reference network and its data.

    Benchmarks never train the reference (`benchmarks.reference` does): they
    load the cached one, else the one committed with tfee
    (`recipes.committed_reference`), else wait up to --wait_minutes for it
    and stop when it is still missing. The quick stand-in is trained here
    when missing (seconds).
    """
    if FLAGS.quick:
        path = network_path()
        if not os.path.exists(path):
            os.makedirs(FLAGS.cache_dir, exist_ok=True)
            network = recipes.train_reference_network(
                tiny_data(), epochs=1, verbose=0, **TINY_NETWORK
            )
            write_atomically(path, network.save)
        network, data = keras.models.load_model(path), tiny_data()
    else:
        if not train_if_missing and recipes.committed_reference() is None:
            wait_for(network_path(), FLAGS.wait_minutes)
        network = recipes.reference_network(
            FLAGS.archive, FLAGS.cache_dir, train_if_missing=train_if_missing
        )
        data = reference_data()
    record_reference(network)
    return network, data


def record_reference(network):
    """Makes every later result of this process name `network`'s training
    (`machine_record`'s `reference_weights`)."""
    global _REFERENCE_DIGEST
    _REFERENCE_DIGEST = recipes.weights_digest(network)


def wait_for(path, minutes):
    """Waits up to `minutes` for `path` to exist; stops the benchmark if not."""
    deadline = time.time() + 60 * minutes
    while not os.path.exists(path):
        if time.time() >= deadline:
            raise SystemExit(
                f"the trained reference network {path} does not exist yet: train it "
                "with `python -m benchmarks.reference` (about an hour on 2 cores) or "
                "pass --wait_minutes while it trains; this benchmark never trains it."
            )
        print(f"waiting for {path} ...", flush=True)
        time.sleep(30)


def signature_function(path, signature, num_threads=1):
    """A function from float images to the float logits of one signature of a
    .tflite, called through LiteRT's own signature runner (int8 files get
    their inputs quantized and logits dequantized)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=num_threads)
    runner = interpreter.get_signature_runner(signature)
    (image_name,) = runner.get_input_details()
    image_details = runner.get_input_details()[image_name]
    logits_details = runner.get_output_details()["logits"]

    def call(images):
        values = tfee.runtime.quantize_input(images, image_details)
        logits = runner(**{image_name: values})["logits"]
        return tfee.runtime.dequantize_output(logits, logits_details)

    call.logits_details = logits_details
    return call


def summary_line(result, keys):
    """The named parts of `result` as indented JSON, for the closing printout."""
    return json.dumps({k: result[k] for k in keys if k in result}, indent=2)
