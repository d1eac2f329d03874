"""benchmarks.beyond_sdn trains every variant on one budget and compares them."""

import os

import pytest
from absl import app

from benchmarks import beyond_sdn
from tests.benchmarks import _quick

# Run by `python3 dev.py test-long` and CI, not by the README's test command.
pytestmark = pytest.mark.long


def test_quick_run_compares_every_variant_and_resumes_from_its_cache(
    quick_flags, capsys
):
    flags = {**quick_flags, "beyond_epochs": 1}
    _quick.run_main(beyond_sdn, flags)
    result = _quick.read_json(quick_flags["results_dir"], "beyond_sdn_quick.json")
    assert result["budget"]["epochs_per_variant"] == 1
    variants = result["variants"]
    assert set(variants) == {"plain", "sdn", "sdn_distill", "ztw", "ztw_post"}
    assert variants["plain"]["seconds_per_epoch"] > 0
    for name in ("sdn", "sdn_distill", "ztw", "ztw_post"):
        entry = variants[name]
        assert len(entry["test_accuracy_per_exit"]) == 3
        assert entry["deepest_exit_minus_plain_points"] is not None
        assert len(entry["ensemble"]["test_accuracy_per_exit"]) == 3
        for rule in ("max_softmax", "decision", "max_softmax+ensemble"):
            assert set(entry[rule]) >= {
                "at_25pct_macs",
                "at_50pct_macs",
                "at_75pct_macs",
                "drop_0.5pt_vs_own_deepest",
                "drop_0.5pt_vs_plain",
            }
            own = entry[rule]["drop_0.5pt_vs_own_deepest"]
            assert 0 < own["macs_fraction"] <= 1.5 and own["cost_vs_oracle"] >= 1
    assert variants["sdn_distill"]["seconds_per_epoch_vs_sdn"] > 0
    throughput = result["training_throughput_side_by_side"]
    assert set(throughput["images_per_second_median"]) == set(variants)
    assert throughput["time_per_epoch_vs_sdn"]["sdn"] == 1.0
    assert all(v > 0 for v in throughput["time_per_epoch_vs_sdn"].values())
    assert os.path.exists(
        os.path.join(quick_flags["results_dir"], "beyond_sdn_quick.png")
    )
    # A second run reads every variant from the cache instead of training.
    cached = [
        f for f in os.listdir(quick_flags["cache_dir"]) if f.startswith("beyond_sdn")
    ]
    assert sum(f.endswith(".keras") for f in cached) == 5
    capsys.readouterr()
    # (d') is built on (a): both come back from the cache, untrained.
    again = ["plain", "ztw_post"]
    _quick.run_main(
        beyond_sdn,
        {**flags, "beyond_throughput_windows": 0, "beyond_variants": again},
    )
    printed = capsys.readouterr().out
    assert "training" not in printed
    assert all(f"{name}: cached" in printed for name in again)


def test_unknown_variants_and_rules_are_refused(quick_flags):
    with pytest.raises(app.UsageError, match="--beyond_variants must include"):
        _quick.run_main(beyond_sdn, {**quick_flags, "beyond_variants": ["sdn", "x"]})
    with pytest.raises(app.UsageError, match="--beyond_rules must name"):
        _quick.run_main(beyond_sdn, {**quick_flags, "beyond_rules": ["patience"]})
