"""benchmarks.training_throughput alternates timed windows of both models."""

import pytest

from benchmarks import training_throughput
from tests.benchmarks import _quick

# Run by `python3 dev.py test-long` and CI, not by the README's test command.
pytestmark = pytest.mark.long


def test_quick_throughput_reports_both_models_per_window(quick_flags):
    _quick.run_main(training_throughput, quick_flags)
    result = _quick.read_json(quick_flags["results_dir"], "training_throughput.json")
    assert result["setting"] == "smoke check only, not a result"
    assert result["data"].startswith("SYNTHETIC")
    assert len(result["backbone_images_per_second"]) == 2
    assert len(result["early_exit_images_per_second"]) == 2
    assert result["ratio_of_medians"] > 0
