"""benchmarks.reference trains, caches and reports the (quick) reference network."""

import os

import pytest

from benchmarks import common
from benchmarks import reference
from tests.benchmarks import _quick

# Run by `python3 dev.py test-long` and CI, not by the README's test command.
pytestmark = pytest.mark.long


def test_quick_reference_trains_caches_and_writes_per_exit_accuracy(tmp_path):
    cache = str(tmp_path / "cache")
    results = str(tmp_path / "results")
    values = {"quick": True, "cache_dir": cache, "results_dir": results}
    _quick.run_main(reference, values)
    result = _quick.read_json(results, "reference_network_quick.json")
    assert result["setup"] == common.TINY_SETUP
    assert len(result["test_exit_accuracy"]) == len(result["exits"]) == 3
    assert all(0.0 <= a <= 1.0 for a in result["test_exit_accuracy"])
    assert os.path.exists(os.path.join(cache, "reference_tiny.keras"))
    # A second run finds the cached network and leaves the results alone.
    os.remove(os.path.join(results, "reference_network_quick.json"))
    _quick.run_main(reference, values)
    assert not os.listdir(results)
