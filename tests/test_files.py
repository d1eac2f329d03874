"""Atomic writes: a failed write keeps the old file and leaves nothing behind."""

import os

import pytest

from tfee import _files


def test_bytes_and_text_are_written(tmp_path):
    path = str(tmp_path / "out.json")
    _files.write_bytes_atomically(path, "{}")
    assert open(path).read() == "{}"
    _files.write_bytes_atomically(path, b"[]")
    assert open(path, "rb").read() == b"[]"
    assert os.listdir(tmp_path) == ["out.json"]


def test_a_failing_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "file.bin"
    path.write_bytes(b"good")
    with pytest.raises(TypeError):
        _files.write_bytes_atomically(str(path), object())

    def crash(partial):
        open(partial, "wb").write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        _files.write_atomically(str(path), crash)
    assert path.read_bytes() == b"good"
    assert os.listdir(tmp_path) == ["file.bin"]


def test_the_temporary_file_keeps_the_extension(tmp_path):
    seen = []
    _files.write_atomically(
        str(tmp_path / "plot.png"), lambda p: (seen.append(p), open(p, "w"))
    )
    assert seen[0].endswith(".png")
