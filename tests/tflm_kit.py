"""The TensorFlow Lite Micro source kit beside the project, built once per kit.

`../shared/tflm` (read-only) holds TFLM's sources and a Makefile that builds
`libtflm.a`: 202 translation units, about ten CPU-minutes. The firmware tests
need far less, so by default the kit's Makefile builds its core without its
test utilities (`CORE_EXCLUDED`) and only the kernels of the ops that
`tfee.export.micro` can emit (`FIRMWARE_KERNELS`): 80 translation units.
Nearly all of each one's compile time is parsing the same headers
(flatbuffers' schema above all), so they are parsed once into a precompiled
header that every unit includes first; the core is then built at -O2 like the
kernels (instead of -Os), since GCC uses a precompiled header only under the
optimization level it was made with.

The library goes into a cache keyed by a hash of the kit, of the compiler and
of the build's settings (`$XDG_CACHE_HOME/tfee/tflm-<hash>/lib`, else
`~/.cache/...`) and is reused by every later run; `tests/disk_cache.py`
makes concurrent builders (pytest-xdist workers, other test runs) wait on a
file lock and never reads a library whose build was interrupted.
"""

import hashlib
import pathlib
import shutil
import subprocess

from tests import disk_cache

__all__ = [
    "CORE_EXCLUDED",
    "FIRMWARE_KERNELS",
    "KIT",
    "compile_flags",
    "kit_hash",
    "library_dir",
]

KIT = pathlib.Path(__file__).resolve().parents[2] / "shared" / "tflm"

_MICRO = "tensorflow/lite/micro/"
# The kit's core sources (its TFLM_CORE_SRCS) that only TFLM's own tests use:
# fakes, mocks, recording allocators, model builders.
CORE_EXCLUDED = tuple(
    _MICRO + name
    for name in (
        "arena_allocator/recording_single_arena_buffer_allocator.cc",
        "fake_micro_context.cc",
        "mock_micro_graph.cc",
        "recording_micro_allocator.cc",
        "test_helper_custom_ops.cc",
        "test_helpers.cc",
    )
)
# The kit's kernel sources (its TFLM_KERNEL_SRCS) that define the Register_*
# functions behind the resolver entries of tfee.export.micro's stages (every
# op in tfee.export.MICRO_OPS, and DECODE for compress="lut"), with the files
# those kernels call into. tests/export/test_firmware.py checks the list
# against MICRO_OPS and the kit's micro_mutable_op_resolver.h.
FIRMWARE_KERNELS = tuple(
    _MICRO + "kernels/" + name
    for name in (
        "activations.cc",  # RELU, RELU6
        "activations_common.cc",
        "add.cc",
        "add_common.cc",
        "concatenation.cc",
        "conv.cc",
        "conv_common.cc",
        "decode.cc",  # DECODE and the decoders it dispatches to
        "decode_state.cc",
        "decode_state_huffman.cc",
        "decode_state_lut.cc",
        "decode_state_prune.cc",
        "decompress.cc",
        "decompress_common.cc",
        "depthwise_conv.cc",
        "depthwise_conv_common.cc",
        "dequantize.cc",
        "dequantize_common.cc",
        "fully_connected.cc",
        "fully_connected_common.cc",
        "hard_swish.cc",
        "hard_swish_common.cc",
        "kernel_util.cc",
        "logistic.cc",
        "logistic_common.cc",
        "mul.cc",
        "mul_common.cc",
        "pad.cc",
        "pad_common.cc",
        "pooling.cc",  # AVERAGE_POOL_2D, MAX_POOL_2D
        "pooling_common.cc",
        "quantize.cc",
        "quantize_common.cc",
        "reduce.cc",  # MEAN, REDUCE_MAX
        "reduce_common.cc",
        "reshape.cc",
        "reshape_common.cc",
        "softmax.cc",
        "softmax_common.cc",
        "sub.cc",
        "sub_common.cc",
        "tanh.cc",
    )
)


# The headers nearly every unit includes, parsed once (see above), and the
# optimization level of every unit and of the precompiled header.
_PRECOMPILED = (_MICRO + "kernels/kernel_util.h", _MICRO + "micro_context.h")
_OPTIMIZATION = "-O2"


def compile_flags(kit=KIT):
    """The kit's `tflm-config --cflags`, its include folders given as
    -isystem: the kit's headers are not ours to lint with -Werror."""
    import pytest

    config = kit / "tflm-config"
    if not config.exists():
        pytest.skip(f"no TensorFlow Lite Micro source kit at {kit}")
    flags = subprocess.run(
        [str(config), "--cflags"], check=True, capture_output=True, text=True
    ).stdout.split()
    return [f.replace("-I", "-isystem", 1) if f.startswith("-I") else f for f in flags]


def kit_hash(kit=KIT, compiler="g++", settings=()):
    """A short hash of every file in the kit (path and bytes), of the
    compiler's version line and of the build's `settings` (strings): a
    different kit, compiler or build gets a new library."""
    digest = hashlib.sha256()
    for path in sorted(p for p in kit.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(kit)).encode() + b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    version = subprocess.run(
        [compiler, "--version"], check=True, capture_output=True, text=True
    ).stdout.splitlines()[0]
    digest.update(version.encode() + b"\0")
    for setting in settings:
        digest.update(setting.encode() + b"\0")
    return digest.hexdigest()[:16]


def library_dir(kit=KIT, jobs=2, kernels=FIRMWARE_KERNELS):
    """The folder holding the kit's `libtflm.a`, built there first if missing.

    Args:
      kit: the source kit.
      jobs: parallel compiler jobs.
      kernels: the kernel sources to build, as paths inside the kit, with the
        core less `CORE_EXCLUDED` and a precompiled header; None builds the
        kit's whole library as its Makefile does by default.

    Returns:
      A pathlib.Path to pass as the kit's TFLM_LIB_DIR.

    Raises:
      RuntimeError: the kit's build failed (with the end of its output).
    """
    # Variables given on make's command line override the Makefile's.
    settings, described = {}, []
    if kernels is not None:
        core = [
            path
            for path in _make_variable(kit, "TFLM_CORE_SRCS")
            if path not in CORE_EXCLUDED
        ]
        settings = {
            "TFLM_CORE_SRCS": " ".join(core),
            "TFLM_KERNEL_SRCS": " ".join(kernels),
            "CORE_OPT": _OPTIMIZATION,
            "KERNEL_OPT": _OPTIMIZATION,
        }
        described = [f"{k}={v}" for k, v in settings.items()]
        described.append(_precompiled_text())
    final = disk_cache.root() / f"tflm-{kit_hash(kit, settings=described)}"

    def build(folder):
        work = folder / "build"
        if kernels is not None:
            header = _precompile(kit, work / "precompiled" / "tflm.h")
            # Included first by every unit, so GCC reads header.gch instead.
            settings["CXX"] = f"g++ -include {header} -Winvalid-pch"
        _run(
            ["make", "-C", str(kit), f"-j{jobs}"]
            + [f"BUILD_DIR={work}", f"TFLM_LIB_DIR={folder / 'lib'}"]
            + [f"{k}={v}" for k, v in settings.items()]
        )
        # Only the library is kept; its objects are not needed again.
        shutil.rmtree(work)

    return disk_cache.build_once(final, build, read_only=False) / "lib"


def _make_variable(kit, name):
    """The words of a variable of the kit's Makefile."""
    return _run(
        ["make", "-s", "--no-print-directory", "-C", str(kit)]
        + ["--eval", f"tfee-print: ; @echo $({name})", "tfee-print"]
    ).split()


def _precompiled_text():
    return "".join(f'#include "{path}"\n' for path in _PRECOMPILED)


def _precompile(kit, header):
    """Writes `header` and its `.gch`, made with the library's flags."""
    header.parent.mkdir(parents=True)
    header.write_text(_precompiled_text())
    flags = _make_variable(kit, "LIB_CXXFLAGS")
    _run(
        ["g++", *flags, _OPTIMIZATION, "-x", "c++-header", str(header)]
        + ["-o", f"{header}.gch"]
    )
    return header


def _run(command):
    """Runs a build command and returns its output; RuntimeError if it fails."""
    done = subprocess.run(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"building TFLM failed: {' '.join(command)}\n{done.stdout[-4000:]}"
        )
    return done.stdout
