"""benchmarks.pruning prunes both orders, caches them and plots the result."""

import os

import pytest

from benchmarks import common
from benchmarks import pruning
from tests.benchmarks import _quick

# Run by `python3 dev.py test-long` and CI, not by the README's test command.
pytestmark = pytest.mark.long


def test_quick_pruning_measures_and_caches_every_order(quick_flags):
    _quick.run_main(
        pruning, {**quick_flags, "pruning_levels": ["0.5"], "pruning_steps": 2}
    )
    directory = quick_flags["results_dir"]
    result = _quick.read_json(directory, "pruning_quick.json")
    assert result["setup"] == common.TINY_SETUP
    assert set(result["orders"]) == set(pruning.ORDERS)
    for order in pruning.ORDERS:
        (row,) = result["orders"][order]
        assert row["level"] == 0.5 and row["overall_sparsity"] > 0.3
        assert len(row["exit_test_accuracy"]) == 3
        cached = pruning.pruned_path(quick_flags["cache_dir"], True, order, 0.5)
        assert os.path.exists(cached)
    assert os.path.getsize(os.path.join(directory, "pruning_quick.png")) > 0
