"""tfee.export.micro: dense int8 stage models, C arrays, resolvers, cascade loop."""

import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

import tfee
import tfee.export
from tests import tflm_kit
from tests.tiny_files import reuse_conversions
from tfee import _flatbuffer
from tfee import keras
from tfee import rules
from tfee.export._micro import convert as convert_lib
from tfee.export._micro import cpp
from tfee.export._micro import lut


def test_each_stage_gets_a_model_and_an_aligned_c_array_of_its_bytes(micro_export):
    assert len(micro_export.stages) == 2
    for stage in micro_export.stages:
        with open(stage.model_path, "rb") as f:
            data = f.read()
        assert stage.bytes == len(data)
        with open(stage.source_path) as f:
            source = f.read()
        assert f"alignas(16) const unsigned char {stage.array_name}[]" in source
        assert f"{stage.array_name}_len = {len(data)};" in source
        values = re.findall(r"0x([0-9a-f]{2})", source)
        assert bytes(int(v, 16) for v in values) == data
        with open(stage.header_path) as f:
            assert f"extern const unsigned int {stage.array_name}_len;" in f.read()


def test_stage_models_are_dense_int8_without_signatures_needed(micro_export):
    for stage in micro_export.stages:
        interpreter = Interpreter(model_path=stage.model_path)
        assert interpreter.get_input_details()[0]["dtype"] == np.int8
        assert all(d["dtype"] == np.int8 for d in interpreter.get_output_details())
        assert interpreter.get_input_details()[0]["shape"][0] == 1


def test_features_leave_stage_one_as_stage_two_reads_them(micro_export):
    first, second = micro_export.stages
    assert first.features_quantization == second.input_quantization
    assert second.features_quantization is None


def test_each_resolver_registers_exactly_the_ops_its_stage_uses(micro_export):
    with open(micro_export.cascade_path) as f:
        cascade = f.read()
    for stage in micro_export.stages:
        with open(stage.model_path, "rb") as f:
            ops = _flatbuffer.op_names(f.read())
        assert list(stage.ops) == ops
        assert f"MicroMutableOpResolver<{len(ops)}>" in cascade
    assert "resolver.AddConv2D();" in cascade
    assert "kThresholds[1] = {0.5}" in cascade
    assert rules.C_SOURCE.strip() in cascade
    assert "int tiny_cascade(const int8_t* image, int* exit_index)" in cascade


def test_each_stage_runs_in_tflite_micro_in_its_arena_and_not_in_much_less(
    micro_export,
):
    from tflite_micro import runtime

    models = []
    for stage in micro_export.stages:
        with open(stage.model_path, "rb") as f:
            models.append(f.read())
    # Every stage in one child process measures what each does alone.
    together = tfee.runtime.measure_arenas(models)
    assert together[-1] == tfee.runtime.measure_arena(models[-1])
    for data, measured, stage in zip(models, together, micro_export.stages):
        assert measured < stage.arena_bytes <= 1.1 * measured + 1024 + 16
        interpreter = runtime.Interpreter.from_bytes(data, arena_size=stage.arena_bytes)
        interpreter.invoke()
        with pytest.raises(RuntimeError, match="allocate"):
            runtime.Interpreter.from_bytes(data, arena_size=measured - 64)
    assert micro_export.arena_bytes == max(s.arena_bytes for s in micro_export.stages)


# Stands in for the real probe: an arena below the model's (faked) need
# always crashes the process, as too small an arena can crash TFLM.
_CRASHING_PROBE = """
import os, sys
alignment, jobs = int(sys.argv[1]), sys.argv[2:]
needs = [int(v) for v in os.environ["TFEE_FAKE_ARENAS"].split(",")]
for i in range(0, len(jobs), 4):
    index, low, high = int(jobs[i]), int(jobs[i + 2]), int(jobs[i + 3])
    while high - low > alignment:
        size = (low + high) // 2 // alignment * alignment
        if size <= low:
            break
        print("try", index, size, flush=True)
        if size < needs[index]:
            os._exit(134)
        print("ok", index, size, flush=True)
        high = size
"""


def test_measure_arenas_resumes_each_model_where_a_crash_stopped_it(
    micro_export, monkeypatch
):
    from tfee.runtime import micro

    models = []
    for stage in micro_export.stages:
        with open(stage.model_path, "rb") as f:
            models.append(f.read())
    needs = [5000, 9001]  # Not multiples of the alignment.
    monkeypatch.setattr(micro, "_PROBE", _CRASHING_PROBE)
    monkeypatch.setenv("TFEE_FAKE_ARENAS", ",".join(map(str, needs)))
    assert tfee.runtime.measure_arenas(models) == [5008, 9008]


def test_measure_arenas_refuses_one_model_or_paths(micro_export):
    path = micro_export.stages[0].model_path
    with open(path, "rb") as f:
        data = f.read()
    with pytest.raises(TypeError, match="list of .tflite model bytes.*one bytes"):
        tfee.runtime.measure_arenas(data)
    with pytest.raises(TypeError, match="measure_arenas: a model must be .*str"):
        tfee.runtime.measure_arenas([path])
    with pytest.raises(TypeError, match="measure_arena: a model must be .*str"):
        tfee.runtime.measure_arena(path)
    assert tfee.runtime.measure_arenas([]) == []


def test_the_cascade_header_declares_the_function_input_and_outputs(micro_export):
    with open(micro_export.header_path) as f:
        header = f.read()
    scale, zero_point = micro_export.stages[0].input_quantization
    assert "int tiny_cascade(const int8_t* image, int* exit_index);" in header
    assert f"constexpr int kInputZeroPoint = {zero_point};" in header
    assert f"constexpr float kInputScale = {float(scale)!r}f;" in header
    assert f"constexpr unsigned int kArenaBytes = {micro_export.arena_bytes};" in header
    assert "stage 1 (g_tiny_stage_1_model) inputs: 0 = image" in header
    assert (
        "stage 1 (g_tiny_stage_1_model) outputs: " in header and "features_1" in header
    )


def test_exporting_fewer_stages_over_an_old_folder_removes_the_stale_ones(
    network, images, micro_export, tmp_path, monkeypatch
):
    stale = [f"tiny_stage_3{suffix}" for suffix in (".tflite", "_model_data.cc")]
    keep = ["tiny_stage_3_notes.txt", "other_stage_3.tflite"]
    for entry in stale + keep:
        (tmp_path / entry).write_text("old")
    reuse_conversions(micro_export, monkeypatch)
    tfee.export.micro(network, str(tmp_path), images[:4], name="tiny")
    names = set(os.listdir(tmp_path))
    assert not names & set(stale)
    assert set(keep) <= names and "tiny_stage_2.tflite" in names


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs a C++ compiler")
def test_the_generated_model_sources_compile(micro_export, tmp_path):
    for stage in micro_export.stages:
        subprocess.run(
            ["g++", "-std=c++17", "-c", stage.source_path, "-o", str(tmp_path / "o.o")],
            check=True,
            cwd=os.path.dirname(stage.source_path),
        )


TFLM_KIT = str(tflm_kit.KIT)
COMPILERS = ["g++", "clang++", "clang++-14"]


@pytest.mark.parametrize("compiler", COMPILERS)
def test_the_generated_cascade_compiles_warning_free_against_real_tflm_headers(
    micro_export, compiler, tmp_path
):
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} is not installed")
    flags = tflm_kit.compile_flags()
    sources = [micro_export.cascade_path] + [s.source_path for s in micro_export.stages]
    for source in sources:
        subprocess.run(
            [compiler, *flags, "-Wall", "-Wextra", "-Werror"]
            + [f"-I{micro_export.directory}", "-c", source]
            + ["-o", str(tmp_path / "out.o")],
            check=True,
        )


def test_a_learned_decision_and_ensemble_cascade_compiles_against_real_tflm(
    network, images, micro_export, tmp_path, monkeypatch
):
    # The rules' C form (tfee_decision_score included) compiles with every
    # compiler in the test above; this adds the decision policy's own lines.
    compiler = next((c for c in COMPILERS[::-1] if shutil.which(c)), None)
    if compiler is None:
        pytest.skip("no C++ compiler is installed")
    reuse_conversions(micro_export, monkeypatch)
    count = len(micro_export.stages) - 1
    exits = count + 1
    ensemble = tfee.policy.ExitEnsemble(
        np.tril(np.ones((exits, exits))), [[0.0] * 3] * exits
    )
    policy = tfee.DecisionPolicy(
        [0.7] * count,
        np.ones((count, len(tfee.rules.DECISION_SIGNALS))),
        [-3.0] * count,
        ensemble=ensemble,
    )
    export = tfee.export.micro(
        network, str(tmp_path / "fw"), images[:4], calibration_samples=4, policy=policy
    )
    with open(export.cascade_path) as f:
        source = f.read()
    assert "tfee_decision_score(" in source and "tfee_ensemble(" in source
    subprocess.run(
        [compiler, *tflm_kit.compile_flags(), "-Wall", "-Wextra", "-Werror"]
        + [f"-I{export.directory}", "-c", export.cascade_path]
        + ["-o", str(tmp_path / "out.o")],
        check=True,
    )


def test_layers_micro_cannot_run_raise_before_conversion(images, tmp_path, monkeypatch):
    monkeypatch.setattr(convert_lib, "convert_all", None)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="b1")(inputs)
    x = keras.layers.Conv2D(4, 3, activation="gelu", name="b2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    backbone = keras.Model(inputs, keras.layers.Dense(3)(x))
    network = tfee.attach_exits(backbone, ["b1"], head="linear")
    with pytest.raises(
        ValueError, match=r"cannot run these layers.*b2 \(activation gelu\)"
    ):
        tfee.export.micro(network, str(tmp_path), images)
    assert os.listdir(tmp_path) == []


def test_micro_cascade_runs_the_policy_its_manifest_holds(
    micro_export, cascading_micro_export, images
):
    # As Cascade(path) runs the policy embedded in a .tflite.
    embedded = tfee.runtime.MicroCascade(micro_export.manifest_path)
    assert embedded.policy.to_dict() == tfee.ThresholdPolicy([0.5]).to_dict()
    given = tfee.runtime.MicroCascade(
        micro_export.manifest_path, tfee.ThresholdPolicy([0.5])
    )
    np.testing.assert_array_equal(
        embedded.predict(images).exit_indices, given.predict(images).exit_indices
    )
    with pytest.raises(ValueError, match="holds no policy"):
        tfee.runtime.MicroCascade(cascading_micro_export.manifest_path)


def test_bad_name_and_policy_are_rejected(network, images, tmp_path):
    with pytest.raises(ValueError, match="C identifier"):
        tfee.export.micro(network, str(tmp_path), images, name="my-model")
    with pytest.raises(
        TypeError, match="ThresholdPolicy, .*DecisionPolicy .*Received: policy=object"
    ):
        tfee.export.micro(network, str(tmp_path), images, policy=object())
    with pytest.raises(ValueError, match="policy is for 3 exits"):
        tfee.export.micro(
            network, str(tmp_path), images, policy=tfee.ThresholdPolicy([0.5, 0.5])
        )
    a_file = tmp_path / "firmware"
    a_file.write_text("not a folder")
    with pytest.raises(ValueError, match="`directory` is an existing file"):
        tfee.export.micro(network, str(a_file), images)
    assert a_file.read_text() == "not a folder"


def test_a_failing_export_writes_nothing(
    network, images, micro_export, tmp_path, monkeypatch
):
    def broken(*args):
        raise RuntimeError("generator broke")

    # Reuse the shared conversions; fail after every stage has converted.
    reuse_conversions(micro_export, monkeypatch)
    monkeypatch.setattr(cpp, "cascade_source", broken)
    with pytest.raises(RuntimeError, match="generator broke"):
        tfee.export.micro(network, str(tmp_path), images[:4], calibration_samples=4)
    assert os.listdir(tmp_path) == []


def test_arenas_are_measured_without_crashing_on_models_tflm_crashes_for(tmp_path):
    # TFLM's Python interpreter segfaulted (instead of failing) on an arena
    # of 3,584 bytes for stage 2 of this network, which once killed the
    # export; probes now run in a child process.
    keras.utils.set_random_seed(0)
    backbone = tfee.backbones.small_cnn(num_classes=10, input_shape=(8, 8, 1))
    network = tfee.attach_exits(
        backbone, ["block1_out"], head="sdn", with_confidence=True
    )
    images = np.random.default_rng(0).random((32, 8, 8, 1), dtype=np.float32)
    export = tfee.export.micro(network, str(tmp_path), images)
    from tflite_micro import runtime

    for stage in export.stages:
        interpreter = runtime.Interpreter.from_file(
            stage.model_path, arena_size=stage.arena_bytes
        )
        interpreter.invoke()


def test_tflite_micro_computes_what_litert_computes_on_the_same_stage_files(
    micro_export, images
):
    """The stage chain run in TFLite Micro and in LiteRT, fed the same int8
    input: every output within one int8 step (kernels may round differently)."""
    every_stage = tfee.ThresholdPolicy([None] * (len(micro_export.stages) - 1))
    micro_outputs = tfee.runtime.MicroCascade(
        micro_export.manifest_path, every_stage
    ).raw_outputs(images)
    first = Interpreter(model_path=micro_export.stages[0].model_path)
    values = tfee.runtime.quantize_input(images, first.get_input_details()[0])
    for k, (stage, recorded) in enumerate(zip(micro_export.stages, micro_outputs)):
        interpreter = Interpreter(model_path=stage.model_path)
        interpreter.resize_tensor_input(0, (1,) + values.shape[1:])
        interpreter.allocate_tensors()
        outputs = [[] for _ in interpreter.get_output_details()]
        for row in values:
            interpreter.set_tensor(
                interpreter.get_input_details()[0]["index"], row[None]
            )
            interpreter.invoke()
            for index, details in enumerate(interpreter.get_output_details()):
                outputs[index].append(interpreter.get_tensor(details["index"]))
        litert = [np.concatenate(o) for o in outputs]
        assert len(litert) == len(recorded)
        for got, (expected, _) in zip(litert, recorded):
            difference = np.abs(got.astype(int) - np.asarray(expected).astype(int))
            assert difference.max() <= 1, stage.index
        # The next stage reads this stage's features as TFLite Micro wrote them.
        if k + 1 < len(micro_export.stages):
            following = Interpreter(model_path=micro_export.stages[k + 1].model_path)
            shape = tuple(following.get_input_details()[0]["shape"][1:])
            values = next(v for v, _ in recorded if np.shape(v)[1:] == shape)


def test_every_op_micro_accepts_maps_to_a_resolver_method_tflm_has():
    """RELU6 and HARD_SWISH once generated `resolver.Relu6()`, which does not
    exist: firmware using them would not compile."""
    header = os.path.join(
        TFLM_KIT, "tensorflow", "lite", "micro", "micro_mutable_op_resolver.h"
    )
    if not os.path.exists(header):
        pytest.skip("no TensorFlow Lite Micro source kit at ../shared/tflm")
    with open(header) as f:
        declared = set(re.findall(r"TfLiteStatus (Add\w+)\(", f.read()))
    for op in sorted(tfee.export.MICRO_OPS) + [lut.DECODE_OP]:
        assert cpp.resolver_method(op) in declared, op


def test_stage_files_are_stripped_of_names_and_still_compute_the_same(
    network, images, micro_export, tmp_path, monkeypatch
):
    from tflite_micro import runtime

    converted = reuse_conversions(micro_export, monkeypatch)
    named = tfee.export.micro(
        network, str(tmp_path), images[:4], name="tiny", strip_strings=False
    )
    for stripped, kept in zip(micro_export.stages, named.stages):
        with open(kept.model_path, "rb") as f:
            assert f.read() == converted[kept.index]
        assert stripped.bytes < 0.9 * kept.bytes
        with open(stripped.model_path, "rb") as f:
            data = f.read()
        assert b"stage_" not in data and b"serving_default" not in data
        # The export checked it in TFLite Micro; so does this test.
        outputs = []
        for path in (stripped.model_path, kept.model_path):
            interpreter = runtime.Interpreter.from_file(
                path, arena_size=stripped.arena_bytes
            )
            shape = interpreter.get_input_details(0)["shape"]
            interpreter.set_input(np.full(shape, 7, np.int8), 0)
            interpreter.invoke()
            outputs.append(interpreter.get_output(0))
        np.testing.assert_array_equal(*outputs)


@pytest.mark.parametrize("argument", ["strip_strings", "per_channel"])
def test_flags_must_be_bools(network, images, tmp_path, argument):
    with pytest.raises(
        TypeError,
        match=f"`{argument}` must be True or False. Received: {argument}='yes'",
    ):
        tfee.export.micro(network, str(tmp_path), images, **{argument: "yes"})
    assert os.listdir(tmp_path) == []


def test_an_ensemble_for_another_class_count_is_refused_before_writing(
    network, images, tmp_path
):
    count = len(tfee.exits(network))
    ensemble = tfee.policy.ExitEnsemble(np.eye(count), np.zeros((count, 5)))
    policy = tfee.ThresholdPolicy([0.5] * (count - 1), ensemble=ensemble)
    with pytest.raises(ValueError, match="`policy.ensemble` answers over 5 classes"):
        tfee.export.micro(network, str(tmp_path / "fw"), images, policy=policy)
    with pytest.raises(ValueError, match="`policy.ensemble` answers over 5 classes"):
        tfee.export.tflite(network, str(tmp_path / "net.tflite"), policy=policy)
    assert not os.listdir(tmp_path)
