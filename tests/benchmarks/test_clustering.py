"""benchmarks.clustering and clustering_ceiling run end to end in quick mode."""

import pytest

from benchmarks import clustering
from benchmarks import clustering_ceiling
from tests.benchmarks import _quick

# Run by `python3 dev.py test-long` and CI, not by the README's test command.
pytestmark = pytest.mark.long


def test_quick_clustering_measures_the_goal_file_of_each_setting(quick_flags):
    goal = clustering.goal_artifact(folded=False)
    _quick.run_main(
        clustering,
        {
            **quick_flags,
            "clustering_settings": "2",
            "clustering_steps": 2,
            "clustering_staged": False,
            "clustering_artifacts": [goal],
        },
    )
    result = _quick.read_json(quick_flags["results_dir"], "clustering_quick.json")
    assert result["goal_artifact"] == goal
    (row,) = result["settings"]
    assert row["clusters"] == "2"
    assert set(row["after"]["exits"]) == {"exit_1", "exit_2", "exit_3"}
    assert row["artifacts"][goal]["ratio"] > 1.0
    assert set(row["artifacts"][goal]["test_accuracy"]["exits"]) == set(
        row["after"]["exits"]
    )


def test_quick_ceiling_reports_the_fixed_cost_and_each_count(quick_flags):
    _quick.run_main(clustering_ceiling, {**quick_flags, "ceiling_settings": "2"})
    result = _quick.read_json(
        quick_flags["results_dir"], "clustering_ceiling_quick.json"
    )
    assert (
        0 < result["fixed_cost"]["gzip_bytes"] < result["dense_goal_file"]["gzip_bytes"]
    )
    (row,) = result["counts"]
    assert row["clusters"] == "2" and row["ratio"] > result["dense_goal_file"]["ratio"]
