"""benchmarks.int8_agreement verifies every signature of an int8 export."""

from benchmarks import int8_agreement
from tests.benchmarks import _quick


def test_quick_int8_agreement_checks_every_exit_signature(quick_flags):
    _quick.run_main(int8_agreement, quick_flags)
    result = _quick.read_json(quick_flags["results_dir"], "int8_agreement_quick.json")
    assert result["calibration_images"] == result["compared_images"] == 64
    exits = [name for name in result["signatures"] if name.startswith("exit_")]
    assert exits == ["exit_1", "exit_2", "exit_3"]
    assert set(result["disagreements_within_two_int8_steps"]["share"]) == set(exits)
