"""benchmarks.int8_agreement measures ptq and qat int8 files per exit."""

import pytest

from benchmarks import int8_agreement
from tests.benchmarks import _quick

# Run by `python3 dev.py test-long` and CI, not by the README's test command.
pytestmark = pytest.mark.long


def test_quick_int8_agreement_measures_ptq_and_qat_per_exit(quick_flags):
    _quick.run_main(int8_agreement, {**quick_flags, "int8_qat_epochs": 1})
    result = _quick.read_json(quick_flags["results_dir"], "int8_agreement_quick.json")
    assert result["calibration_images"] == result["compared_images"] == 64
    for variant in ("ptq", "qat"):
        entry = result[variant]
        assert len(entry["test_accuracy_int8_stage_chain"]) == 3
        assert len(entry["drop_points"]) == 3
        signatures = set(entry["agreement_with_source"])
        assert {"exit_1", "stage_3"} <= signatures
        assert all(0 <= a <= 1 for a in entry["agreement_with_float32"].values())
    assert set(result["ptq"]["disagreements_within_two_int8_steps"]) == {
        "exit_1",
        "exit_2",
        "exit_3",
    }
