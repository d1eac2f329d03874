"""End to end: examples/run_tflite_cascade.py on a tiny exported network."""

from absl import flags
from absl.testing import flagsaver

import tfee.export
from examples import run_tflite_cascade as example
from tests.tiny_files import tiny_network


def test_main_runs_the_cascade_and_counts_exits(tmp_path, capsys):
    path = str(tmp_path / "net.tflite")
    tfee.export.tflite(tiny_network(), path, signatures=["stage_1", "stage_2"])
    flags.FLAGS.mark_as_parsed()
    with flagsaver.flagsaver(
        model=path,
        threshold=0.0,
        data="digits",
        cascade_batch=4,
        output_dir=str(tmp_path / "out"),
    ):
        example.main([])
    printed = capsys.readouterr().out
    assert "exit_1: 359 samples" in printed and "accuracy:" in printed
    assert "exit_2: 0 samples" in printed
    assert "mean MACs" in printed
