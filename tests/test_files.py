"""Atomic writes: a failed write keeps the old file and leaves nothing behind."""

import os

import numpy as np
import pytest

import tfee
import tfee.export
from tfee import _files
from tfee import keras


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


def test_keras_weights_written_atomically_load_in_their_own_format(tmp_path):
    # tf_keras writes `.weights.h5` in the Keras 3 layout and `.h5` in the
    # legacy one: a temporary `.h5` name would give a file load_weights
    # cannot read under the final name.
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    path = str(tmp_path / "net.weights.h5")
    _files.write_atomically(path, model.save_weights)
    copy = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    copy.load_weights(path)
    np.testing.assert_array_equal(copy.get_weights()[0], model.get_weights()[0])


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_a_new_file_gets_the_mode_open_would_give_under_the_umask(tmp_path, umask_022):
    path = tmp_path / "model.tflite"
    _files.write_bytes_atomically(str(path), b"\x00")
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    _files.write_atomically(
        str(tmp_path / "plot.png"), lambda p: open(p, "wb").write(b"png")
    )
    assert oct((tmp_path / "plot.png").stat().st_mode & 0o777) == oct(0o644)


def test_a_replaced_file_keeps_its_mode(tmp_path, umask_022):
    path = tmp_path / "policy.json"
    path.write_text("{}")
    path.chmod(0o640)
    _files.write_bytes_atomically(str(path), "[]")
    assert oct(path.stat().st_mode & 0o777) == oct(0o640)
    assert path.read_text() == "[]"


def test_an_output_path_under_a_file_is_refused_before_any_work(tmp_path):
    # Issue 31: "[Errno 17]" came only after the conversion had run.
    blocker = tmp_path / "taken"
    blocker.write_text("a file")
    with pytest.raises(ValueError, match=r"'.*taken' is a file, not a folder"):
        tfee.export.tflite(None, str(blocker / "sub" / "net.tflite"))
    with pytest.raises(ValueError, match="must be a folder"):
        _files.check_output_path(str(blocker), "api", "directory", directory=True)
    _files.check_output_path(str(tmp_path / "new" / "net.tflite"), "api")  # fine
