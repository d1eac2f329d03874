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
    .venv/bin/python -m benchmarks.training_throughput --windows=2 \\
        --window_steps=3 --warmup_steps=2 --synthetic   # smoke check
"""

import os
import statistics
import time

import numpy as np
from absl import app
from absl import flags

import tfee
from benchmarks import reference
from tfee import keras

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


def _optimizer():
    # The reference recipe: weight decay as an L2 loss (reference.L2).
    return keras.optimizers.SGD(0.01, momentum=0.9)


def build_models():
    """(plain backbone, early-exit network), both compiled for training."""
    keras.utils.set_random_seed(0)
    backbone = tfee.backbones.resnet_cifar(
        depth=20, num_classes=10, weight_decay=reference.L2
    )
    network = tfee.attach_exits(
        backbone, tfee.FlopsFractions(list(reference.SDN_FRACTIONS)), head="sdn"
    )
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
    archive = FLAGS.archive
    cached = os.path.exists(os.path.join(FLAGS.cache_dir, "train.npz"))
    if not synthetic and (cached or os.path.exists(archive)):
        splits, mean, std = reference.reference_data(
            archive, FLAGS.cache_dir, quick=False
        )
        images, labels = splits["train"]
        source = f"reference CIFAR-10 training pipeline ({len(labels)} images)"
    else:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (2048, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, 2048).astype("int32")
        mean, std = np.full(3, 0.5, "float32"), np.full(3, 0.25, "float32")
        source = (
            "SYNTHETIC 32x32x3 uint8 images (2048, random labels) through the "
            "reference pipeline"
        )
    dataset = reference.pipeline(images, labels, mean, std, training=True, batch=batch)
    return dataset.repeat(), source


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
    rates = {name: [] for name in models}
    names = list(models)
    for window in range(windows):
        # Alternate who goes first so drifts in machine load hit both.
        order = names if window % 2 == 0 else names[::-1]
        for name in order:
            function, iterator = runners[name]
            started = time.perf_counter()
            _run(function, iterator, window_steps)
            rates[name].append(window_steps * batch / (time.perf_counter() - started))
        print(
            f"window {window + 1}/{windows}: "
            + ", ".join(f"{n} {rates[n][-1]:.0f} img/s" for n in names),
            flush=True,
        )
    return rates


def main(argv):
    del argv
    batch = reference.BATCH
    dataset, source = training_data(FLAGS.synthetic, batch)
    backbone, network = build_models()
    rates = measure(
        {"backbone": backbone, "early_exit": network},
        dataset,
        FLAGS.windows,
        FLAGS.window_steps,
        FLAGS.warmup_steps,
        batch,
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
            if FLAGS.windows < 5 or FLAGS.window_steps < 10
            else "measurement"
        ),
        "batch": batch,
        "windows": FLAGS.windows,
        "window_steps": FLAGS.window_steps,
        "warmup_steps": FLAGS.warmup_steps,
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
        "record": reference.machine_record(),
    }
    os.makedirs(reference.RESULTS, exist_ok=True)
    path = os.path.join(reference.RESULTS, f"{FLAGS.result_name}.json")
    tfee.report.write_json(path, result)
    print(
        f"\nTraining throughput ({source}):\n"
        f"  backbone    {backbone_median:8.1f} images/s (median)\n"
        f"  early-exit  {network_median:8.1f} images/s (median)\n"
        f"  ratio       {ratio:8.3f} (goal >= 0.85); median window ratio "
        f"{result['median_of_window_ratios']:.3f}\n"
        f"wrote {path}"
    )


if __name__ == "__main__":
    app.run(main)
