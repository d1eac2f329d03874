"""benchmarks.micro_instructions counts the firmware's and the full model's
instructions per image under callgrind."""

import shutil

import pytest

from benchmarks import micro_instructions
from tests import tflm_kit
from tests.benchmarks import _quick

# Builds on the TFLM library and runs valgrind: `python3 dev.py test-long`.
pytestmark = [
    pytest.mark.long,
    pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind"),
    pytest.mark.skipif(not tflm_kit.KIT.is_dir(), reason="needs the TFLM kit"),
]


def test_quick_counts_firmware_and_full_model_instructions(quick_flags):
    _quick.run_main(
        micro_instructions,
        {**quick_flags, "instruction_images": 6, "micro_calibration_images": 64},
    )
    result = _quick.read_json(
        quick_flags["results_dir"], "micro_instructions_quick.json"
    )
    assert result["images"] == 6 and sum(result["exit_histogram"]) == 6
    assert result["firmware_instructions_per_image"] > 0
    assert result["full_model_instructions_per_image"] > 0
    assert result["instruction_ratio"] == pytest.approx(
        result["firmware_instructions_per_image"]
        / result["full_model_instructions_per_image"]
    )
    # The firmware leaves where the tflite-micro interpreter's cascade does.
    assert result["firmware_agrees_with_micro_cascade"] == {
        "exits": 1.0,
        "classes": 1.0,
    }
