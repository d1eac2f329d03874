"""End to end: examples/export_tflite.py on a tiny saved network."""

import os

from absl import flags
from absl.testing import flagsaver

from examples import export_tflite as example
from tests.tiny_files import tiny_network


def test_main_exports_verifies_and_writes_micro_stages(tmp_path, capsys):
    model_path = str(tmp_path / "net.keras")
    tiny_network(with_confidence=False).save(model_path)
    flags.FLAGS.mark_as_parsed()
    with flagsaver.flagsaver(
        model=model_path,
        output_dir=str(tmp_path / "out"),
        quantize=["float32"],
        micro=True,
        data="digits",
    ):
        example.main([])
    printed = capsys.readouterr().out
    assert "float32" in printed and "verified" in printed
    assert os.path.isfile(tmp_path / "out" / "net_float32.tflite")
    assert "micro stage_2" in printed
    assert os.path.isfile(tmp_path / "out" / "micro" / "tfee_model_cascade.cc")
