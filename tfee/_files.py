"""Atomic file writes: a failure never leaves a half-written file in place."""

import os
import tempfile

__all__ = ["write_atomically", "write_bytes_atomically"]


def write_atomically(path, write):
    """Calls `write(temporary_path)` beside `path`, then moves it onto `path`.

    The temporary file keeps `path`'s extension (some writers check it). On
    any error it is removed and `path` is left as it was.

    Returns:
      `path`.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    suffix = ".partial" + os.path.splitext(path)[1]
    handle, partial = tempfile.mkstemp(
        dir=directory, prefix="." + os.path.basename(path) + ".", suffix=suffix
    )
    os.close(handle)
    try:
        write(partial)
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise
    return path


def write_bytes_atomically(path, data):
    """Writes bytes (or UTF-8 text) to `path` atomically; returns `path`."""
    payload = data.encode("utf-8") if isinstance(data, str) else data

    def write(partial):
        with open(partial, "wb") as f:
            f.write(payload)

    return write_atomically(path, write)
