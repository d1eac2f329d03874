"""Conformance: every rule on every backend decides as `policy.exit_indices` does.

The network here passes its input straight to its exits (identity weights),
so each test row *is* a set of exit logits, chosen to hit the hard cases:
scores exactly at a threshold, thresholds 0, 0.5, 0.997 and 1.0, a score
that rounds to exactly 1.0, NaN and infinite logits. For every backend the
reference is the policy applied, vectorised, to the logits that backend
itself computes (dequantized for int8): the engine, the batch-1 graph and
the generated C++ must all give exactly those exits and predictions, at
batch 1 and batch N.
"""

import json
import pathlib
import subprocess

import numpy as np
import pytest

import tfee
from tests import tiny_files
from tfee import keras
from tfee import rules
from tfee.export._micro import cpp

CLASSES = 4
THRESHOLDS = (0.0, 0.25, 0.5, 0.997, 1.0)
POLICIES = [(rule, threshold) for rule in rules.RULES for threshold in THRESHOLDS] + [
    ("patience", 2),
    ("patience", 3),
    # The learned decision: exit 2 reads the state exit 1 left, also where
    # exit 1 never lets a sample leave (None).
    ("decision", (0.5, 0.5)),
    ("decision", (0.9, 0.3)),
    ("decision", (None, 0.6)),
    # With a learned ensemble: every exit scores and answers with it.
    ("ensemble max_softmax", 0.5),
    ("ensemble decision", (0.9, 0.3)),
]
# A fixed ensemble: exit 2 leans on exit 1, exit 3 on all three.
ENSEMBLE = tfee.policy.ExitEnsemble(
    [[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.3, -0.2, 1.1]],
    [[0.0] * CLASSES, [0.1, -0.1, 0.0, 0.2], [0.0, 0.3, -0.3, 0.0]],
)
# A fixed decision model: every signal counts, none alone decides.
DECISION_WEIGHTS = [[2.0, 1.0, 1.5, 3.0, 1.0, 1.0], [1.0, -0.5, 1.0, 2.0, 2.0, 1.5]]
DECISION_BIASES = [-4.0, -4.5]


def _identity_network():
    """Three exits over a (1, 1, 4) input: exit_1 = x, exit_2 = x with classes
    0 and 1 swapped, exit_3 = x / 2; learned confidences sigmoid(x_0),
    sigmoid(x_1)."""
    inputs = keras.Input((1, 1, CLASSES), name="image")
    eye = np.eye(CLASSES, dtype=np.float32)
    block1 = keras.layers.Conv2D(CLASSES, 1, use_bias=False, name="block1")(inputs)
    block2 = keras.layers.Conv2D(CLASSES, 1, use_bias=False, name="block2")(block1)
    pooled = keras.layers.GlobalAveragePooling2D()(block2)
    logits = keras.layers.Dense(CLASSES, name="logits")(pooled)
    backbone = keras.Model(inputs, logits)
    backbone.get_layer("block1").set_weights([eye[None, None]])
    backbone.get_layer("block2").set_weights([eye[None, None]])
    backbone.get_layer("logits").set_weights([eye / 2, np.zeros(CLASSES, np.float32)])
    network = tfee.attach_exits(
        backbone, ["block1", "block2"], head="linear", with_confidence=True
    )
    swap = eye[:, [1, 0, 2, 3]]
    for k, kernel in ((1, eye), (2, swap)):
        head = network.get_layer(f"exit_{k}_head")
        reader = np.zeros((CLASSES, 1), np.float32)
        reader[k - 1, 0] = 1.0
        head.set_weights(
            [kernel, np.zeros(CLASSES, np.float32), reader, np.zeros(1, np.float32)]
        )
    return network


def _rows(finite_only):
    """Exit-1 logits per sample (the other exits follow from them)."""
    rng = np.random.default_rng(0)
    rows = [rng.normal(0, scale, (12, CLASSES)) for scale in (0.5, 2.0, 6.0)]
    special = np.zeros((6, CLASSES))  # Row 0: equal logits, every rule's tie.
    special[1, 0] = 12.0  # max softmax 0.99998: above 0.997, below 1.
    special[2, 0] = 7.0  # max softmax ~0.9973: next to 0.997.
    special[3, 2] = 40.0  # max softmax rounds to exactly 1.0.
    special[4, :2] = 3.0  # top-2 tie.
    special[5] = [0.0, -5.0, 5.0, 1.0]
    rows = np.concatenate(rows + [special])
    if not finite_only:
        bad = np.zeros((3, CLASSES))
        bad[0, 1], bad[1, 0], bad[2, 3] = np.nan, np.inf, -np.inf
        rows = np.concatenate([rows, bad])
    return rows.astype(np.float32)[:, None, None, :]


def _policy(rule, value):
    if rule == "patience":
        return tfee.PatiencePolicy(value, num_exits=3)
    if rule == "decision":
        return tfee.DecisionPolicy(list(value), DECISION_WEIGHTS, DECISION_BIASES)
    if rule == "ensemble decision":
        return tfee.DecisionPolicy(
            list(value), DECISION_WEIGHTS, DECISION_BIASES, ensemble=ENSEMBLE
        )
    if rule == "ensemble max_softmax":
        return tfee.ThresholdPolicy([value, value], ensemble=ENSEMBLE)
    return tfee.ThresholdPolicy([value, value], rule=rule)


@pytest.fixture(scope="module")
def network():
    return _identity_network()


@pytest.fixture(scope="module")
def files(network):
    """The identity network's float32, int8 and TFLite Micro files, converted
    once on disk for every worker (tests/tiny_files.py: `shared`)."""
    return tiny_files.shared(
        "conformance_files", lambda folder: _files(network, folder)
    )


def _files(network, directory):
    representative = _rows(finite_only=True)
    files = tiny_files.litert_files(network, directory, representative)
    export = tfee.export.micro(
        network, str(directory / "micro"), representative, name="conf"
    )
    files.update(micro=export.manifest_path, micro_export=export)
    return files


def _expected(policy, logits, confidences):
    """The reference: the vectorised policy over a backend's own outputs."""
    exits = policy.exit_indices(np.stack(logits), np.stack(confidences))
    answers = np.stack(logits)
    if policy.ensemble is not None:
        answers = policy.ensemble.answers(answers)
    chosen = answers[exits, np.arange(len(exits))]
    return exits, rules.predictions(chosen)


def _check(result, expected):
    exits, predictions = expected
    np.testing.assert_array_equal(result.exit_indices, exits)
    np.testing.assert_array_equal(result.predictions, predictions)


def test_the_network_passes_its_input_to_its_exits(network):
    rows = _rows(finite_only=True)
    outputs = network.predict(rows, verbose=0)
    x = rows[:, 0, 0]
    np.testing.assert_array_equal(outputs[0], x)
    np.testing.assert_array_equal(outputs[1], x[:, [1, 0, 2, 3]])
    np.testing.assert_array_equal(outputs[2], x / 2)


@pytest.mark.parametrize("rule,value", POLICIES)
def test_keras_backend_float32(network, rule, value):
    rows = _rows(finite_only=False)
    outputs = network.predict(rows, verbose=0)
    logits = list(outputs[:3])
    confidences = [outputs[3][:, 0], outputs[4][:, 0], np.full(len(rows), np.nan)]
    policy = _policy(rule, value)
    expected = _expected(policy, logits, confidences)
    predictor = tfee.DynamicPredictor(network, policy)
    _check(predictor.predict(rows, batch_size=len(rows)), expected)
    _check(predictor.predict(rows, batch_size=1), expected)


@pytest.mark.parametrize("dtype", ["float32", "int8"])
@pytest.mark.parametrize("rule,value", POLICIES)
def test_litert_backend(files, dtype, rule, value):
    rows = _rows(finite_only=dtype == "int8")
    policy = _policy(rule, value)
    if dtype == "int8" and rule == "learned" and value > 255 / 256:
        # An int8 sigmoid stops at 255/256 on every runtime alike: said aloud.
        with pytest.warns(UserWarning, match="never let a sample leave"):
            cascade = tfee.Cascade(files[dtype], policy)
    else:
        cascade = tfee.Cascade(files[dtype], policy)
    outputs = cascade.collect_outputs(rows, np.zeros(len(rows), np.int64))
    confidences = list(outputs.confidences)
    expected = _expected(policy, list(outputs.logits), confidences)
    _check(cascade.predict(rows), expected)
    _check(cascade.predict(rows, batch_size=1), expected)


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_the_batch_one_path_decides_thresholds_equal_to_a_score_as_the_policy(
    files, dtype
):
    # The lean batch-1 path estimates max-softmax in plain Python; where a
    # threshold is a sample's own score (calibration picks such values), the
    # exact score must decide, as policy.exit_indices does.
    rows = _rows(finite_only=True)
    outputs = tfee.Cascade(files[dtype]).collect_outputs(
        rows, np.zeros(len(rows), np.int64)
    )
    scores = rules.scores(outputs.logits[:2], "max_softmax")
    for row in range(0, len(rows), 4):
        policy = tfee.ThresholdPolicy([float(scores[0, row]), float(scores[1, row])])
        expected = _expected(policy, list(outputs.logits), list(outputs.confidences))
        cascade = tfee.Cascade(files[dtype], policy)
        _check(cascade.predict(rows, batch_size=1), expected)


@pytest.mark.parametrize("rule,value", POLICIES)
def test_tflite_micro_backend_int8(files, rule, value):
    rows = _rows(finite_only=True)
    policy = _policy(rule, value)
    if rule == "learned" and value > 255 / 256:
        with pytest.warns(UserWarning, match="never let a sample leave"):
            cascade = tfee.runtime.MicroCascade(files["micro"], policy)
    else:
        cascade = tfee.runtime.MicroCascade(files["micro"], policy)
    logits, confidences = cascade.exit_outputs(rows)
    expected = _expected(policy, logits, confidences)
    _check(cascade.predict(rows), expected)
    # One image per call: the engine's batch-1 branch (`_run_one`), as a
    # device asks, on every row.
    one_by_one = tfee.CascadeResult.concatenate([cascade.predict(row) for row in rows])
    _check(one_by_one, expected)


@pytest.mark.parametrize("rule,value", POLICIES)
def test_keras_and_litert_float32_give_the_same_answers(network, files, rule, value):
    # Backends against each other, not only against the policy: a wrong
    # output index or dequantization in one of them shows here.
    rows = _rows(finite_only=False)
    policy = _policy(rule, value)
    keras_result = tfee.DynamicPredictor(network, policy).predict(rows)
    litert_result = tfee.Cascade(files["float32"], policy).predict(rows)
    np.testing.assert_array_equal(keras_result.exit_indices, litert_result.exit_indices)
    np.testing.assert_array_equal(keras_result.predictions, litert_result.predictions)


def _swallowing_network():
    """Exits that read max_pool(relu(x)) over a (1, 2, 4) input, then pass it
    on as `_identity_network` does: a -inf, or a NaN where the kernels
    drop it, never reaches the logits."""
    inputs = keras.Input((1, 2, CLASSES), name="image")
    pooled = keras.layers.MaxPooling2D((1, 2))(keras.layers.ReLU()(inputs))
    inner = _identity_network()
    block1 = inner.get_layer("block1")(pooled)
    block2 = inner.get_layer("block2")(block1)
    logits = inner.get_layer("logits")(keras.layers.GlobalAveragePooling2D()(block2))
    backbone = keras.Model(inputs, logits)
    return tfee.attach_exits(
        backbone, ["block1", "block2"], head="linear", with_confidence=True
    )


def _swallowed_rows():
    """(rows, non-finite): every row is confident at exit 1 from its first
    pixel ([12, 0, 0, 0]); rows 1-4 also hold a NaN or infinity that the
    ReLU or max-pool may swallow before any logit."""
    rows = np.zeros((6, 1, 2, CLASSES), np.float32)
    rows[:, 0, 0, 0] = 12.0
    rows[1, 0, 1, :] = -np.inf  # ReLU makes it 0, the max-pool drops it.
    rows[2, 0, 1, 0] = np.nan  # Dropped or kept: the kernels decide.
    rows[3, 0, 0, 3] = -np.inf  # ReLU makes it 0.
    rows[4, 0, 1, 2] = np.nan
    return rows, np.array([False, True, True, True, True, False])


@pytest.mark.parametrize(
    "rule,value",
    [("max_softmax", 0.5), ("patience", 2), ("ensemble decision", (0.9, 0.3))],
)
def test_non_finite_inputs_are_decided_from_the_input_on_every_runtime(
    tmp_path, rule, value
):
    # Issue 29: with the NaN left to reach the logits, a max-pool that drops
    # it (oneDNN at batch 8, not XLA at batch 1) let an image leave at exit
    # 1 on one CPU and answer -1 on another.
    network = _swallowing_network()
    rows, non_finite = _swallowed_rows()
    policy = _policy(rule, value)
    # The finite rows as the policy decides them on the network's outputs.
    outputs = network.predict(rows[~non_finite], verbose=0)
    finite_exits, finite_predictions = _expected(
        policy,
        list(outputs[:3]),
        [outputs[3][:, 0], outputs[4][:, 0], outputs[3][:, 0]],
    )
    exits = np.full(len(rows), 2)
    exits[~non_finite] = finite_exits
    predictions = np.full(len(rows), -1)
    predictions[~non_finite] = finite_predictions
    float_file = tfee.export.tflite(network, str(tmp_path / "f32.tflite")).path
    runs = {
        "keras": tfee.DynamicPredictor(network, policy).predict,
        "litert": tfee.Cascade(float_file, policy).predict,
    }
    for runtime, predict in runs.items():
        for batch_size in (len(rows), 1):
            with pytest.warns(UserWarning, match="4 of 6 images hold NaN"):
                result = predict(rows, batch_size=batch_size)
            where = f"{runtime} at batch {batch_size}"
            np.testing.assert_array_equal(result.exit_indices, exits, where)
            np.testing.assert_array_equal(result.predictions, predictions, where)
            assert np.isnan(result.logits[non_finite]).all(), where
    int8_file = tfee.export.tflite(
        network,
        str(tmp_path / "int8.tflite"),
        quantize="int8",
        representative=rows[~non_finite],
    ).path
    with pytest.raises(ValueError, match="no NaN or infinity"):
        tfee.Cascade(int8_file, policy).predict(rows)


def test_int8_scores_reach_one_so_a_threshold_of_one_can_pass(files):
    # The failure the old int8 outputs had: a softmax output saturates at
    # 255/256, so nothing ever left at 0.997; dequantized logits do reach it.
    rows = _rows(finite_only=True)
    policy = tfee.ThresholdPolicy([0.997, 0.997])
    result = tfee.Cascade(files["int8"], policy).predict(rows)
    assert np.sum(result.exit_indices == 0) >= 2


def test_int8_backends_refuse_non_finite_images(files):
    rows = _rows(finite_only=False)
    policy = tfee.ThresholdPolicy([0.5, 0.5])
    with pytest.raises(ValueError, match="no NaN or infinity"):
        tfee.Cascade(files["int8"], policy).predict(rows)
    with pytest.raises(ValueError, match="no NaN or infinity"):
        tfee.runtime.MicroCascade(files["micro"], policy).predict(rows)


def test_results_carry_the_macs_each_sample_paid(network, files):
    rows = _rows(finite_only=True)
    policy = tfee.ThresholdPolicy([0.5, 0.9])
    macs = [info.cumulative_macs for info in tfee.exits(network)]
    for result in (
        tfee.DynamicPredictor(network, policy).predict(rows),
        tfee.Cascade(files["float32"], policy).predict(rows),
        tfee.runtime.MicroCascade(files["micro"], policy).predict(rows),
    ):
        np.testing.assert_array_equal(
            result.macs, np.asarray(macs, float)[result.exit_indices]
        )


# The parts of the TFLite Micro API the generated cascade uses, backed by a
# table of recorded int8 outputs: the generated loop and rules then run for
# real on the outputs the TFLM interpreter produced.
_FAKE_TFLM = {
    "tensorflow/lite/micro/micro_interpreter.h": """#pragma once
#include <cstddef>
#include <cstdint>
typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;
struct TfLiteQuantizationParams { float scale; int32_t zero_point; };
union TfLitePtrUnion { int8_t* int8; };
struct TfLiteTensor { TfLitePtrUnion data; TfLiteQuantizationParams params; size_t bytes; };
namespace tflite {
struct Model { int stage; };
extern Model g_models[8];
inline const Model* GetModel(const void* data) {
  return &g_models[*static_cast<const unsigned char*>(data)];
}
class MicroOpResolver {};
// Recorded outputs: g_outputs[stage][output] for the current sample.
extern TfLiteTensor g_outputs[8][4];
extern TfLiteTensor g_inputs[8];
extern int g_invoked[8];
class MicroInterpreter {
 public:
  MicroInterpreter(const Model* m, const MicroOpResolver&, uint8_t*, size_t)
      : stage_(m->stage) {}
  TfLiteStatus AllocateTensors() { return kTfLiteOk; }
  TfLiteStatus Invoke() { ++g_invoked[stage_]; return kTfLiteOk; }
  TfLiteTensor* input(size_t) { return &g_inputs[stage_]; }
  TfLiteTensor* output(size_t i) { return &g_outputs[stage_][i]; }
 private:
  int stage_;
};
}
""",
    "tensorflow/lite/micro/micro_mutable_op_resolver.h": """#pragma once
#include "tensorflow/lite/micro/micro_interpreter.h"
namespace tflite {
template <unsigned N> class MicroMutableOpResolver : public MicroOpResolver {
 public:
#define OP(x) TfLiteStatus Add##x() { return kTfLiteOk; }
  OP(Add) OP(AveragePool2D) OP(Conv2D) OP(FullyConnected) OP(MaxPool2D) OP(Mul)
  OP(Reshape) OP(Softmax) OP(Mean) OP(Logistic) OP(Quantize) OP(Dequantize)
  OP(Concatenation) OP(Pad) OP(Relu) OP(Relu6) OP(Sub) OP(Tanh) OP(ReduceMax)
  OP(DepthwiseConv2D) OP(HardSwish)
};
}
""",
    "tensorflow/lite/schema/schema_generated.h": "#pragma once\n",
}

_HARNESS = """
#include <cstdio>
#include <cstring>
#include "policy0_cascade.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
namespace tflite {
Model g_models[8];
TfLiteTensor g_outputs[8][4];
TfLiteTensor g_inputs[8];
int g_invoked[8];
}
%(declarations)s
typedef int (*Cascade)(const int8_t*, int*);
const Cascade kCascades[] = {%(cascades)s};
// `harness quantize`: stdin "n" and n images of kInputBytes floats; stdout
// per image its int8 values from policy0_quantize_image, or "refused".
int Quantize() {
  int count;
  if (std::scanf("%%d", &count) != 1) return 2;
  for (int s = 0; s < count; ++s) {
    float image[policy0::kInputBytes];
    int8_t quantized[policy0::kInputBytes];
    for (unsigned int i = 0; i < policy0::kInputBytes; ++i) {
      if (std::scanf("%%f", &image[i]) != 1) return 2;
    }
    if (!policy0_quantize_image(image, quantized)) {
      std::printf("refused\\n");
      continue;
    }
    for (int8_t q : quantized) std::printf("%%d ", q);
    std::printf("\\n");
  }
  return 0;
}
// stdin: samples stages, then per sample, per stage: the output count and
// per output "scale zero_point n values...". stdout: per sample, per
// cascade, "exit predicted".
int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "quantize") == 0) return Quantize();
  int samples, stages;
  if (std::scanf("%%d %%d", &samples, &stages) != 2) return 2;
  static int8_t storage[8][4][4096];
  static int8_t input_storage[8][4096];
  for (int k = 0; k < 8; ++k) {
    tflite::g_models[k].stage = k;
    tflite::g_inputs[k].data.int8 = input_storage[k];
    tflite::g_inputs[k].bytes = 0;
  }
  for (int s = 0; s < samples; ++s) {
    for (int k = 0; k < stages; ++k) {
      int outputs;
      if (std::scanf("%%d", &outputs) != 1) return 2;
      for (int o = 0; o < outputs; ++o) {
        TfLiteTensor& t = tflite::g_outputs[k][o];
        int n, value;
        if (std::scanf("%%f %%d %%d", &t.params.scale, &t.params.zero_point, &n) != 3)
          return 2;
        t.data.int8 = storage[k][o];
        t.bytes = n;
        for (int i = 0; i < n; ++i) {
          if (std::scanf("%%d", &value) != 1) return 2;
          storage[k][o][i] = static_cast<int8_t>(value);
        }
      }
    }
    const int8_t image[1] = {0};
    for (Cascade cascade : kCascades) {
      int exit_index = -1;
      const int predicted = cascade(image, &exit_index);
      std::printf("%%d %%d ", exit_index, predicted);
    }
    std::printf("\\n");
  }
  return 0;
}
"""


@pytest.fixture(scope="module")
def cpp_harness(files, tmp_path_factory):
    """Every policy's generated cascade, compiled into one program (warnings
    are errors) over the fake TFLM above."""
    directory = tmp_path_factory.mktemp("cpp")
    export, manifest = files["micro_export"], files["micro"]
    with open(manifest) as f:
        stages = json.load(f)["stages"]
    positions = [stage["outputs"] for stage in stages]
    input_positions = [stage["inputs"] for stage in stages]
    for relative, text in _FAKE_TFLM.items():
        (directory / relative).parent.mkdir(parents=True, exist_ok=True)
        (directory / relative).write_text(text)
    sources = []
    for i, (rule, value) in enumerate(POLICIES):
        source = cpp.cascade_source(
            f"policy{i}",
            export.stages,
            positions,
            input_positions,
            _policy(rule, value),
            CLASSES,
        )
        sources.append(directory / f"policy{i}.cc")
        sources[-1].write_text(source)
        header = cpp.cascade_header(
            f"policy{i}",
            export.stages,
            positions,
            input_positions,
            CLASSES,
            export.arena_bytes,
            4096,
            normalised=None,
        )
        (directory / f"policy{i}_cascade.h").write_text(header)
    for stage in export.stages:
        sources.append(directory / f"model_{stage.index}.cc")
        # Each model is one byte, its stage: the fake GetModel reads it.
        sources[-1].write_text(
            f'#include "{pathlib.Path(stage.header_path).name}"\n'
            f"alignas(16) const unsigned char {stage.array_name}[] = "
            f"{{{stage.index - 1}}};\n"
        )
    names = [f"policy{i}_cascade" for i in range(len(POLICIES))]
    (directory / "harness.cc").write_text(
        _HARNESS
        % {
            "declarations": "\n".join(
                f"int {n}(const int8_t* image, int* exit_index);" for n in names
            ),
            "cascades": ", ".join(names),
        }
    )
    binary = str(directory / "cascades")
    subprocess.run(
        ["g++", "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror"]
        + [f"-I{directory}", f"-I{export.directory}", str(directory / "harness.cc")]
        + [str(p) for p in sources]
        + ["-o", binary],
        check=True,
    )
    return binary


@pytest.fixture(scope="module")
def cpp_answers(files, cpp_harness):
    """Every policy's generated cascade run on the int8 outputs the TFLM
    interpreter recorded."""
    manifest = files["micro"]
    rows = _rows(finite_only=True)
    recorded = tfee.runtime.MicroCascade(
        manifest, tfee.ThresholdPolicy([None, None])
    ).raw_outputs(rows)
    lines = [f"{len(rows)} {len(recorded)}"]
    for i in range(len(rows)):
        for stage in recorded:
            lines.append(str(len(stage)))
            for values, (scale, zero_point) in stage:
                flat = values[i].reshape(-1)
                lines.append(
                    f"{scale!r} {zero_point} {len(flat)} "
                    + " ".join(str(int(v)) for v in flat)
                )
    run = subprocess.run(
        [cpp_harness],
        input="\n".join(lines),
        capture_output=True,
        text=True,
        check=True,
    )
    answers = np.array([line.split() for line in run.stdout.splitlines()], int)
    return answers.reshape(len(rows), len(POLICIES), 2)


@pytest.mark.parametrize("index", range(len(POLICIES)))
def test_generated_cpp_cascade_int8(files, cpp_answers, index):
    rule, value = POLICIES[index]
    policy = _policy(rule, value)
    cascade = tfee.runtime.MicroCascade(files["micro"], policy)
    logits, confidences = cascade.exit_outputs(_rows(finite_only=True))
    exits, predictions = _expected(policy, logits, confidences)
    np.testing.assert_array_equal(cpp_answers[:, index, 0], exits)
    np.testing.assert_array_equal(cpp_answers[:, index, 1], predictions)


def test_the_generated_quantizer_quantizes_as_the_runtimes_and_refuses_non_finite(
    files, cpp_harness
):
    # The firmware's float entry: the header's formula (round half to even,
    # clamp) as `quantize_input`, and the input rule's refusal (issue 29).
    export = files["micro_export"]
    scale, zero_point = export.stages[0].input_quantization
    steps = np.arange(-6, 7, dtype=np.float32) * np.float32(scale) / 2  # halves
    finite = np.concatenate(
        [_rows(finite_only=True).reshape(-1, CLASSES), steps[:12].reshape(3, CLASSES)]
    )
    finite = np.concatenate([finite, [[1e6, -1e6, 0.0, -0.0]]]).astype(np.float32)
    bad = np.array(
        [[np.nan, 0, 0, 0], [0, np.inf, 0, 0], [0, 0, -np.inf, 0]], np.float32
    )
    images = np.concatenate([finite, bad])
    text = f"{len(images)}\n" + "\n".join(
        " ".join(repr(float(v)) for v in row) for row in images
    )
    run = subprocess.run(
        [cpp_harness, "quantize"],
        input=text,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = run.stdout.splitlines()
    assert lines[len(finite) :] == ["refused"] * len(bad)
    details = {"dtype": np.int8, "quantization": (scale, zero_point)}
    expected = tfee.runtime.quantize_input(finite, details)
    np.testing.assert_array_equal(
        np.array([line.split() for line in lines[: len(finite)]], int), expected
    )


def test_a_decision_policy_travels_in_the_file(files, tmp_path):
    # Embedded with set_policy, read back by Cascade(path) alone.
    path = tmp_path / "decision.tflite"
    path.write_bytes(pathlib.Path(files["float32"]).read_bytes())
    policy = _policy("decision", (0.9, 0.3))
    tfee.export.set_policy(str(path), policy)
    embedded = tfee.Cascade(str(path))
    assert embedded.policy == policy
    rows = _rows(finite_only=True)
    _check(
        embedded.predict(rows),
        _check_answers(tfee.Cascade(files["float32"], policy), rows),
    )


def _check_answers(cascade, rows):
    result = cascade.predict(rows)
    return result.exit_indices, result.predictions


def test_the_fixed_ensemble_changes_exits_and_answers(network):
    # Else the ensemble entries above could pass with the ensemble ignored.
    rows = _rows(finite_only=True)
    outputs = network.predict(rows, verbose=0)
    logits, confidences = list(outputs[:3]), [outputs[3][:, 0]] * 3
    for rule, value in (("max_softmax", 0.5), ("decision", (0.9, 0.3))):
        plain = _expected(_policy(rule, value), logits, confidences)
        ensembled = _expected(_policy(f"ensemble {rule}", value), logits, confidences)
        assert (plain[0] != ensembled[0]).any() and (plain[1] != ensembled[1]).any()
