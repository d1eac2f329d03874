"""Training throughput: tfee's joint early-exit loss vs the plain backbone.

CIFAR ResNet-20 with the reference's 6 SDN exits, trained with
`tfee.losses.joint(net, "sdn")` and per-exit accuracy, against the same
backbone without exits (sparse cross-entropy and accuracy), both with the
reference optimiser (SGD momentum 0.9, weight decay 5e-4) and batch 128.
After a warm-up, the two alternate in timed windows of `--window_steps`
training steps in ONE process; the figure is the median images/s over
`--windows` windows, and the ratio is network / backbone (goal >= 0.85).

Data: the reference CIFAR-10 training pipeline (normalise, crop + flip,
shuffle) when the archive or its cache is there, else synthetic 32x32x3
uint8 images through the same pipeline, labelled as such in the JSON.

    .venv/bin/python -m benchmarks.training_throughput
    .venv/bin/python -m benchmarks.training_throughput --quick   # smoke check
"""

import os
import statistics

import numpy as np
from absl import app
from absl import flags

import tfee
from benchmarks import common
from benchmarks import timing
from tfee import keras
from tfee import recipes

FLAGS = flags.FLAGS

flags.DEFINE_integer("windows", 7, "Timed windows per model (median taken).")
flags.DEFINE_integer("window_steps", 30, "Training steps per timed window.")
flags.DEFINE_integer("warmup_steps", 10, "Untimed steps per model first.")
flags.DEFINE_bool(
    "synthetic", False, "Use synthetic 32x32x3 images instead of CIFAR-10."
)
flags.DEFINE_string(
    "result_name", "training_throughput", "JSON name under benchmarks/results."
)

# --quick: the smoke check's windows, on synthetic data and the tiny
# stand-in network (benchmarks.common.TINY_NETWORK).
QUICK = {"windows": 2, "window_steps": 2, "warmup_steps": 1}


def _optimizer():
    # The reference recipe: weight decay as an L2 loss (recipes.L2).
    return keras.optimizers.SGD(0.01, momentum=0.9)


def build_models(**network_settings):
    """(plain backbone, early-exit network), both compiled for training.

    Args:
      **network_settings: `tfee.recipes.build_reference_network`'s settings
        (none: the reference ResNet-20 with 6 SDN exits).
    """
    keras.utils.set_random_seed(0)
    network = recipes.build_reference_network(**network_settings)
    backbone = tfee.detach_exits(network)
    backbone.compile(
        optimizer=_optimizer(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    loss = tfee.losses.joint(network, weights="sdn")
    network.compile(
        optimizer=_optimizer(),
        loss=loss,
        metrics={name: ["accuracy"] for name in loss},
    )
    return backbone, network


def training_data(synthetic, batch):
    """A repeated training pipeline and a description of its source."""
    cached = os.path.exists(os.path.join(FLAGS.cache_dir, "train.npz"))
    if not synthetic and (cached or os.path.exists(FLAGS.archive)):
        data = recipes.reference_data(FLAGS.archive, FLAGS.cache_dir)
        source = f"reference CIFAR-10 training pipeline ({len(data.train[1])} images)"
    else:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (2048, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, 2048).astype("int32")
        data = common.tiny_data()._replace(train=(images, labels))
        source = (
            "SYNTHETIC 32x32x3 uint8 images (2048, random labels) through the "
            "reference pipeline"
        )
    return data.pipeline("train", training=True, batch=batch).repeat(), source


def _run(train_function, iterator, steps):
    for _ in range(steps):
        logs = train_function(iterator)
    # Block until the last step's results exist.
    float(logs["loss"])


def measure(models, dataset, windows, window_steps, warmup_steps, batch):
    """Images/s per window for each named model, alternating their windows."""
    runners = {
        name: (model.make_train_function(), iter(dataset))
        for name, model in models.items()
    }
    for name, (function, iterator) in runners.items():
        print(f"warm-up: {name} ({warmup_steps} steps)", flush=True)
        _run(function, iterator, warmup_steps)
    times = timing.time_alternately(
        {
            name: lambda _, f=function, it=iterator: _run(f, it, window_steps)
            for name, (function, iterator) in runners.items()
        },
        range(windows),
    )
    return {
        name: [window_steps * batch / seconds for seconds in times[name]]
        for name in models
    }


def run(argv=None):
    """Measures both models; writes <result_name>.json."""
    settings = {
        "windows": FLAGS.windows,
        "window_steps": FLAGS.window_steps,
        "warmup_steps": FLAGS.warmup_steps,
    }
    if FLAGS.quick:
        settings = QUICK
    batch = recipes.BATCH
    dataset, source = training_data(FLAGS.synthetic or FLAGS.quick, batch)
    backbone, network = build_models(**(common.TINY_NETWORK if FLAGS.quick else {}))
    rates = measure(
        {"backbone": backbone, "early_exit": network}, dataset, batch=batch, **settings
    )
    backbone_median = statistics.median(rates["backbone"])
    network_median = statistics.median(rates["early_exit"])
    ratio = network_median / backbone_median
    window_ratios = [e / b for e, b in zip(rates["early_exit"], rates["backbone"])]
    result = {
        "what": "training throughput, ResNet-20 + 6 SDN exits (joint loss) vs "
        "the plain backbone, alternating timed windows in one run",
        "data": source,
        "setting": (
            "smoke check only, not a result"
            if settings["windows"] < 5 or settings["window_steps"] < 10
            else "measurement"
        ),
        "batch": batch,
        **settings,
        "backbone_images_per_second": rates["backbone"],
        "early_exit_images_per_second": rates["early_exit"],
        "backbone_median": backbone_median,
        "early_exit_median": network_median,
        "ratio_of_medians": ratio,
        "median_of_window_ratios": statistics.median(window_ratios),
        "goal": ">= 0.85",
        "macs": {
            "backbone": tfee.cost.model_macs(backbone, False),
            "early_exit_all_heads": tfee.cost.analyze(network)
            .exits[-1]
            .cumulative_macs,
        },
        "record": common.machine_record(argv),
    }
    path = common.write_result(FLAGS.result_name, result)
    print(
        f"\nTraining throughput ({source}):\n"
        f"  backbone    {backbone_median:8.1f} images/s (median)\n"
        f"  early-exit  {network_median:8.1f} images/s (median)\n"
        f"  ratio       {ratio:8.3f} (goal >= 0.85); median window ratio "
        f"{result['median_of_window_ratios']:.3f}\n"
        f"wrote {path}"
    )
    return result


def main(argv):
    run(argv)


if __name__ == "__main__":
    app.run(main)
