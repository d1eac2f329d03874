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
    # The result names the training it was measured on.
    assert len(result["record"]["reference_weights"]) == 16
    # A second run finds the cached network and leaves the results alone.
    os.remove(os.path.join(results, "reference_network_quick.json"))
    _quick.run_main(reference, values)
    assert not os.listdir(results)


def test_a_committed_reference_of_the_same_epochs_is_loaded_not_trained(
    tmp_path, monkeypatch
):
    from absl.testing import flagsaver

    from tfee import recipes

    record = str(tmp_path / "committed" / "reference_full.json")
    arguments = {"depth": 8, "width": 4, "fractions": [0.3, 0.6]}
    recipes.save_committed_reference(
        recipes.build_reference_network(**arguments),
        arguments, [0.5] * 3, [0.25] * 3, 30, {"command": "test"}, record,
    )  # fmt: skip
    monkeypatch.setattr(recipes, "COMMITTED_REFERENCE", record)
    cache = str(tmp_path / "cache")
    with flagsaver.flagsaver(quick=False, cache_dir=cache):
        assert not reference._trains()
        with flagsaver.flagsaver(reference_epochs=10):
            assert reference._trains()
        with flagsaver.flagsaver(reference_retrain=True):
            assert reference._trains()
    # Installed into the cache, as benchmarks then load it.
    recipes.reference_network("unused.tar.gz", cache, train_if_missing=False)
    assert os.path.exists(recipes.reference_network_path(cache))
