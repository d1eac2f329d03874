"""benchmarks.escepe clusters the network uniformly and section-wise, with and
without distillation, and measures each deployed file."""

import os

import pytest
from absl import app
from absl.testing import flagsaver

from benchmarks import common
from benchmarks import escepe
from tests.benchmarks import _quick

# Run by `python3 dev.py test-long` and CI, not by the README's test command.
pytestmark = pytest.mark.long


def test_quick_run_compares_the_variants_and_resumes_from_its_cache(
    quick_flags, capsys
):
    flags = {
        **quick_flags,
        "escepe_uniform": "2",
        "escepe_sectionwise": "1:3,2:2,3:2",
        "escepe_steps": 2,
        "escepe_tflm_images": 8,
        # (a) differs from (b) only in its counts flag: two variants suffice.
        "escepe_variants": ["sectionwise", "sectionwise_distill"],
    }
    _quick.run_main(escepe, flags)
    result = _quick.read_json(quick_flags["results_dir"], "escepe_quick.json")
    variants = result["variants"]
    assert list(variants) == ["sectionwise", "sectionwise_distill"]
    assert [v["distillation"] for v in variants.values()] == [False, True]
    assert variants["sectionwise"]["clusters"] == "1:3,2:2,3:2"
    for entry in variants.values():
        assert entry["bits_per_weight"]["flash"] > 0
        # Two or three clusters: one or two index bits in the deployed file.
        assert entry["index_bits_per_packed_weight"] <= 2
        assert set(entry["keras_points_below_uncompressed"]) == {
            "exit_1",
            "exit_2",
            "exit_3",
            "ensemble",
        }
        assert entry["tflm"]["images"] == 8
    gain = result["distillation_gain_points"]
    assert gain["exit_1"] == pytest.approx(
        variants["sectionwise"]["keras_points_below_uncompressed"]["exit_1"]
        - variants["sectionwise_distill"]["keras_points_below_uncompressed"]["exit_1"],
        abs=0.011,
    )
    assert os.path.exists(os.path.join(quick_flags["results_dir"], "escepe_quick.png"))
    # A rerun reads each clustered network back instead of clustering again.
    capsys.readouterr()
    with flagsaver.flagsaver(**flags):
        network, data = common.reference()
        _, seconds = escepe.clustered("sectionwise_distill", network, data)
    assert seconds is None
    assert "sectionwise_distill: cached" in capsys.readouterr().out


def test_unknown_variants_are_refused(quick_flags):
    with pytest.raises(app.UsageError, match="--escepe_variants must name"):
        _quick.run_main(escepe, {**quick_flags, "escepe_variants": ["x"]})
