"""Atomic file writes: a failure never leaves a half-written file in place."""

import os
import secrets
import stat

__all__ = ["check_output_path", "write_atomically", "write_bytes_atomically"]

# Create-mode of a new file as `open()` passes it; the kernel subtracts the umask.
_NEW_FILE_MODE = 0o666


def check_output_path(path, api, argument="path", directory=False):
    """Raises before any work where `path` cannot be written: it is an
    existing folder (or, with `directory`, an existing file), or a file
    stands where one of its parent folders would have to be.

    Raises:
      TypeError: `path` is not a path.
      ValueError: naming `api` and `argument`, and what is in the way.
    """
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise TypeError(
            f"{api}: `{argument}` must be a path string. Received: {argument}={path!r}"
        )
    path = os.path.abspath(os.fspath(path))
    if directory and os.path.isfile(path):
        raise ValueError(
            f"{api}: `{argument}` must be a folder (made if missing); a file is "
            f"there. Received: {argument}={path!r}"
        )
    if not directory and os.path.isdir(path):
        raise ValueError(
            f"{api}: `{argument}` is a directory; pass the file to write, e.g. "
            f"{os.path.join(path, 'network.tflite')!r}. Received: {argument}={path!r}"
        )
    parent = os.path.dirname(path)
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent) if os.path.dirname(parent) != parent else ""
    if parent and not os.path.isdir(parent):
        raise ValueError(
            f"{api}: `{argument}` cannot be written: {parent!r} is a file, not a "
            f"folder. Received: {argument}={path!r}"
        )


def write_atomically(path, write):
    """Calls `write(temporary_path)` beside `path`, then moves it onto `path`.

    The temporary file keeps `path`'s extension (some writers check it). On
    any error it is removed and `path` is left as it was. The result has the
    permissions a plain `open(path, "w")` would give it: those of the file it
    replaces, or `0o666` less the process umask for a new file.

    Returns:
      `path`.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    partial = _create_partial(directory, os.path.basename(path))
    try:
        _keep_mode_of(path, partial)
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


_KERAS_WEIGHTS = ".weights.h5"


def _create_partial(directory, name):
    # Not tempfile.mkstemp: it creates the file 0600 and the rename would keep
    # that mode. os.open with 0o666 lets the kernel apply the umask, as open()
    # does, without touching the process-wide umask (os.umask is not thread-safe).
    # Keras picks a format by the ending, and `.weights.h5` is not `.h5`.
    ending = _KERAS_WEIGHTS if name.endswith(_KERAS_WEIGHTS) else None
    suffix = ".partial" + (ending or os.path.splitext(name)[1])
    while True:
        partial = os.path.join(
            directory, "." + name + "." + secrets.token_hex(4) + suffix
        )
        try:
            handle = os.open(
                partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _NEW_FILE_MODE
            )
        except FileExistsError:
            continue
        os.close(handle)
        return partial


def _keep_mode_of(path, partial):
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return
    os.chmod(partial, mode)
