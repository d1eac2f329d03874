"""Generated firmware on real TensorFlow Lite Micro: MicroCascade's exits and classes.

`tfee.export.micro`'s cascade and `examples/firmware/main.cc` are built with
that folder's Makefile (and CMakeLists.txt, where cmake is installed) against
the `libtflm.a` of the TFLM source kit at ../shared/tflm (built once into a
cache, see tests/tflm_kit.py), run on x86 on the tiny images, and must leave
every image at the exit and with the class `tfee.runtime.MicroCascade` gives
in the `tflite-micro` interpreter, LUT-compressed stages (DECODE) included.
The library holds the kit's core and only the kernels of the ops a micro
export can use (`tflm_kit.FIRMWARE_KERNELS`), which a test checks here.
"""

import os
import pathlib
import re
import shutil
import subprocess

import numpy as np
import pytest

import tfee
import tfee.compress
import tfee.export
from tests import tflm_kit
from tests import tiny_files
from tfee import keras

# The package re-exports the function `micro`, which hides the module.

FIRMWARE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "firmware"
FLAGS = "-O1 -Wall -Wextra -Werror"
DECODE = "CUSTOM:TFLM_DECODE"


# Builds on the TFLM library (about a minute of both cores on a fresh
# machine): run by `python3 dev.py test-long` and CI, not the README's command.
_LINKS_TFLM = pytest.mark.long


@pytest.fixture(scope="session")
def tflm_lib_dir():
    if not tflm_kit.KIT.is_dir():
        pytest.skip(f"no TensorFlow Lite Micro source kit at {tflm_kit.KIT}")
    return tflm_kit.library_dir()


@pytest.fixture(scope="session")
def max_softmax_export(micro_export):
    """(export, policy): the shared tiny export (tests/tiny_files.py)."""
    return micro_export, tfee.ThresholdPolicy([0.5])


@pytest.fixture(scope="session")
def learned_export(network, tiny_images, micro_export, tmp_path_factory):
    """(export, policy): the learned rule, at a threshold that half the images
    reach at exit 1 (whose stage model is the max-softmax export's)."""
    cascade = tfee.runtime.MicroCascade(
        micro_export.manifest_path, tfee.ThresholdPolicy([0.5])
    )
    confidence = cascade.exit_outputs(tiny_images)[1][0]
    policy = tfee.ThresholdPolicy([float(np.median(confidence))], rule="learned")
    directory = str(tmp_path_factory.mktemp("micro_learned"))
    export = tfee.export.micro(
        network, directory, tiny_images, name="tiny_learned", policy=policy
    )
    return export, policy


@pytest.fixture(scope="session")
def lut_export(tiny_images, tmp_path_factory):
    """(export, policy): a tiny network wide enough (16 and 32 channels) for
    look-up-table indices to pay, trained a little, every kernel in 4
    clusters, exported with compress="lut" (its stages run DECODE), at a
    max-softmax threshold that about half the images reach at exit 1."""
    keras.utils.set_random_seed(0)
    backbone = tfee.backbones.small_cnn(
        num_classes=3, input_shape=tiny_files.INPUT_SHAPE, widths=(16, 32)
    )
    network = tfee.attach_exits(
        backbone, ["block1_out"], head="sdn", with_confidence=True
    )
    labels = tiny_files.tiny_data()[1]
    network.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss={
            name: keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            for name in ("exit_1", "exit_2")
        },
    )
    network.fit(tiny_images, {"exit_1": labels, "exit_2": labels}, epochs=10, verbose=0)
    clustered = tfee.compress.strip(
        tfee.compress.cluster_weights(network, 4, init="linear")
    )
    outputs = tfee.collect_outputs(clustered, (tiny_images, labels))
    confidence = tfee.rules.scores(outputs.logits[0], "max_softmax")
    policy = tfee.ThresholdPolicy([float(np.median(confidence))])
    directory = str(tmp_path_factory.mktemp("micro_lut"))
    export = tfee.export.micro(
        clustered,
        directory,
        tiny_images,
        name="tiny_lut",
        policy=policy,
        compress="lut",
    )
    assert any(DECODE in stage.ops and stage.lut_tensors for stage in export.stages)
    return export, policy


@pytest.fixture(scope="session")
def cascading_export(
    cascading_network, cascading_micro_export, tiny_images, tmp_path_factory
):
    """(export, policy): ZTW cascading heads (stages 2 and 3 also read the
    previous exit's int8 logits), four exits, at thresholds that send images
    to each of them."""
    logits = tfee.runtime.MicroCascade(
        cascading_micro_export.manifest_path, tfee.ThresholdPolicy([None] * 3)
    ).exit_outputs(tiny_images)[0]
    policy = tfee.ThresholdPolicy(
        [float(np.median(tfee.rules.scores(x, "max_softmax"))) for x in logits[:-1]]
    )
    # The policy goes into the firmware: export again, reusing the conversions.
    directory = str(tmp_path_factory.mktemp("micro_cascading_policy"))
    with pytest.MonkeyPatch.context() as patch:
        tiny_files.reuse_conversions(cascading_micro_export, patch)
        export = tfee.export.micro(
            cascading_network,
            directory,
            tiny_images,
            name="tiny_cascading",
            policy=policy,
        )
    return export, policy


@pytest.fixture(params=["max_softmax", "learned", "lut", "cascading"])
def export_and_policy(request):
    """Each export whose policy sends images to both exits, with that policy."""
    return request.getfixturevalue(f"{request.param}_export")


@pytest.fixture(scope="session")
def build(tflm_lib_dir, tmp_path_factory):
    """Builds main.cc with an export through examples/firmware/Makefile, once
    per export; returns the program's path."""
    programs = {}

    def make(export):
        if export.directory not in programs:
            build_dir = tmp_path_factory.mktemp("firmware_build")
            _call(
                ["make", "-C", str(FIRMWARE), "-j2"]
                + [f"MODEL_DIR={export.directory}", f"NAME={_name(export)}"]
                + [f"TFLM_KIT={tflm_kit.KIT}", f"TFLM_LIB_DIR={tflm_lib_dir}"]
                + [f"BUILD_DIR={build_dir}", f"CXXFLAGS={FLAGS}"]
            )
            programs[export.directory] = build_dir / f"{_name(export)}_main"
        return programs[export.directory]

    return make


def _call(args, data=None):
    """Runs a command; fails the test with its output if it fails."""
    done = subprocess.run(args, input=data, capture_output=True)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode(errors="replace")
        pytest.fail(f"{' '.join(map(str, args))} failed:\n{output[-4000:]}")
    return done


def _name(export):
    """The `name` the export was given."""
    return os.path.basename(export.header_path)[: -len("_cascade.h")]


def _int8(export, images):
    """The images as the cascade's int8 input, quantized as MicroCascade does."""
    details = {"dtype": np.int8, "quantization": export.stages[0].input_quantization}
    return tfee.runtime.quantize_input(images, details)


def _run(program, data, *args):
    """The program's (classes, exits) for the images in `data` (bytes)."""
    done = _call([str(program), *args], data)
    answers = np.array(
        [line.split() for line in done.stdout.decode().splitlines()], dtype=int
    ).reshape(-1, 2)
    return answers[:, 0], answers[:, 1]


def _micro_cascade(export, policy, images):
    """MicroCascade's CascadeResult: the answers the firmware must give."""
    result = tfee.runtime.MicroCascade(export.manifest_path, policy).predict(images)
    # Every exit answers some images, so every branch of the loop is compared.
    assert set(result.exit_indices) == set(range(len(export.stages)))
    return result


@_LINKS_TFLM
def test_the_firmware_leaves_at_micro_cascades_exits_with_its_classes(
    export_and_policy, build, tiny_images
):
    export, policy = export_and_policy
    expected = _micro_cascade(export, policy, tiny_images)
    classes, exits = _run(build(export), _int8(export, tiny_images).tobytes())
    np.testing.assert_array_equal(exits, expected.exit_indices)
    np.testing.assert_array_equal(classes, expected.predictions)


def test_the_library_has_the_kernel_of_every_op_a_micro_export_can_use():
    if not tflm_kit.KIT.is_dir():
        pytest.skip(f"no TensorFlow Lite Micro source kit at {tflm_kit.KIT}")
    sources = "\n".join(
        (tflm_kit.KIT / path).read_text() for path in tflm_kit.FIRMWARE_KERNELS
    )
    # MicroMutableOpResolver's Add<Op>() registers Register_<OP>() (DECODE:
    # Register_DECODE()), so that function must be defined in the library.
    ops = tfee.export.MICRO_OPS | {DECODE}
    missing = [
        op
        for op in sorted(ops)
        if not re.search(
            rf"TFLMRegistration\s+Register_{op.split('TFLM_')[-1]}\(\)\s*\{{",
            sources,
        )
    ]
    assert not missing, f"add the kernels of {missing} to tflm_kit.FIRMWARE_KERNELS"


@_LINKS_TFLM
def test_the_example_main_quantizes_float_images_as_micro_cascade_does(
    max_softmax_export, build, tiny_images
):
    export, policy = max_softmax_export
    expected = _micro_cascade(export, policy, tiny_images)
    data = np.asarray(tiny_images, dtype=np.float32).tobytes()
    classes, exits = _run(build(export), data, "--float")
    np.testing.assert_array_equal(exits, expected.exit_indices)
    np.testing.assert_array_equal(classes, expected.predictions)


@_LINKS_TFLM
def test_the_example_main_fails_on_a_truncated_image(
    max_softmax_export, build, tiny_images
):
    export, _ = max_softmax_export
    data = _int8(export, tiny_images[:2]).tobytes()[:-1]
    done = subprocess.run([str(build(export))], input=data, capture_output=True)
    assert done.returncode == 1
    assert done.stdout.decode().count("\n") == 1
    assert b"image 1: truncated" in done.stderr


@_LINKS_TFLM
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_the_example_main_refuses_a_non_finite_float_image(
    max_softmax_export, build, tiny_images, value
):
    # Issue 29: nearbyintf(NaN) clamped once passed for -128 and answered;
    # int8 holds no NaN, so the generated quantizer refuses the image, as
    # MicroCascade and the int8 LiteRT cascade do.
    export, _ = max_softmax_export
    images = np.array(tiny_images[:3], dtype=np.float32)
    images[1, 2, 3, 0] = value
    done = subprocess.run(
        [str(build(export)), "--float"], input=images.tobytes(), capture_output=True
    )
    assert done.returncode == 1
    assert done.stdout.decode().count("\n") == 1
    assert b"image 1: holds NaN or infinity" in done.stderr
    with pytest.raises(ValueError, match="no NaN or infinity"):
        tfee.runtime.MicroCascade(
            export.manifest_path, tfee.ThresholdPolicy([0.5])
        ).predict(images)


@_LINKS_TFLM
@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_the_cmake_snippet_builds_the_same_firmware(
    max_softmax_export, tflm_lib_dir, tiny_images, tmp_path
):
    export, policy = max_softmax_export
    build_dir = tmp_path / "build"
    _call(
        ["cmake", "-S", str(FIRMWARE), "-B", str(build_dir)]
        + [f"-DTFEE_MODEL_DIR={export.directory}", f"-DTFEE_MODEL_NAME={_name(export)}"]
        + [f"-DTFLM_KIT={tflm_kit.KIT}", f"-DTFLM_LIB_DIR={tflm_lib_dir}"]
        + ["-DCMAKE_CXX_FLAGS=-O1"]
    )
    _call(["cmake", "--build", str(build_dir), "-j2"])
    expected = _micro_cascade(export, policy, tiny_images)
    program = build_dir / f"{_name(export)}_main"
    classes, exits = _run(program, _int8(export, tiny_images).tobytes())
    np.testing.assert_array_equal(exits, expected.exit_indices)
    np.testing.assert_array_equal(classes, expected.predictions)
