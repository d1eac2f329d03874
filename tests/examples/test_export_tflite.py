"""End to end: examples/export_tflite.py on a tiny saved network."""

import importlib.util
import os

from absl import flags
from absl.testing import flagsaver

from tests.export.conftest import tiny_network

HERE = os.path.dirname(os.path.abspath(__file__))


def _load_example():
    path = os.path.join(HERE, "..", "..", "examples", "export_tflite.py")
    spec = importlib.util.spec_from_file_location("export_tflite_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = _load_example()


def test_main_exports_verifies_and_writes_micro_stages(tmp_path, capsys):
    model_path = str(tmp_path / "net.keras")
    tiny_network(with_confidence=False).save(model_path)
    flags.FLAGS.mark_as_parsed()
    with flagsaver.flagsaver(
        model_path=model_path,
        export_dir=str(tmp_path / "out"),
        quantize=["float32"],
        micro=True,
        calibration_data="random",
    ):
        example.main([])
    printed = capsys.readouterr().out
    assert "float32" in printed and "verified" in printed
    assert os.path.isfile(tmp_path / "out" / "net_float32.tflite")
    assert "micro stage_2" in printed
    assert os.path.isfile(tmp_path / "out" / "micro" / "tfee_model_cascade.cc")
