"""benchmarks.export_time times every export kind beside a git baseline."""

import pytest

from benchmarks import export_time
from tests.benchmarks import _quick

# Run by `python3 dev.py test-long` and CI, not by the README's test command.
pytestmark = pytest.mark.long


def test_quick_export_time_runs_both_trees_side_by_side(tmp_path):
    # It builds its own untrained networks: no stand-in to train first.
    _quick.run_main(export_time, {"quick": True, "results_dir": str(tmp_path)})
    result = _quick.read_json(str(tmp_path), "export_time_quick.json")
    assert result["baseline"] == "HEAD"
    for tree in ("current", "baseline"):
        (run,) = result["runs"][tree]
        assert set(run) == {"float32", "int8", "micro"} and min(run.values()) > 0
    assert set(result["speedup"]) == {"float32", "int8", "micro"}
