"""benchmarks.micro_footprint measures arenas and LUT flash in TFLite Micro."""

import pytest

from benchmarks import micro_footprint
from tests.benchmarks import _quick

# Run by `python3 dev.py test-long` and CI, not by the README's test command.
pytestmark = pytest.mark.long


def test_quick_footprint_reports_sufficient_arenas_and_flash_bits(quick_flags):
    _quick.run_main(
        micro_footprint,
        {
            **quick_flags,
            "micro_heads": ["conv"],
            "micro_representative": 16,
            "micro_cascade_images": 4,
            "micro_remeasure": False,
            "micro_clusters": "3:16",  # one clustering stage, where LUTs pay
            "micro_clustering_steps": 1,
            "micro_test_images": 16,
        },
    )
    result = _quick.read_json(quick_flags["results_dir"], "micro_footprint_quick.json")
    (row,) = result["arena"]["heads"]
    assert row["head"] == "conv" and len(row["stages"]) == row["num_exits"] == 3
    for stage in row["stages"]:
        assert stage["written_arena_bytes"] >= stage["measured_arena_bytes"] > 0
        assert stage["header_arena_bytes"] == stage["written_arena_bytes"]
        assert row["shared_arena_bytes"] >= stage["written_arena_bytes"]
    assert row["shared_arena_bytes"] == max(
        s["written_arena_bytes"] for s in row["stages"]
    )
    assert row["static_ram_bytes"] == (
        row["shared_arena_bytes"] + row["features_buffer_bytes"]
    )
    assert row["cascade"]["ran"] and row["cascade"]["every_exit_finite"]
    assert row["cascade"]["images"] == 4
    assert all(row["checks"].values())

    flash = result["flash"]
    assert flash["test_images"] == 16
    assert set(flash["tflm_exit_drop_points_vs_uncompressed"]) == {
        "exit_1",
        "exit_2",
        "exit_3",
    }
    split = flash["flash"]
    parts = ("index", "table", "plain_constant", "graph_overhead")
    assert split["totals"]["flash_bytes"] == sum(
        split["totals"][f"{part}_bytes"] for part in parts
    )
    assert split["bits_per_weight"]["flash"] > 0
    assert split["packed_weights"] > 0 and split["max_index_bits"] <= 4
    assert 0 < split["totals"]["table_bytes"] <= split["totals"]["declared_table_bytes"]
