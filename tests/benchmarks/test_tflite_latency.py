"""benchmarks.tflite_latency times the LiteRT cascade against the full model."""

from benchmarks import tflite_latency
from tests.benchmarks import _quick


def test_quick_latency_times_cascade_and_full_model(quick_flags):
    _quick.run_main(tflite_latency, {**quick_flags, "samples": 24})
    result = _quick.read_json(quick_flags["results_dir"], "tflite_latency_quick.json")
    assert result["samples"] == 24
    assert sum(result["exit_histogram"]) == 24
    assert result["cascade_latency_ms"]["median"] > 0
    assert result["full_latency_ms"]["median"] > 0
    assert 0 < result["macs_ratio"] <= 1.0 + 1e-9
