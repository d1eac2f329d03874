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
        calls = {"full", "cascade", "readme", "lean", "time", "budget"}
        assert set(entry["latency_ms"]) == calls
        assert all(entry["latency_ms"][c]["median"] > 0 for c in calls)
        assert set(entry["ratio_of_means"]) == calls - {"full"}
        assert 0 < entry["macs_ratio"] <= 1.0 + 1e-9
        num_exits = len(entry["exit_histogram"])
        assert entry["policies"]["time"]["num_exits"] == num_exits
        assert len(entry["exit_costs_ms"]) == len(entry["stage_invoke_ms"]) == num_exits
        assert entry["stage_split"] > 0 and entry["zero_overhead_bound"] > 0
        # The hand-written client decides as the cascade does.
        assert entry["lean_exits_agree"] == 1.0
        assert len(entry["goals"]) == 5
