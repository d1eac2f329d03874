"""End to end: examples/run_tflite_cascade.py on a tiny exported network."""

import pytest
from absl import flags
from absl.testing import flagsaver

import tfee.export
from examples import run_tflite_cascade as example
from tests.tiny_files import tiny_network


def test_main_runs_the_cascade_and_counts_exits(tmp_path, capsys):
    path = str(tmp_path / "net.tflite")
    tfee.export.tflite(
        tiny_network(num_classes=10), path, signatures=["stage_1", "stage_2"]
    )
    flags.FLAGS.mark_as_parsed()
    with flagsaver.flagsaver(
        model=path,
        threshold=0.0,
        data="digits",
        cascade_batch=4,
        output_dir=str(tmp_path / "out"),
    ):
        example.main([])
    printed = capsys.readouterr().out
    assert "exit_1: 359 samples" in printed and "accuracy:" in printed
    assert "exit_2: 0 samples" in printed
    assert "mean MACs" in printed
    assert "mean latency: " in printed and "full model" not in printed  # batch 4


def test_the_mean_macs_are_a_percentage_of_the_full_networks_macs(tmp_path, capsys):
    # Issue 34: it printed "% of exit_K" (heads included) where every other
    # report divides by the backbone alone.
    import json

    import numpy as np

    path = str(tmp_path / "net.tflite")
    tfee.export.tflite(tiny_network(num_classes=10), path)
    metadata = tfee.runtime.read_metadata(path)
    exit_macs = np.array([e["cumulative_macs"] for e in metadata["exits"]])
    assert exit_macs[-1] > metadata["full_macs"]  # so exit_K would differ
    flags.FLAGS.mark_as_parsed()
    out = tmp_path / "out"
    with flagsaver.flagsaver(
        model=path, threshold=0.5, data="digits", cascade_batch=8, output_dir=str(out)
    ):
        example.main([])
    printed = capsys.readouterr().out
    (summary_path,) = out.rglob("cascade_summary.json")
    summary = json.loads(summary_path.read_text())
    counts = np.array(list(summary["samples_per_exit"].values()))
    mean_macs = float(np.sum(counts * exit_macs) / np.sum(counts))
    assert summary["full_macs"] == metadata["full_macs"]
    assert summary["mean_macs"] == pytest.approx(mean_macs)
    percent = 100 * mean_macs / metadata["full_macs"]
    assert f"({percent:.1f}% of the full network's MACs)" in printed
    assert "exit_K" not in printed


def test_at_batch_one_the_latency_is_reported_beside_the_full_models(tmp_path, capsys):
    import json

    path = str(tmp_path / "net.tflite")
    tfee.export.tflite(tiny_network(num_classes=10), path)
    flags.FLAGS.mark_as_parsed()
    out = tmp_path / "out"
    with flagsaver.flagsaver(
        model=path, threshold=0.5, data="digits", output_dir=str(out)
    ):
        example.main([])
    printed = capsys.readouterr().out
    assert "of the full model's" in printed and "measured on this machine" in printed
    (summary_path,) = out.rglob("cascade_summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["mean_latency_ms"] > 0 and summary["full_model_ms"] > 0
    assert (
        summary["latency_fraction"]
        == summary["mean_latency_ms"] / summary["full_model_ms"]
    )


def test_a_threshold_beside_an_embedded_policy_fails_in_one_line(tmp_path):
    # Issue 31, item 10: --threshold=1.5 was ignored without a notice.
    import tfee

    path = str(tmp_path / "with_policy.tflite")
    tfee.export.tflite(tiny_network(), path, signatures=["stage_1", "stage_2"])
    tfee.export.set_policy(path, tfee.ThresholdPolicy([0.5]))
    flags.FLAGS.mark_as_parsed()
    with flagsaver.flagsaver(model=path, data="digits", output_dir=str(tmp_path)):
        example.FLAGS(["run_tflite_cascade", "--threshold=1.5"])
        with pytest.raises(example.shell.CommandError, match="the file embeds one"):
            example.main([])
