"""The project's two commands, needing nothing but Python 3 on the machine.

    python3 dev.py demo   # set up .venv, install tfee, run the end-to-end demo
    python3 dev.py test   # set up .venv, install tfee with test tools, lint, pytest
    python3 dev.py test-long  # the tests marked `long` (CI runs them after `test`)
    python3 dev.py bazel [TARGETS]  # the same tests through Bazel (needs bazel-bootstrap)

The virtual environment is (re)installed only when setup.py or
constraints.txt changed since the last install.
"""

import hashlib
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
STAMP = VENV / ".tfee-install-stamp"
LINTED = ["tfee", "tests", "examples", "benchmarks", "dev.py", "setup.py"]


def run(*args):
    print("+", " ".join(str(a) for a in args), flush=True)
    subprocess.run([str(a) for a in args], cwd=ROOT, check=True, env=_env())


def _env():
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def ensure_venv():
    """Creates .venv and installs tfee with every extra, pinned by constraints.txt."""
    wanted = hashlib.sha256(
        (ROOT / "setup.py").read_bytes() + (ROOT / "constraints.txt").read_bytes()
    ).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted and PYTHON.exists():
        return
    started = time.monotonic()
    if not PYTHON.exists():
        run(sys.executable, "-m", "venv", VENV)
    run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    # --no-compile: skip byte-compiling every installed module (TensorFlow
    # has thousands); Python compiles the ones it imports on first use. A
    # clean install took 66 s with it, 121 s without (2 cores, pip cache warm).
    run(
        PYTHON, "-m", "pip", "install", "--quiet", "--no-compile",
        "-c", "constraints.txt", "-e", ".[test,demo]",
    )  # fmt: skip
    STAMP.write_text(wanted)
    print(f"installed in {time.monotonic() - started:.0f} s", flush=True)


def demo():
    ensure_venv()
    run(PYTHON, "examples/demo.py")


def test():
    ensure_venv()
    run(PYTHON, "-m", "ruff", "check", *LINTED)
    run(PYTHON, "-m", "black", "--check", "--quiet", *LINTED)
    run(PYTHON, "-m", "isort", "--check-only", "--quiet", *LINTED)
    # The tests marked `long` (multi-process training, the benchmarks' quick
    # runs) keep this answer under ten minutes on 2 cores; `test-long` runs
    # them, and CI runs both (.ci/run).
    run(PYTHON, "-m", "pytest", "-q", "-n", "2", "-m", "not long", "--durations=15")


def test_long():
    ensure_venv()
    run(PYTHON, "-m", "pytest", "-q", "-n", "2", "-m", "long", "--durations=15")


def bazel(targets=("//...",)):
    """Runs the py_test targets of BUILD with Bazel, offline.

    Debian's bazel-bootstrap (4.2.3) would download rules_cc, rules_java and
    the coverage tools; local stand-ins in third_party/bazel replace them.
    The tests run on this project's .venv interpreter, which WORKSPACE
    registers as the Python toolchain (third_party/bazel/venv_python.bzl).
    """
    ensure_venv()
    stubs = ROOT / "third_party" / "bazel"
    run(
        "bazel", "test",
        "--test_env=HOME=/tmp",
        f"--override_repository=rules_cc={stubs / 'rules_cc'}",
        f"--override_repository=rules_java={stubs / 'rules_java'}",
        f"--override_repository=remote_coverage_tools={stubs / 'remote_coverage_tools'}",
        "--override_repository=platforms=/usr/share/bazel/platforms",
        *targets,
    )  # fmt: skip


COMMANDS = {"demo": demo, "test": test, "test-long": test_long, "bazel": bazel}

if __name__ == "__main__":
    if (
        len(sys.argv) < 2
        or sys.argv[1] not in COMMANDS
        or (len(sys.argv) > 2 and sys.argv[1] != "bazel")
    ):
        sys.exit(f"usage: python3 dev.py {{{'|'.join(COMMANDS)}}} [bazel targets]")
    try:
        COMMANDS[sys.argv[1]](*([sys.argv[2:]] if len(sys.argv) > 2 else []))
    except subprocess.CalledProcessError as error:
        sys.exit(error.returncode)
