"""The shell chain on an image folder: train -> calibrate -> export (int8
calibrated on the folder's images) -> run the cascade (with accuracy) ->
prune -> cluster, each binary reading what the one before wrote; plus what
every binary shares (--help without TensorFlow, one-line failures)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from absl.testing import flagsaver

import tfee
from examples import calibrate
from examples import cluster_sections
from examples import export_tflite
from examples import prune_early_exit
from examples import run_tflite_cascade
from examples import train_early_exit
from tfee import tf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _write_folder(root, per_class):
    """DIR/{train,test}/<class>/*.png, 10x10 RGB; class = brightness band."""
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("test", per_class // 3)):
        for label, name in enumerate(("dark", "grey", "light")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                level = 40 + 80 * label
                pixels = rng.integers(level - 30, level + 30, (10, 10, 3))
                png = tf.io.encode_png(pixels.astype(np.uint8)).numpy()
                (folder / f"{i}.png").write_bytes(png)


def _main(module, **flags):
    module.FLAGS([module.__name__])
    with flagsaver.flagsaver(**flags):
        module.main([])


@pytest.mark.slow
def test_the_chain_runs_on_an_image_folder(tmp_path, capsys):
    data = tmp_path / "images"
    _write_folder(data, per_class=30)
    out = tmp_path / "chain"
    common = dict(
        data=str(data),
        output_dir=str(out),
        validation_fraction=0.2,
        batch_size=16,
        keras_verbose=0,
    )
    tf.config.run_functions_eagerly(True)  # tiny fits: no tracing
    try:
        _main(
            train_early_exit,
            backbone="small_cnn",
            exits=["block1_out", "block2_out"],
            head="linear",
            epochs=8,
            normalise=True,
            **common,
        )
        network = str(out / "network.keras")
        trained = json.loads((out / "training_summary.json").read_text())
        assert trained["data"] == str(data) and trained["split"] == "test"
        # Every later step feeds raw images; the network normalises them.
        stored = trained["normalised_in_model"]
        assert len(stored["mean"]) == 3 and 0.2 < stored["mean"][0] < 0.8
        _main(calibrate, model=network, max_accuracy_drop=0.05, **common)
        _main(
            export_tflite,
            model=network,
            policy=str(out / "policy.json"),
            quantize=["int8"],
            micro=False,
            # 18 test images: one near-tie flip is 5.6 points.
            min_agreement=0.9,
            **common,
        )
        exported = json.loads((out / "export_summary.json").read_text())
        assert exported["files"]["int8"]["verified"]
        file_input = tfee.runtime.read_metadata(str(out / "net_int8.tflite"))["input"]
        assert file_input["normalised_in_model"] == stored
        assert file_input["mean"] is None
        _main(run_tflite_cascade, model=str(out / "net_int8.tflite"), **common)
        cascade = json.loads((out / "cascade_summary.json").read_text())
        assert cascade["samples"] == 30 and 0 <= cascade["accuracy"] <= 1
        assert sum(cascade["samples_per_exit"].values()) == 30
        _main(prune_early_exit, model=network, sparsity=0.5, epochs=1, **common)
        curves = json.loads((out / "curves.json").read_text())
        assert set(curves["orders"]) == {"together", "ordered"}
        for row in curves["orders"].values():
            assert row["overall_sparsity"] == pytest.approx(0.5, abs=0.02)
            assert len(row["exit_accuracy"]) == 3
        _main(
            cluster_sections,
            model=str(out / "pruned_ordered.keras"),
            preserve_sparsity=True,
            clusters="4",
            epochs=1,
            **common,
        )
    finally:
        tf.config.run_functions_eagerly(False)
    compression = json.loads((out / "compression.json").read_text())
    assert compression["model"].endswith("pruned_ordered.keras")
    printed = capsys.readouterr().out
    assert "[cluster_sections" in printed and "stage 1/" in printed
    pictures = (
        "exits.png",
        "test_accuracy_vs_macs.png",
        "cascade_exits.png",
        "curves.png",
    )
    for name in pictures:
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def _binary(name, *args):
    env = dict(os.environ, PYTHONPATH="")
    return subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            os.path.join(ROOT, "examples", name),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=ROOT,
    )


def test_help_answers_without_loading_tensorflow():
    result = _binary("calibrate.py", "--help")
    assert "--data" in result.stdout and "--output_dir" in result.stdout
    imported = [line.split("|")[-1].strip() for line in result.stderr.splitlines()]
    assert "tensorflow" not in imported


def test_a_failure_is_one_line_and_exit_code_one(tmp_path):
    result = _binary("export_tflite.py", f"--model={tmp_path / 'missing.keras'}")
    assert result.returncode == 1
    errors = [
        line
        for line in result.stderr.splitlines()
        if not line.startswith("import time")
    ]
    assert errors == [
        f"export_tflite.py: error: --model: no such file: {tmp_path / 'missing.keras'}"
    ]


def test_a_bad_flag_is_a_usage_error():
    result = _binary("train_early_exit.py", "--batch_size=0")
    assert result.returncode == 1
    assert "--batch_size must be a positive integer" in result.stderr
