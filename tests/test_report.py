import json

import numpy as np
import pytest

import tfee.policy
from tests.policy.conftest import make_outputs
from tfee import report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def evaluation():
    outputs = make_outputs()
    # A threshold no sample reaches at exit 3 leaves it empty: NaN accuracy there.
    return tfee.evaluate(outputs, policy=tfee.ThresholdPolicy([0.6, 0.6, None]))


def test_text_table_has_a_row_per_exit_and_the_oracle(evaluation):
    table = report.text_table(evaluation)
    lines = table.splitlines()
    assert lines[0].startswith("policy: ThresholdPolicy")
    assert "oracle: accuracy" in table
    rows = [line for line in lines if line[:1].isdigit()]
    assert [r.split()[0] for r in rows] == ["1", "2", "3", "4"]
    assert rows[2].split()[3] == "0"  # Nobody leaves at exit 3.
    assert str(evaluation) == table


def test_write_report_writes_table_json_and_png_plots(evaluation, tmp_path):
    front = tfee.policy.front(make_outputs())
    paths = report.write_report(
        str(tmp_path / "out"), evaluation, front, extra={"x": np.nan}
    )
    with open(paths["json"]) as f:
        data = json.load(f)
    assert data["evaluation"]["accuracy"] == pytest.approx(evaluation.accuracy)
    assert data["evaluation"]["exit_accuracy"][2] is None
    assert data["evaluation"]["oracle"]["accuracy"] == pytest.approx(
        evaluation.oracle.accuracy
    )
    assert len(data["front"]["points"]) == len(front.points)
    assert data["extra"] == {"x": None}
    for name in ("front", "histogram"):
        with open(paths[name], "rb") as f:
            assert f.read(8) == PNG_SIGNATURE
    with open(paths["table"]) as f:
        assert f.read().strip() == report.text_table(evaluation)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        ["report.txt", "report.json", "accuracy_vs_macs.png", "exit_histogram.png"]
    )


def test_reports_reject_things_that_are_not_evaluations(tmp_path):
    with pytest.raises(TypeError, match="must be a tfee Evaluation"):
        report.text_table({"accuracy": 1.0})
    with pytest.raises(TypeError, match="must be a tfee Evaluation"):
        report.plot_front(str(tmp_path / "a.png"), None)
