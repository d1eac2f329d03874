"""The README's demo runs end to end on the embedded digits."""

from absl.testing import flagsaver

import tfee
from examples import demo


def test_demo_trains_and_reports_every_exit(tmp_path):
    data = tfee.data.load("digits")
    rows, full_macs, evaluation = demo.run_demo(
        data, epochs=1, head="linear", seed=0, output_dir=str(tmp_path)
    )
    assert [info.name for info, _ in rows] == ["exit_1", "exit_2", "exit_3"]
    assert all(0.0 <= accuracy <= 1.0 for _, accuracy in rows)
    table = demo.format_table(rows, full_macs)
    assert "block1_out" in table and "full network" in table
    assert sum(evaluation.exit_counts) == evaluation.num_samples == 359
    assert 0 < evaluation.macs_fraction <= rows[-1][0].cumulative_macs / full_macs
    assert (tmp_path / "test_accuracy_vs_macs.png").read_bytes()[:4] == b"\x89PNG"


def test_demo_main_prints_the_table(capsys, tmp_path):
    with flagsaver.flagsaver(epochs=1, output_dir=str(tmp_path)):
        demo.FLAGS(["demo"])
        demo.main([])
    printed = capsys.readouterr().out
    assert "samples leaving at each exit: exit_1:" in printed
    assert "linear" in printed  # the demo's own default head
