"""benchmarks.cascade_overhead times the engine against the bare stage chain."""

import pytest

from benchmarks import cascade_overhead
from tests.benchmarks import _quick

# Run by `python3 dev.py test-long` and CI, not by the README's test command.
pytestmark = pytest.mark.long


def test_quick_overhead_times_engine_stages_and_full_model(quick_flags):
    _quick.run_main(cascade_overhead, {**quick_flags, "overhead_samples": 24})
    result = _quick.read_json(quick_flags["results_dir"], "cascade_overhead_quick.json")
    assert result["samples"] == 24 and result["num_exits"] == 3
    for quantize in ("float32", "int8"):
        medians = result[quantize]["median_ms"]
        assert set(medians) == {"engine", "stages", "full"}
        assert all(value > 0 for value in medians.values())
        overhead = medians["engine"] - medians["stages"]
        assert abs(result[quantize]["engine_overhead_ms"] - overhead) < 1e-3
