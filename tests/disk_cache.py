"""What the tests build once and keep on disk, for every pytest-xdist worker
and every later run: the TFLM library (tests/tflm_kit.py) and the trained
tiny networks and their exports (tests/tiny_files.py).

Each thing lives in its own folder under `root()`, named by a hash of what
builds it, and is built by whichever process asks first while the others
wait on a file lock. A folder counts only once its `.complete` marker is
written, last, so an interrupted build is redone rather than read. Built
artifacts are made read-only, so that a test (not running as root, which
ignores the bits) that would change a shared file fails instead of changing
what every other test reads; tests copy a shared file before changing it.
"""

import fcntl
import hashlib
import importlib.metadata
import os
import pathlib
import shutil
import sys
import time

__all__ = ["PROJECT", "build_once", "code_key", "files_key", "remove_stale", "root"]

PROJECT = pathlib.Path(__file__).resolve().parents[1]
# The packages whose behaviour an artifact depends on.
_PACKAGES = ("tensorflow", "tf-keras", "ai-edge-litert", "tflite-micro", "numpy")
# Folders of other keys unused this long are removed.
_STALE_SECONDS = 3 * 24 * 3600


def root():
    """`$XDG_CACHE_HOME/tfee`, else `~/.cache/tfee`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return pathlib.Path(base) / "tfee"


def files_key(*files):
    """A short hash of `files` (their paths in the project and bytes)."""
    digest = hashlib.sha256()
    for path in (pathlib.Path(f).resolve() for f in files):
        digest.update(str(path.relative_to(PROJECT)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def code_key(*files):
    """A short hash of tfee's sources, of `files` (the code that builds the
    artifact) and of the versions of Python and of `_PACKAGES`: a change to
    any of them builds anew."""
    digest = hashlib.sha256()
    package = PROJECT / "tfee"
    # rules.h: the C form of the rules, which generated firmware includes.
    sources = sorted(package.rglob("*.py")) + sorted(package.rglob("*.h"))
    sources += list(files)
    digest.update(files_key(*sources).encode() + b"\0")
    digest.update(sys.version.encode() + b"\0")
    for package in _PACKAGES:
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            version = "-"
        digest.update(f"{package}=={version}\0".encode())
    return digest.hexdigest()[:16]


def build_once(folder, build, read_only=True):
    """`folder`, filled by `build(folder)` unless a complete one is there.

    Args:
      folder: a pathlib.Path; its parent holds the lock file.
      build: writes the artifact's files into the (empty) folder it is given.
        It runs in the final folder, so paths it records stay valid.
      read_only: make the built files read-only.

    Returns:
      `folder`.
    """
    folder = pathlib.Path(folder)
    marker = folder / ".complete"
    if marker.exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():  # Another process built it while we waited.
            return folder
        _remove(folder)  # Interrupted, or damaged by hand: build again.
        folder.mkdir()
        build(folder)
        if read_only:
            for path in folder.rglob("*"):
                if path.is_file():
                    path.chmod(path.stat().st_mode & ~0o222)
        marker.write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))
    return folder


def remove_stale(parent, keep):
    """Removes the folders in `parent` other than `keep` that were not used
    for `_STALE_SECONDS` (artifacts of code that has changed since)."""
    parent = pathlib.Path(parent)
    if not parent.is_dir():
        return
    cutoff = time.time() - _STALE_SECONDS
    for path in parent.iterdir():
        if path.is_dir() and path.name != keep and path.stat().st_mtime < cutoff:
            _remove(path)


def _remove(path):
    # Read-only files in a writable folder can be removed.
    if path.exists():
        shutil.rmtree(path)
