"""What the cascade engine's Python bookkeeping costs per sample on LiteRT.

The reference architecture (CIFAR ResNet-20 with 7 SDN exits,
`tfee.recipes.build_reference_network`) is exported untrained, seed 0: the
time a stage takes does not depend on its weights, and a policy whose
thresholds are all None sends every sample through every stage, so no exit
distribution enters. On LiteRT, batch 1, one thread, alternating sample by
sample over --overhead_samples generated images, it times:

  engine   `tfee.runtime.Cascade(path, policy).predict(image, batch_size=1)`:
           every stage, the policy asked after each (`engine.run`);
  stages   `Cascade(path).exit_logits(image, batch_size=1)`: the same stages
           chained, no policy and no engine;
  full     the exit_K signature (the whole network in one call).

engine - stages is the engine's bookkeeping per sample (policy included);
it is quoted against the full model's latency. Medians, float32 and int8
from one run.

    .venv/bin/python -m benchmarks.cascade_overhead
    .venv/bin/python -m benchmarks.cascade_overhead --quick    # smoke check only
"""

import os
import statistics
import tempfile

import numpy as np
from absl import app
from absl import flags

import tfee
import tfee.runtime
from benchmarks import common
from benchmarks import timing
from tfee import keras
from tfee import naming
from tfee import recipes

FLAGS = flags.FLAGS
flags.DEFINE_integer("overhead_samples", 1000, "Images timed (at least 1,000).")

WARMUP = 20


def network():
    """The reference architecture (--quick: the tiny stand-in's), untrained."""
    keras.utils.set_random_seed(0)
    if FLAGS.quick:
        tiny = common.TINY_NETWORK
        return recipes.build_reference_network(
            depth=tiny["depth"], width=tiny["width"], fractions=tiny["fractions"]
        )
    return recipes.build_reference_network()


def time_file(path, num_exits, images):
    """Median milliseconds of engine, stages and full on one file."""
    policy = tfee.ThresholdPolicy([None] * (num_exits - 1))
    with_policy = tfee.runtime.Cascade(path, policy)
    without = tfee.runtime.Cascade(path)
    full = common.signature_function(path, naming.exit_name(num_exits))
    times = timing.time_alternately(
        {
            "engine": lambda i: with_policy.predict(images[i : i + 1], batch_size=1),
            "stages": lambda i: without.exit_logits(images[i : i + 1], batch_size=1),
            "full": lambda i: full(images[i : i + 1]),
        },
        range(len(images)),
        warmup=WARMUP,
    )
    ms = {name: 1000 * value for name, value in timing.medians(times).items()}
    overhead = ms["engine"] - ms["stages"]
    return {
        "median_ms": {name: round(value, 4) for name, value in ms.items()},
        "mean_ms": {
            name: round(1000 * statistics.mean(seconds), 4)
            for name, seconds in times.items()
        },
        "engine_overhead_ms": round(overhead, 4),
        "engine_overhead_of_full": round(overhead / ms["full"], 4),
        "stages_over_full": round(ms["stages"] / ms["full"], 4),
    }


def run(argv=None):
    """Exports float32 and int8 and times them; writes cascade_overhead_<tag>.json."""
    net = network()
    shape = net.inputs[0].shape[1:]
    images = np.random.default_rng(0).normal(
        0, 1, (FLAGS.overhead_samples,) + tuple(shape)
    )
    images = images.astype("float32")
    num_exits = len(tfee.exits(net))
    result = {
        "setup": common.setup(),
        "network": "untrained reference architecture (timing does not depend on "
        "weights); every stage runs (all thresholds None)",
        "num_exits": num_exits,
        "samples": len(images),
    }
    with tempfile.TemporaryDirectory() as directory:
        for quantize in ("float32", "int8"):
            path = os.path.join(directory, f"{quantize}.tflite")
            print(f"exporting {quantize} ...", flush=True)
            tfee.export.tflite(
                net, path, quantize=quantize, representative=images[:128]
            )
            print(f"timing {quantize} over {len(images)} images ...", flush=True)
            result[quantize] = time_file(path, num_exits, images)
    result["record"] = common.machine_record(argv)
    return common.finish("cascade_overhead", result, ["float32", "int8"])


def main(argv):
    run(argv)


if __name__ == "__main__":
    app.run(main)
