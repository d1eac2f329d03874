"""One denominator and one name for a percentage of MACs (issue 34).

Every report, plot, binary and page divides by the full network's MACs (the
backbone alone, input to its classifier, no heads: `CostReport.full_macs`) and
says so in one phrase, "% of the full network's MACs" ("% full MACs" where a
column header has no room). The wordings it replaced, and the MFLOPs of the
pruning plots, must not come back.
"""

import pathlib
import re

import numpy as np
import pytest

import tfee
from tests import tiny_files
from tfee.policy import outputs as outputs_lib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PHRASE = "% of the full network's MACs"
SHORT = "% full MACs"
# Where the project prints, plots or writes MACs percentages; the tests are
# left out because they quote the old wordings to forbid them.
SCANNED = (
    [p for d in ("tfee", "examples", "benchmarks") for p in (ROOT / d).rglob("*.py")]
    + [ROOT / "README.md", ROOT / "CONTRIBUTING.md"]
    + list((ROOT / "docs").rglob("*.md"))
)
OLD_WORDINGS = {
    "% of full": r"% of full\b",
    "of the full MACs": r"of the full MACs",
    "% of the full network)": r"% of the full network\)",
    "of exit_K": r"% of exit_K",
    "of the dense MACs / backbone": r"of (the )?dense (MACs|backbone)",
    "of the backbone's MACs": r"of the backbone('s)? MACs|% of the backbone\)",
    "of its MACs": r"% of its MACs",
    "of the MACs": r"\d%? of the MACs",
    "x full MACs": r"x full MACs",
    "'% MACs' column": r"'% MACs'",
    "% MACs on": r"% MACs on",
    "MFLOPs": r"(?i)mflops",
}


def _text(path):
    # Pages wrap lines anywhere: a phrase may span two.
    return re.sub(r"\s+", " ", path.read_text(encoding="utf-8"))


def test_the_scan_covers_the_places_that_report_macs_percentages():
    names = {p.relative_to(ROOT).as_posix() for p in SCANNED}
    for expected in (
        "tfee/cost.py",
        "tfee/report.py",
        "tfee/policy/evaluation.py",
        "examples/run_tflite_cascade.py",
        "examples/prune_early_exit.py",
        "benchmarks/pruning.py",
        "docs/benchmarks.md",
        "README.md",
    ):
        assert expected in names
    with_phrase = [p for p in SCANNED if PHRASE in _text(p)]
    assert len(with_phrase) >= 20, [p.name for p in with_phrase]


@pytest.mark.parametrize("name", sorted(OLD_WORDINGS))
def test_no_report_plot_binary_or_page_uses_an_old_wording(name):
    pattern = re.compile(OLD_WORDINGS[name])
    found = [
        f"{p.relative_to(ROOT)}: ...{text[max(0, m.start() - 40) : m.end() + 20]}..."
        for p in SCANNED
        for text in [_text(p)]
        for m in pattern.finditer(text)
    ]
    assert not found, "\n".join(found)


def test_the_old_wordings_are_caught_where_they_stood():
    # Without this, a pattern that matches nothing would pass the test above.
    quoted = {
        "% of full": "{'% of full':>11}",
        "of the full MACs": "at 41.3% of the full MACs",
        "% of the full network)": 'set_xlabel("mean MACs (% of the full network)")',
        "of exit_K": "(40.5% of exit_K)",
        "of the dense MACs / backbone": "mean sparse MACs (% of the dense backbone)",
        "of the backbone's MACs": "compute saved (% of the backbone's MACs)",
        "of its MACs": "SDN heads at 15..90% of its MACs",
        "of the MACs": "1.52G (0.55x, at 0.53 of the MACs)",
        "x full MACs": "at 0.613 x full MACs",
        "'% MACs' column": "f\"{'exit':<6}{'% MACs':>8}\"",
        "% MACs on": "At most 60% MACs on validation",
        "MFLOPs": "MFLOPs per sample (sparse)",
    }
    assert set(quoted) == set(OLD_WORDINGS)
    for name, old in quoted.items():
        assert re.search(OLD_WORDINGS[name], old), name
        assert not re.search(OLD_WORDINGS[name], PHRASE + " " + SHORT), name


def _outputs():
    # Exit 2 is the deepest: with its head it costs more than the backbone.
    logits = np.array(
        [[[4.0, 0.0], [0.0, 0.1], [3.0, 0.0]], [[4.0, 0.0], [0.0, 4.0], [0.0, 4.0]]]
    )
    return outputs_lib.ExitOutputs(logits, None, np.array([0, 1, 1]), [10, 36], 30)


def test_the_evaluation_table_names_the_full_networks_macs():
    result = tfee.evaluate(_outputs(), policy=tfee.ThresholdPolicy([0.9]))
    table = result.table()
    # Two samples leave at exit 1 (10 MACs), one at exit 2 (36): 56/3 of 30.
    assert f"{100 * (56 / 3) / 30:.1f}{PHRASE}" in table
    assert SHORT in table and "120.0" in table  # exit 2 includes its head
    assert f"of the full network's MACs ({30:,}, the backbone alone)" in table


def test_the_cost_table_heads_its_percentages_with_the_short_name():
    table = tfee.cost.analyze(tiny_files.tiny_network()).table()
    assert SHORT in table and "% of full" not in table
