"""tests/disk_cache.py: built once, never read half-built."""

import pytest

from tests import disk_cache


def test_an_artifact_is_built_once_and_read_only(tmp_path):
    calls = []

    def build(folder):
        calls.append(folder)
        (folder / "value.txt").write_text("42")

    first = disk_cache.build_once(tmp_path / "thing", build)
    second = disk_cache.build_once(tmp_path / "thing", build)
    assert first == second == tmp_path / "thing" and len(calls) == 1
    assert (first / "value.txt").read_text() == "42"
    assert not (first / "value.txt").stat().st_mode & 0o222


def test_an_interrupted_build_is_built_again(tmp_path):
    def interrupted(folder):
        (folder / "half.txt").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        disk_cache.build_once(tmp_path / "thing", interrupted)
    assert not (tmp_path / "thing" / ".complete").exists()

    def build(folder):
        assert not (folder / "half.txt").exists()
        (folder / "whole.txt").write_text("whole")

    folder = disk_cache.build_once(tmp_path / "thing", build)
    assert sorted(p.name for p in folder.iterdir()) == [".complete", "whole.txt"]


def test_the_key_changes_with_the_code_that_builds(tmp_path):
    builder = disk_cache.PROJECT / "tests" / "tiny_files.py"
    assert disk_cache.code_key(builder) != disk_cache.code_key()
    assert disk_cache.files_key(builder) == disk_cache.files_key(builder)
