"""Export time of the reference network: float32, int8 and micro, this tree
against an earlier commit, side by side in one run (issue 33).

Each measurement runs in a fresh process that builds the reference
architecture (`tfee.recipes.build_reference_network`; export time does not
depend on the weights, so none are trained or loaded) and times
`tfee.export.tflite` (float32), the same with int8 (--export_calibration
random calibration images) and `tfee.export.micro` (int8 stage files and C
sources). With --export_baseline=REV the same script runs, interleaved, on a
`git worktree` of REV, so both trees are timed on the same machine in the
same minutes; the JSON holds every time, the medians and baseline/current
ratios.

    .venv/bin/python -m benchmarks.export_time --export_baseline=c69a16f
    .venv/bin/python -m benchmarks.export_time --quick    # smoke check only
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile

from absl import app
from absl import flags

from benchmarks import common

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "export_baseline",
    None,
    "A git revision to time beside this tree (default: this tree only; "
    "--quick: HEAD).",
)
flags.DEFINE_integer("export_repeats", 3, "Fresh-process runs per tree.")
flags.DEFINE_integer("export_calibration", 64, "Random int8 calibration images.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = ("float32", "int8", "micro")

# Run in a fresh interpreter with the tree to time first on sys.path; prints
# one JSON line {kind: seconds}.
_SCRIPT = """
import json, sys, tempfile, time
import numpy as np
import tfee, tfee.export
from tfee import recipes
assert tfee.__file__.startswith(sys.argv[3]), (tfee.__file__, sys.argv[3])
network = recipes.build_reference_network(**json.loads(sys.argv[1]))
shape = (int(sys.argv[2]),) + tuple(network.inputs[0].shape[1:])
images = np.random.default_rng(0).random(shape, dtype=np.float32)
folder = tempfile.mkdtemp(prefix="tfee-export-time-")
calls = {
    "float32": lambda: tfee.export.tflite(network, folder + "/f.tflite"),
    "int8": lambda: tfee.export.tflite(
        network, folder + "/i.tflite", quantize="int8", representative=images,
        calibration_samples=len(images)),
    "micro": lambda: tfee.export.micro(
        network, folder + "/micro", images, calibration_samples=len(images)),
}
times = {}
for kind, call in calls.items():
    started = time.perf_counter()
    call()
    times[kind] = time.perf_counter() - started
print("TIMES " + json.dumps(times))
"""


def _architecture():
    if FLAGS.quick:
        return dict(common.TINY_NETWORK, input_shape=(16, 16, 3))
    return {}


def time_tree(tree):
    """{kind: seconds} of one fresh process importing tfee from `tree`."""
    env = dict(os.environ, PYTHONPATH=tree, TF_CPP_MIN_LOG_LEVEL="3")
    calibration = 8 if FLAGS.quick else FLAGS.export_calibration
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            _SCRIPT,
            json.dumps(_architecture()),
            str(calibration),
            tree,
        ],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [
        line for line in completed.stdout.splitlines() if line.startswith("TIMES ")
    ]
    if completed.returncode or not lines:
        raise RuntimeError(
            f"timing {tree} failed ({completed.returncode}):\n{completed.stderr[-3000:]}"
        )
    return json.loads(lines[-1][len("TIMES ") :])


def _worktree(revision, folder):
    subprocess.run(
        ["git", "-C", ROOT, "worktree", "add", "--detach", folder, revision],
        check=True,
        capture_output=True,
    )


def _medians(runs):
    return {kind: statistics.median(run[kind] for run in runs) for kind in KINDS}


def run(argv=None):
    """Times every export kind per tree; writes export_time_<tag>.json."""
    baseline = FLAGS.export_baseline or ("HEAD" if FLAGS.quick else None)
    repeats = 1 if FLAGS.quick else FLAGS.export_repeats
    result = {
        "setup": common.setup(),
        "method": "fresh process per run; untrained reference architecture; "
        f"{'8' if FLAGS.quick else FLAGS.export_calibration} random int8 "
        "calibration images; trees interleaved; medians",
        "machine": common.machine_record(argv),
        "baseline": baseline,
        "repeats": repeats,
    }
    runs = {"current": []}
    folder = tempfile.mkdtemp(prefix="tfee-export-baseline-")
    tree = os.path.join(folder, "tree")
    try:
        if baseline:
            _worktree(baseline, tree)
            runs["baseline"] = []
        for repeat in range(repeats):
            for name in runs:
                times = time_tree(ROOT if name == "current" else tree)
                runs[name].append(times)
                print(f"run {repeat + 1}/{repeats} {name}: {times}", flush=True)
    finally:
        if baseline and os.path.isdir(tree):
            subprocess.run(
                ["git", "-C", ROOT, "worktree", "remove", "--force", tree],
                check=False,
                capture_output=True,
            )
    result["runs"] = runs
    result["median_seconds"] = {name: _medians(r) for name, r in runs.items()}
    if baseline:
        current, before = (result["median_seconds"][n] for n in ("current", "baseline"))
        result["speedup"] = {kind: before[kind] / current[kind] for kind in KINDS}
    return common.finish("export_time", result, ["median_seconds", "speedup"])


def main(argv):
    del argv
    run()


if __name__ == "__main__":
    app.run(main)
