"""benchmarks.tflite_latency times the LiteRT cascades against the full models."""

import pytest

from benchmarks import tflite_latency
from tests.benchmarks import _quick

# Run by `python3 dev.py test-long` and CI, not by the README's test command.
pytestmark = pytest.mark.long


def test_quick_latency_times_float32_and_int8_cascades_in_one_run(quick_flags):
    _quick.run_main(tflite_latency, {**quick_flags, "samples": 24})
    result = _quick.read_json(quick_flags["results_dir"], "tflite_latency_quick.json")
    assert result["samples"] == 24
    for quantize in ("float32", "int8"):
        entry = result[quantize]
        assert sum(entry["exit_histogram"]) == 24
        assert entry["cascade_latency_ms"]["median"] > 0
        assert entry["full_latency_ms"]["median"] > 0
        assert 0 < entry["macs_ratio"] <= 1.0 + 1e-9
        assert entry["policy"]["num_exits"] == len(entry["exit_histogram"])
