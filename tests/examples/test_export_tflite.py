"""End to end: examples/export_tflite.py on a tiny saved network."""

import os

import pytest
from absl import flags
from absl.testing import flagsaver

from examples import export_tflite as example
from tests.tiny_files import tiny_network


def test_main_exports_verifies_and_writes_micro_stages(tmp_path, capsys):
    model_path = str(tmp_path / "net.keras")
    tiny_network(with_confidence=False, num_classes=10).save(model_path)
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


def test_a_file_that_fails_verification_is_left_aside_not_where_the_next_step_reads(
    tmp_path,
):
    # Issue 31: the binary exited 1 but left net_int8.tflite for the next step.
    model_path = str(tmp_path / "net.keras")
    tiny_network(with_confidence=False, num_classes=10).save(
        model_path
    )  # untrained: int8 differs
    out = tmp_path / "out"
    out.mkdir()
    (out / "net_int8.tflite").write_bytes(b"an earlier run's file")
    flags.FLAGS.mark_as_parsed()
    with flagsaver.flagsaver(
        model=model_path,
        output_dir=str(out),
        quantize=["int8"],
        micro=False,
        data="digits",
        min_agreement=1.0,
    ):
        with pytest.raises(example.shell.CommandError, match="verification failed"):
            example.main([])
    assert not (out / "net_int8.tflite").exists()
    assert (out / "net_int8.unverified.tflite").is_file()
