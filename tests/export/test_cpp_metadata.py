"""The C++ reader (examples/read_tfee_metadata.cc) gets the same metadata as Python.

Compiled against the TFLite flatbuffer schema headers of the TFLite Micro
source kit in ../shared/tflm (header-only: nothing is linked).
"""

import json
import os
import shutil
import subprocess

import pytest

import tfee
from tests import tiny_files

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
KIT = os.path.join(ROOT, "..", "shared", "tflm")
SOURCE = os.path.join(ROOT, "examples", "read_tfee_metadata.cc")


@pytest.fixture(scope="module")
def reader():
    if not os.path.isdir(KIT):
        pytest.skip(f"no TFLite Micro source kit at {KIT}")
    if shutil.which("g++") is None:
        pytest.skip("no g++")
    return str(tiny_files.shared("cpp_metadata_reader", _compile, depends=[SOURCE]))


def _compile(folder):
    """The reader, compiled once on disk for every worker."""
    binary = str(folder / "read_tfee_metadata")
    subprocess.run(
        [
            "g++",
            "-std=c++17",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-O1",
            "-isystem",
            KIT,
            "-isystem",
            os.path.join(KIT, "third_party", "flatbuffers", "include"),
            SOURCE,
            "-o",
            binary,
        ],
        check=True,
        capture_output=True,
    )
    return binary


def test_the_cpp_reader_prints_the_metadata_python_reads(reader, int8_file):
    printed = subprocess.run(
        [reader, int8_file.path], check=True, capture_output=True, text=True
    ).stdout
    assert json.loads(printed) == tfee.runtime.read_metadata(int8_file.path)


def test_the_cpp_reader_says_when_a_file_has_no_tfee_metadata(reader, tmp_path):
    path = tmp_path / "other.tflite"
    path.write_bytes(b"\0" * 64)
    done = subprocess.run([reader, str(path)], capture_output=True, text=True)
    assert done.returncode == 1 and "no tfee metadata" in done.stderr
