"""The TensorFlow Lite Micro source kit beside the project, built once per kit.

`../shared/tflm` (read-only) holds TFLM's sources and a Makefile that builds
`libtflm.a` in about ten CPU-minutes. Tests link generated firmware against
that library, so it is built once into a cache keyed by a hash of the kit and
of the compiler (`$XDG_CACHE_HOME/tfee/tflm-<hash>/lib`, else `~/.cache/...`)
and reused by every later run. Concurrent builders (pytest-xdist workers,
other test runs) wait on a file lock; the library is built in a temporary
folder renamed into place, so an interrupted build never leaves a library
that looks complete.
"""

import fcntl
import hashlib
import os
import pathlib
import shutil
import subprocess
import tempfile

__all__ = ["KIT", "kit_hash", "library_dir"]

KIT = pathlib.Path(__file__).resolve().parents[2] / "shared" / "tflm"


def _cache_root():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return pathlib.Path(base) / "tfee"


def kit_hash(kit=KIT, compiler="g++"):
    """A short hash of every file in the kit (path and bytes) and of the
    compiler's version line: a different kit or compiler gets a new library."""
    digest = hashlib.sha256()
    for path in sorted(p for p in kit.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(kit)).encode() + b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    version = subprocess.run(
        [compiler, "--version"], check=True, capture_output=True, text=True
    ).stdout.splitlines()[0]
    digest.update(version.encode())
    return digest.hexdigest()[:16]


def library_dir(kit=KIT, jobs=2):
    """The folder holding the kit's `libtflm.a`, built there first if missing.

    Returns:
      A pathlib.Path to pass as the kit's TFLM_LIB_DIR.

    Raises:
      RuntimeError: the kit's build failed (with the end of its output).
    """
    root = _cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"tflm-{kit_hash(kit)}"
    library = final / "lib" / "libtflm.a"
    if library.is_file():
        return library.parent
    with open(root / f"{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if library.is_file():  # Another process built it while we waited.
            return library.parent
        # A cache folder without its library was damaged by hand: rebuild it.
        shutil.rmtree(final, ignore_errors=True)
        staging = pathlib.Path(tempfile.mkdtemp(prefix=f"{final.name}.", dir=root))
        try:
            command = ["make", "-C", str(kit), f"-j{jobs}"] + [
                f"BUILD_DIR={staging / 'build'}",
                f"TFLM_LIB_DIR={staging / 'lib'}",
            ]
            done = subprocess.run(
                command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"building TFLM failed: {' '.join(command)}\n{done.stdout[-4000:]}"
                )
            # Only the library is kept; its objects are not needed again.
            shutil.rmtree(staging / "build")
            os.rename(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return library.parent
