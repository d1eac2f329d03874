"""benchmarks.calibration runs end to end in quick mode."""

import os

import pytest

from benchmarks import calibration
from tests.benchmarks import _quick

# Run by `python3 dev.py test-long` and CI, not by the README's test command.
pytestmark = pytest.mark.long


def test_quick_calibration_writes_policies_timings_and_plots(quick_flags):
    _quick.run_main(calibration, {**quick_flags, "batch1_samples": 8})
    directory = quick_flags["results_dir"]
    result = _quick.read_json(directory, "calibration_quick.json")
    assert result["test"]["accuracy"] >= 0.0
    assert set(result["other_rules"]) == {
        "entropy",
        "margin",
        "decision",
        "max_softmax+ensemble",
        "decision+ensemble",
    }
    assert "ensemble" in result["other_rules"]["decision+ensemble"]["policy"]
    assert result["other_rules"]["decision"]["policy"]["type"] == "decision"
    assert result["dynamic_inference"]["batch1_samples"] == 8
    assert result["dynamic_inference"]["batch1_dynamic_ms"] > 0
    assert result["int8_file"]["test_single_exit_accuracy"]
    for plot in (
        "calibration_accuracy_vs_macs_quick",
        "calibration_exit_histogram_quick",
    ):
        assert os.path.getsize(os.path.join(directory, f"{plot}.png")) > 0
