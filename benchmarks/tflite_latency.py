"""LiteRT latency of the early-exit cascade against the full model (BENCHMARK.md).

Loads the trained reference network (never trains it) and, for float32 and
full int8 in one run: exports one .tflite with the stage signatures and
exit_K, calibrates max-softmax thresholds on the FILE's own validation
outputs (`Cascade(path).collect_outputs`: int8 logits differ from Keras')
for at most --latency_target_drop accuracy loss versus the file's deepest
exit, and embeds that policy (`tfee.export.set_policy`). It also measures
each exit's latency on this machine (`Cascade.profile` on validation images)
and calibrates two policies in time: the same drop at the lowest measured
latency, and the most accurate within --latency_budget x the full model's
measured latency.

Then, on LiteRT, batch 1, one thread, over --samples test images, every call
below runs in alternating blocks of --latency_block images (the first one
rotating from block to block), so that drift in machine load hits all of
them alike while each keeps its weights in the caches over a block, as a
device running one model frame after frame does:

  full      the exit_K signature alone (the network without exits), called
            lean: the image quantized, copied into the interpreter's input,
            invoked, the class read from its output;
  cascade   `tfee.Cascade(path).predict(image, batch_size=1)`: the
            embedded (MACs-calibrated) policy, engine and checks included;
  readme    the plain client of docs/client.md (LiteRT and numpy only);
  lean      a client written here by hand: interpreter tensors, set /
            invoke / get, max-softmax in numpy;
  stages    every stage chained, timing only each stage's invoke: the
            zero-overhead bound is each stage's median invoke, cumulated,
            over the cascade's exit histogram; the stage split is the stages'
            median invokes summed over the full model's median invoke;
  time      `Cascade` with the latency-calibrated policy;
  budget    `Cascade` with the latency-budget policy, whose mean latency
            on this test split is checked against its budget.

The engine's cost per image is reported two ways: `cascade` less `lean`
(means: what tfee costs beyond a client written by hand, which also pays
for quantizing, copying and deciding), and each image's `cascade` time less
the invokes of the stages it ran, as `stages` timed them on that image in a
tight chain (an upper bound: a stage invoked between Python calls runs
slower than in a tight chain). Ratios are of means over the full model's
mean; medians are reported beside them.

    .venv/bin/python -m benchmarks.tflite_latency            # reference network
    .venv/bin/python -m benchmarks.tflite_latency --quick    # smoke check only
"""

import os
import statistics
import tempfile
import time

import numpy as np
from absl import app
from absl import flags

import tfee
import tfee.export
import tfee.policy
import tfee.runtime
from benchmarks import common
from benchmarks import timing
from tfee import naming

FLAGS = flags.FLAGS
flags.DEFINE_float(
    "latency_target_drop", 0.005, "Accepted accuracy drop vs the deepest exit."
)
flags.DEFINE_float(
    "latency_budget",
    0.7,
    "The latency-budget policy's budget, as a fraction of the full model's "
    "latency measured by Cascade.profile.",
)
flags.DEFINE_integer("samples", 2000, "Test samples timed (at least 1,000).")
flags.DEFINE_integer("profile_samples", 500, "Validation images Cascade.profile times.")
flags.DEFINE_integer(
    "latency_block", 50, "Images each call runs in a row before the next one."
)
flags.DEFINE_alias("latency_results_dir", "results_dir")

WARMUP = 20
VARIANTS = ("float32", "int8")
# Issue 30's targets, on the reference: cascade / full <= MACs ratio + margin,
# where the MACs ratio (`macs_ratio`) is the mean MACs as a fraction of the full
# network's MACs.
MARGINS = {"float32": 0.06, "int8": 0.10}
LEAN_MARGIN = 0.03
ENGINE_TARGET_US = 10.0
SPLIT_TARGETS = {"float32": 1.03, "int8": 1.05}


class LeanClient:
    """A cascade written by hand, as a careful deployer would: each stage's
    tensors bound once, the image and features copied into the interpreter's
    buffers, the decision in numpy (max-softmax thresholds only).

    Args:
      path: a .tflite from `tfee.export.tflite` with stage signatures.
      thresholds: a max-softmax `ThresholdPolicy`'s thresholds.
    """

    def __init__(self, path, thresholds):
        from ai_edge_litert.interpreter import Interpreter

        metadata = tfee.runtime.read_metadata(path)
        interpreter = Interpreter(model_path=path, num_threads=1)
        self._lite = lite = interpreter._interpreter
        self.stages = []
        for k, exit_ in enumerate(metadata["exits"], start=1):
            name = exit_["stage_signature"]
            runner = interpreter.get_signature_runner(name)
            graph = lite.GetSubgraphIndexFromSignature(name)
            lite.AllocateTensors(graph)
            (image,) = runner.get_input_details().values()
            outputs = runner.get_output_details()
            scale, zero_point = outputs[naming.LOGITS]["quantization"]
            features = exit_["features"]
            self.stages.append(
                (
                    graph,
                    lite.tensor(lite, image["index"], graph),
                    lite.tensor(lite, outputs[naming.LOGITS]["index"], graph),
                    (
                        None
                        if features is None
                        else lite.tensor(lite, outputs[features]["index"], graph)
                    ),
                    np.float32(scale),
                    np.float32(zero_point),
                )
            )
            if k == 1:
                self._image_scale, self._image_zero = image["quantization"]
                self._int8 = image["dtype"] != np.float32
        self.thresholds = list(thresholds) + [0.0]

    def __call__(self, image):
        """(class, 0-based exit) of one float image (height, width, channels)."""
        x = image[None]
        if self._int8:
            x = np.clip(np.round(x / self._image_scale) + self._image_zero, -128, 127)
        for k, (graph, input_, logits, features, scale, zero) in enumerate(self.stages):
            input_[...] = x
            self._lite.Invoke(graph)
            row = logits[0]
            if self._int8:
                row = (row.astype(np.float32) - zero) * scale
            threshold = self.thresholds[k]
            if threshold is not None and (
                features is None or 1.0 / np.exp(row - row.max()).sum() >= threshold
            ):
                return int(np.argmax(row)), k
            x = features


class StageInvokes:
    """Every stage chained on one image, timing only each stage's invoke;
    also the full model's (exit_K) invoke. The zero-overhead bound's and
    the stage split's inputs."""

    def __init__(self, path):
        from ai_edge_litert.interpreter import Interpreter

        metadata = tfee.runtime.read_metadata(path)
        interpreter = Interpreter(model_path=path, num_threads=1)
        self._lite = lite = interpreter._interpreter
        names = [e["stage_signature"] for e in metadata["exits"]]
        names.append(metadata["exits"][-1]["exit_signature"])
        self._graphs, self._inputs, self._features = [], [], []
        self._details = None
        for k, name in enumerate(names):
            runner = interpreter.get_signature_runner(name)
            graph = lite.GetSubgraphIndexFromSignature(name)
            lite.AllocateTensors(graph)
            (image,) = runner.get_input_details().values()
            self._details = self._details or image  # Stage 1's: the image.
            self._graphs.append(graph)
            self._inputs.append(lite.tensor(lite, image["index"], graph))
            outputs = runner.get_output_details()
            feature = naming.features_name(k + 1)
            self._features.append(
                lite.tensor(lite, outputs[feature]["index"], graph)
                if feature in outputs
                else None
            )
        self.seconds = []  # Per image: each stage's invoke, then the full's.

    def __call__(self, image):
        x = tfee.runtime.quantize_input(image[None], self._details)
        clock, lite, spent = time.perf_counter, self._lite, []
        stages = len(self._graphs) - 1
        for k in range(stages):
            self._inputs[k][...] = x
            start = clock()
            lite.Invoke(self._graphs[k])
            spent.append(clock() - start)
            x = self._features[k]
        self._inputs[-1][...] = tfee.runtime.quantize_input(image[None], self._details)
        start = clock()
        lite.Invoke(self._graphs[-1])
        spent.append(clock() - start)
        self.seconds.append(spent)


def readme_client_source():
    """docs/client.md's plain-client code block, as a user would paste it."""
    import re

    page = os.path.join(common.HERE, "..", "docs", "client.md")
    with open(page) as f:
        text = f.read()
    block = re.search(
        r"<!-- plain-client:start -->\s*```python\n(.*?)```\s*<!-- plain-client:end -->",
        text,
        re.S,
    )
    if block is None:
        raise ValueError("docs/client.md lost its plain-client block")
    return block.group(1)


def readme_client():
    """docs/client.md's plain client class (`PlainCascade`), executed as pasted."""
    namespace = {}
    exec(
        compile(readme_client_source(), "docs/client.md:plain-client", "exec"),
        namespace,
    )
    return namespace["PlainCascade"]


def _variant(network, quantize, path, validation):
    """Exports, calibrates on the file's own outputs, embeds the MACs policy,
    profiles and calibrates in time. Returns a dict of what is timed."""
    num_exits = len(tfee.exits(network))
    deepest = naming.exit_name(num_exits)
    names = [deepest] + [naming.stage_name(k) for k in range(1, num_exits + 1)]
    print(f"exporting {quantize} .tflite ...", flush=True)
    export = tfee.export.tflite(
        network,
        path,
        quantize=quantize,
        representative=validation[0][:256],
        signatures=names,
    )
    print(f"calibrating on the {quantize} file's validation outputs ...", flush=True)
    outputs = tfee.Cascade(path).collect_outputs(*validation, batch_size=256)
    drop = FLAGS.latency_target_drop
    policy = tfee.calibrate(outputs, max_accuracy_drop=drop)
    tfee.export.set_policy(path, policy)
    cascade = tfee.Cascade(path, num_threads=1)
    print(f"profiling the {quantize} stages on this machine ...", flush=True)
    costs = cascade.profile(validation[0][: FLAGS.profile_samples])
    by_time = tfee.calibrate(outputs, max_accuracy_drop=drop, costs=costs)
    budget_ms = FLAGS.latency_budget * costs.full_cost
    by_budget = tfee.calibrate(outputs, cost_budget=budget_ms, costs=costs)
    print(
        f"{quantize}: MACs policy {policy}; in time {by_time}; within "
        f"{budget_ms:.3f} ms {by_budget}",
        flush=True,
    )
    return {
        "export": export,
        "outputs": outputs,
        "costs": costs,
        "budget_ms": budget_ms,
        "policies": {"cascade": policy, "time": by_time, "budget": by_budget},
        "cascades": {
            "cascade": cascade,
            "time": tfee.Cascade(path, by_time, num_threads=1),
            "budget": tfee.Cascade(path, by_budget, num_threads=1),
        },
        "full": _full_call(path, deepest),
        "readme": readme_client()(path),
        "lean": LeanClient(path, policy.thresholds),
        "stages": StageInvokes(path),
    }


def _full_call(path, signature):
    """The full model called lean: quantize, copy in, invoke, arg-max."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=1)
    lite = interpreter._interpreter
    runner = interpreter.get_signature_runner(signature)
    graph = lite.GetSubgraphIndexFromSignature(signature)
    lite.AllocateTensors(graph)
    (image,) = runner.get_input_details().values()
    input_ = lite.tensor(lite, image["index"], graph)
    logits = lite.tensor(
        lite, runner.get_output_details()[naming.LOGITS]["index"], graph
    )

    def call(x):
        input_[...] = tfee.runtime.quantize_input(x[None], image)
        lite.Invoke(graph)
        return int(np.argmax(logits[0]))

    return call


def _stats(seconds):
    return {
        "median": 1e3 * statistics.median(seconds),
        "mean": 1e3 * statistics.mean(seconds),
    }


def _report(variant, times, test_x, test_y, macs):
    """The JSON entry of one dtype."""
    full_macs, exit_macs = macs
    cascade = variant["cascades"]["cascade"]
    answers = cascade.predict(test_x, batch_size=1)
    histogram = np.bincount(answers.exit_indices, minlength=len(exit_macs))
    macs_ratio = float(np.mean(exit_macs[answers.exit_indices]) / full_macs)
    full_mean = statistics.mean(times["full"])
    invokes = np.array(variant["stages"].seconds[-len(test_x) :])  # (n, K + 1)
    stage_medians = np.median(invokes[:, :-1], axis=0)
    full_invoke = float(np.median(invokes[:, -1]))
    bound = float(np.mean(np.cumsum(stage_medians)[answers.exit_indices]))
    # Per image: its cascade time less the invokes of the stages it ran.
    ran = np.cumsum(invokes[:, :-1], axis=1)[
        np.arange(len(test_x)), answers.exit_indices
    ]
    beyond_invokes_us = 1e6 * float(np.mean(np.array(times["cascade"]) - ran))
    engine_us = 1e6 * (
        statistics.mean(times["cascade"]) - statistics.mean(times["lean"])
    )
    entry = {
        "file_bytes": variant["export"].bytes,
        "policies": {k: p.to_dict() for k, p in variant["policies"].items()},
        "exit_costs_ms": list(variant["costs"].exit_costs),
        "profiled_full_ms": variant["costs"].full_cost,
        "exit_histogram": histogram.tolist(),
        "macs_ratio": macs_ratio,
        "accuracy": {
            "full": float(np.mean([variant["full"](x) for x in test_x] == test_y)),
            "cascade": float(np.mean(answers.predictions == test_y)),
        },
        # The hand-written client must take the cascade's exits to compare.
        "lean_exits_agree": float(
            np.mean([variant["lean"](x)[1] for x in test_x] == answers.exit_indices)
        ),
        "latency_ms": {
            name: _stats(seconds) for name, seconds in times.items() if name != "stages"
        },
        "ratio_of_means": {
            name: statistics.mean(seconds) / full_mean
            for name, seconds in times.items()
            if name not in ("full", "stages")
        },
        "ratio_of_medians": {
            name: statistics.median(seconds) / statistics.median(times["full"])
            for name, seconds in times.items()
            if name not in ("full", "stages")
        },
        "stage_invoke_ms": (1e3 * stage_medians).tolist(),
        "full_invoke_ms": 1e3 * full_invoke,
        "stage_split": float(np.sum(stage_medians) / full_invoke),
        "zero_overhead_bound": bound / full_invoke,
        "engine_us_per_image": engine_us,
        "beyond_chained_invokes_us_per_image": beyond_invokes_us,
    }
    for name in ("time", "budget"):
        result = variant["cascades"][name].predict(test_x, batch_size=1)
        entry["accuracy"][name] = float(np.mean(result.predictions == test_y))
        entry[f"{name}_exit_histogram"] = np.bincount(
            result.exit_indices, minlength=len(exit_macs)
        ).tolist()
        entry[f"{name}_macs_ratio"] = float(
            np.mean(exit_macs[result.exit_indices]) / full_macs
        )
    entry["budget_ms"] = variant["budget_ms"]
    entry["budget_met"] = bool(
        entry["latency_ms"]["budget"]["mean"] <= variant["budget_ms"]
    )
    return entry


def _goals(entry, quantize):
    ratios = entry["ratio_of_means"]
    target = entry["macs_ratio"] + MARGINS[quantize]
    return {
        f"cascade <= MACs ratio + {MARGINS[quantize]}": {
            "target": target,
            "value": ratios["cascade"],
            "met": bool(ratios["cascade"] <= target),
        },
        f"cascade within {LEAN_MARGIN} of the lean client": {
            "value": ratios["cascade"] - ratios["lean"],
            "met": bool(ratios["cascade"] - ratios["lean"] <= LEAN_MARGIN),
        },
        f"stage split <= {SPLIT_TARGETS[quantize]}": {
            "value": entry["stage_split"],
            "met": bool(entry["stage_split"] <= SPLIT_TARGETS[quantize]),
        },
        f"engine <= {ENGINE_TARGET_US} us per image beyond the lean client": {
            "value": entry["engine_us_per_image"],
            "met": bool(entry["engine_us_per_image"] <= ENGINE_TARGET_US),
        },
        "latency-budget policy meets its budget on the test split": {
            "value": entry["latency_ms"]["budget"]["mean"],
            "target": entry["budget_ms"],
            "met": entry["budget_met"],
        },
    }


def run(argv=None):
    """Exports, calibrates and times both variants; writes tflite_latency_<tag>.json."""
    network, data = common.reference()
    validation = (data.normalised("validation"), data.validation[1])
    # The test folder is sorted by class: time a seeded sample of all classes.
    chosen = np.random.default_rng(0).permutation(len(data.test[1]))[: FLAGS.samples]
    test_x = data.normalised("test")[chosen]
    test_y = data.test[1][chosen]
    report = tfee.cost.analyze(network)
    macs = (
        report.full_macs,
        np.array([e.cumulative_macs for e in report.exits], float),
    )
    result = {
        "setup": common.setup(),
        "runtime": "LiteRT (ai-edge-litert) CPU, batch 1, 1 thread",
        "samples": len(test_x),
        "operating_point": {
            "calibrated_on": "validation outputs of each file itself",
            "max_accuracy_drop": FLAGS.latency_target_drop,
            "latency_budget_of_full": FLAGS.latency_budget,
        },
    }
    with tempfile.TemporaryDirectory() as directory:
        variants = {
            q: _variant(network, q, os.path.join(directory, f"{q}.tflite"), validation)
            for q in VARIANTS
        }
        calls = {}
        for q, v in variants.items():
            calls[f"{q}/full"] = lambda i, f=v["full"]: f(test_x[i])
            for name in ("cascade", "time", "budget"):
                calls[f"{q}/{name}"] = lambda i, c=v["cascades"][name]: c.predict(
                    test_x[i], batch_size=1
                )
            for name in ("readme", "lean", "stages"):
                calls[f"{q}/{name}"] = lambda i, f=v[name]: f(test_x[i])
        print(
            f"timing {len(test_x)} images, {len(calls)} calls alternating ...",
            flush=True,
        )
        times = timing.time_alternately(
            calls, range(len(test_x)), warmup=WARMUP, block=FLAGS.latency_block
        )
        for q, v in variants.items():
            own = {k.split("/")[1]: t for k, t in times.items() if k.startswith(q)}
            entry = _report(v, own, test_x, test_y, macs)
            entry["goals"] = _goals(entry, q)
            result[q] = entry
    result["record"] = common.machine_record(argv)
    for q in VARIANTS:
        e = result[q]
        means = e["ratio_of_means"]
        print(
            f"{q}: full {e['latency_ms']['full']['mean']:.3f} ms; of it (means): "
            + ", ".join(f"{n} {r:.3f}" for n, r in means.items())
            + f"; MACs {100 * e['macs_ratio']:.1f}% of the full network's MACs; "
            f"bound {e['zero_overhead_bound']:.3f}; "
            f"split {e['stage_split']:.3f}; engine {e['engine_us_per_image']:.1f} us; "
            f"budget {e['budget_ms']:.3f} ms, spent "
            f"{e['latency_ms']['budget']['mean']:.3f}; accuracy {e['accuracy']}"
        )
        for goal, value in e["goals"].items():
            print(
                f"  {goal}: {'met' if value['met'] else 'NOT met'} ({value['value']:.4g})"
            )
    return common.finish("tflite_latency", result, list(VARIANTS))


def main(argv):
    run(argv)


if __name__ == "__main__":
    app.run(main)
