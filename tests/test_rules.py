"""The rule registry: its numpy, TensorFlow and C forms agree."""

import ctypes
import shutil
import subprocess

import numpy as np
import pytest

import tfee
from tfee import rules
from tfee import tf

CLASS_COUNTS = (2, 3, 10)


def _logit_cases(classes, seed=0):
    """Random rows plus the awkward ones: ties, huge gaps, NaN and infinities."""
    rng = np.random.default_rng(seed + classes)
    rows = [rng.normal(0, s, (16, classes)) for s in (0.1, 1.0, 5.0, 40.0)]
    special = np.zeros((8, classes))
    special[1, 0] = 50.0  # max softmax rounds to exactly 1.0
    special[2, :2] = 3.0  # top-2 tie: margin 0
    special[3, 0] = np.nan
    special[4, -1] = np.inf
    special[5, 0] = -np.inf
    special[6] = -1e30
    special[7, 0] = 1e-7  # just above a tie
    return np.concatenate(rows + [special]).astype(np.float32)


@pytest.fixture(scope="module")
def c_rules(tmp_path_factory):
    """The C form, compiled as a shared library with warnings as errors."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to check the C form of the rules")
    directory = tmp_path_factory.mktemp("rules_c")
    source = directory / "rules.c"
    source.write_text(rules.C_SOURCE + """
double score(int rule, const float* logits, int classes, float learned) {
  return tfee_score(rule, logits, classes, learned);
}
int decide(double score, double threshold) { return tfee_leaves(score, threshold); }
int argmax(const float* logits, int classes) { return tfee_argmax(logits, classes); }
/* The ensemble's answers over `exits` exits of one sample, in place. */
void ensemble(float* logits, int exits, int classes, const double* weights,
              const double* biases) {
  double history[1280];
  for (int k = 0; k < exits; ++k)
    tfee_ensemble(logits + k * classes, classes, k, history, weights + exits * k,
                  biases + classes * k, logits + k * classes);
}
/* Runs the decision over `exits` exits of one sample; writes each score. */
void decision(const float* logits, int exits, int classes, const double* weights,
              const double* biases, double* out) {
  double ensemble[128] = {0.0};
  int previous = -1, streak = 0;
  for (int k = 0; k < exits; ++k)
    out[k] = tfee_decision_score(logits + k * classes, classes, k, ensemble,
                                 &previous, &streak, weights + 6 * k, biases[k]);
}
""")
    library = directory / "rules.so"
    subprocess.run(
        ["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-shared"]
        + ["-fPIC", str(source), "-o", str(library), "-lm"],
        check=True,
    )
    lib = ctypes.CDLL(str(library))
    floats = ctypes.POINTER(ctypes.c_float)
    lib.score.argtypes = [ctypes.c_int, floats, ctypes.c_int, ctypes.c_float]
    lib.score.restype = ctypes.c_double
    lib.decide.argtypes = [ctypes.c_double, ctypes.c_double]
    lib.argmax.argtypes = [floats, ctypes.c_int]
    doubles = ctypes.POINTER(ctypes.c_double)
    lib.decision.argtypes = [floats, ctypes.c_int, ctypes.c_int, doubles, doubles]
    lib.decision.argtypes += [doubles]
    lib.ensemble.argtypes = [floats, ctypes.c_int, ctypes.c_int, doubles, doubles]
    return lib


def _c_scores(lib, rule, logits, learned=None):
    rule_id = rules.get(rule).c_id
    out = []
    for i, row in enumerate(np.ascontiguousarray(logits, np.float32)):
        pointer = row.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        value = 0.0 if learned is None else float(learned[i])
        out.append(lib.score(rule_id, pointer, len(row), value))
    return np.array(out)


def test_registry_names_every_rule_once():
    assert rules.RULES == ("max_softmax", "entropy", "margin", "learned")
    assert rules.SCORE_RULES == ("max_softmax", "entropy", "margin")
    every = rules.RULES + (rules.DECISION,)
    assert len({rules.get(r).c_id for r in every}) == len(every)
    assert rules.get(rules.DECISION).stateful
    assert not any(rules.get(r).stateful for r in rules.RULES)


def test_unknown_rule_raises_error_naming_the_argument():
    with pytest.raises(ValueError, match=r"unknown `rule`.*Received: rule='softmax'"):
        rules.scores(np.zeros((1, 3)), "softmax")


def test_learned_rule_without_confidence_raises_error():
    with pytest.raises(ValueError, match="needs the heads' learned `confidence`"):
        rules.scores(np.zeros((2, 3)), "learned")


@pytest.mark.parametrize("classes", CLASS_COUNTS)
@pytest.mark.parametrize("rule", rules.SCORE_RULES)
def test_numpy_scores_match_their_definition(rule, classes):
    logits = _logit_cases(classes).astype(np.float64)
    finite = np.isfinite(logits).all(-1)
    p = np.exp(logits[finite] - logits[finite].max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    if rule == "max_softmax":
        expected = p.max(-1)
    elif rule == "entropy":
        h = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), -1)
        expected = 1 - h / np.log(classes)
    else:
        top = np.sort(p, -1)
        expected = top[:, -1] - top[:, -2]
    got = rules.scores(logits, rule)
    np.testing.assert_allclose(got[finite], np.clip(expected, 0, 1), atol=1e-12)
    assert np.isnan(got[~finite]).all()


@pytest.mark.parametrize("classes", CLASS_COUNTS)
@pytest.mark.parametrize("rule", rules.SCORE_RULES)
def test_tensorflow_form_matches_numpy_form(rule, classes):
    logits = _logit_cases(classes)
    got = rules.tf_scores(tf.constant(logits), rule, dtype=tf.float64).numpy()
    np.testing.assert_allclose(got, rules.scores(logits, rule), atol=1e-12)


@pytest.mark.parametrize("classes", CLASS_COUNTS)
@pytest.mark.parametrize("rule", rules.SCORE_RULES)
def test_c_form_matches_numpy_form(c_rules, rule, classes):
    logits = _logit_cases(classes)
    np.testing.assert_allclose(
        _c_scores(c_rules, rule, logits), rules.scores(logits, rule), atol=1e-12
    )


def test_c_form_of_learned_rule_and_argmax_match_numpy(c_rules):
    logits = _logit_cases(3)
    learned = np.linspace(0, 1, len(logits)).astype(np.float32)
    learned[3] = np.nan
    learned[9] = np.inf
    np.testing.assert_array_equal(
        _c_scores(c_rules, "learned", logits, learned),
        rules.scores(logits, "learned", learned),
    )
    pointer = ctypes.POINTER(ctypes.c_float)
    rows = np.ascontiguousarray(logits)
    got = [c_rules.argmax(r.ctypes.data_as(pointer), len(r)) for r in rows]
    np.testing.assert_array_equal(got, rules.predictions(logits))


@pytest.mark.parametrize("threshold", [0.0, 0.25, 0.5, 0.997, 1.0])
def test_decision_is_the_same_in_numpy_and_c_including_ties(c_rules, threshold):
    # Equal logits over 4 classes score exactly 0.25: a tie at that threshold.
    logits = np.concatenate([_logit_cases(4), np.zeros((1, 4), np.float32)])
    for rule in rules.SCORE_RULES:
        score = rules.scores(logits, rule)
        c_decisions = [bool(c_rules.decide(s, threshold)) for s in score]
        np.testing.assert_array_equal(c_decisions, rules.leaves(score, threshold))
    assert rules.leaves(0.25, 0.25) is True
    assert rules.leaves(float("nan"), 0.0) is False
    assert rules.leaves(1.0, None) is False


def test_threshold_one_passes_only_scores_that_are_exactly_one():
    logits = np.array([[50.0, 0.0, 0.0], [8.0, 0.0, 0.0]])
    score = rules.scores(logits, "max_softmax")
    assert score[0] == 1.0 and score[1] < 1.0
    np.testing.assert_array_equal(rules.leaves(score, 1.0), [True, False])


@pytest.mark.parametrize("classes", CLASS_COUNTS + (100,))
@pytest.mark.parametrize("rule", rules.SCORE_RULES)
def test_one_row_scores_are_bit_identical_to_the_batch_scores(rule, classes):
    # A batch-1 cascade takes the one-row path; its exits must not differ.
    logits = _logit_cases(classes)
    batch = rules.scores(logits, rule)
    rows = np.array([rules.scores(row[None], rule)[0] for row in logits])
    np.testing.assert_array_equal(rows, batch)
    scorer = rules.RowScores(classes)  # The cascades' preallocated form.
    for dtype in (np.float32, np.float64):
        lean = [scorer.score(rule, row) for row in logits.astype(dtype)]
        np.testing.assert_array_equal(lean, rules.scores(logits.astype(dtype), rule))


@pytest.mark.parametrize("classes", CLASS_COUNTS)
def test_one_row_learned_scores_and_predictions_match_the_batch_forms(classes):
    logits = _logit_cases(classes)
    confidence = np.random.default_rng(1).uniform(0, 1, len(logits))
    confidence[::7] = np.nan
    scorer = rules.RowScores(classes)
    lean = [scorer.score("learned", row, c) for row, c in zip(logits, confidence)]
    np.testing.assert_array_equal(lean, rules.scores(logits, "learned", confidence))
    np.testing.assert_array_equal(
        [scorer.prediction(row) for row in logits], rules.predictions(logits)
    )
    passed = [rules.leaves(score, 0.5) for score in lean]
    assert all(type(value) is bool for value in passed)
    np.testing.assert_array_equal(passed, rules.leaves(np.array(lean), 0.5))


def _exit_sequences(classes, exits=4, seed=0):
    """(exits, samples, classes): per-exit logits, with rows that agree, that
    disagree, ties, and a NaN at a middle exit (it poisons the later ones)."""
    rng = np.random.default_rng(seed)
    base = _logit_cases(classes, seed)
    noise = rng.normal(0, 1.0, (exits,) + base.shape).astype(np.float32)
    sequences = base[None] + noise
    sequences[:, -8:] = base[-8:]  # The special rows as they are, every exit.
    sequences[1, 3, 0] = np.nan  # Exit 2 of sample 3 only.
    return sequences


@pytest.mark.parametrize("classes", CLASS_COUNTS)
def test_c_form_of_the_decision_matches_numpy(c_rules, classes):
    exits = 4
    logits = _exit_sequences(classes, exits)
    rng = np.random.default_rng(classes)
    weights = rng.normal(0, 2, (exits, len(rules.DECISION_SIGNALS)))
    biases = rng.normal(0, 1, exits)
    signals = rules.decision_features(np.concatenate([logits, logits[:1]]))
    expected = np.stack(
        [rules.decision_score(signals[k], weights[k], biases[k]) for k in range(exits)]
    )
    pointer = ctypes.POINTER(ctypes.c_double)
    got = np.zeros((logits.shape[1], exits))
    for i in range(logits.shape[1]):
        row = np.ascontiguousarray(logits[:, i], np.float32)
        out = np.zeros(exits)
        c_rules.decision(
            row.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
            exits,
            classes,
            np.ascontiguousarray(weights).ctypes.data_as(pointer),
            biases.ctypes.data_as(pointer),
            out.ctypes.data_as(pointer),
        )
        got[i] = out
    np.testing.assert_allclose(got.T, expected, atol=1e-12)
    # A non-finite exit gives NaN there and at every later exit of that sample.
    assert np.isnan(expected[1:, 3]).all() and np.isfinite(expected[0, 3])


def test_decision_signals_follow_their_definitions():
    logits = _exit_sequences(5, exits=3)[:, :64]
    signals = rules.decision_features(logits)
    assert signals.shape == (2, 64, len(rules.DECISION_SIGNALS))
    finite = np.isfinite(signals).all(axis=-1)
    for k in range(2):
        mine = finite[k]
        for column, rule in enumerate(("max_softmax", "margin", "entropy")):
            np.testing.assert_allclose(
                signals[k, mine, column],
                rules.scores(logits[k, mine], rule),
                atol=1e-12,
            )
        # The geometric ensemble of exits 0..k (mean log-softmax, softmaxed).
        x = logits[: k + 1, mine].astype(np.float64)
        log_softmax = x - np.log(np.exp(x).sum(-1, keepdims=True))
        ensemble = np.exp(log_softmax.mean(0))
        ensemble /= ensemble.sum(-1, keepdims=True)
        np.testing.assert_allclose(signals[k, mine, 3], ensemble.max(-1), atol=1e-9)
        agrees = ensemble.argmax(-1) == logits[k, mine].argmax(-1)
        np.testing.assert_array_equal(signals[k, mine, 4], agrees)
    same = logits[0].argmax(-1) == logits[1].argmax(-1)
    expected_streak = np.where(same, 2, 1) / 2
    np.testing.assert_array_equal(signals[1, finite[1], 5], expected_streak[finite[1]])


def test_decision_score_is_the_logistic_of_the_weighted_signals():
    signals = np.array([[0.5, 0.2, 0.1, 0.7, 1.0, 0.5], [np.nan] * 6])
    weights = np.arange(1, 7, dtype=np.float64)
    score = rules.decision_score(signals, weights, -3.0)
    z = -3.0 + signals[0] @ weights
    assert score[0] == pytest.approx(1 / (1 + np.exp(-z)), abs=1e-15)
    assert np.isnan(score[1])
    assert rules.decision_score(np.zeros((1, 6)), weights, 1000.0)[0] == 1.0


@pytest.mark.parametrize("classes", CLASS_COUNTS)
def test_c_form_of_the_ensemble_matches_numpy(c_rules, classes):
    exits = 4
    logits = _exit_sequences(classes, exits)
    rng = np.random.default_rng(classes)
    weights = np.tril(rng.normal(0, 1, (exits, exits)))
    biases = rng.normal(0, 1, (exits, classes))
    expected = tfee.policy.ExitEnsemble(weights, biases).answers(logits)
    doubles = ctypes.POINTER(ctypes.c_double)
    got = np.zeros_like(expected)
    for i in range(logits.shape[1]):
        row = np.ascontiguousarray(logits[:, i], np.float32)
        c_rules.ensemble(
            row.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
            exits,
            classes,
            np.ascontiguousarray(weights).ctypes.data_as(doubles),
            np.ascontiguousarray(biases).ctypes.data_as(doubles),
        )
        got[:, i] = row
    # Both round the float64 sum to float32 at the end: equal bits, NaN alike.
    np.testing.assert_array_equal(got, expected)
    assert np.isnan(expected[1:, 3]).all() and np.isfinite(expected[0, 3]).all()


def test_the_input_rule_marks_non_finite_samples_and_blanks_their_outputs():
    images = np.zeros((4, 2, 2, 1), np.float32)
    images[1, 0, 1, 0], images[3, 1, 1, 0] = np.nan, -np.inf
    blocked = rules.non_finite_rows(images)
    np.testing.assert_array_equal(blocked, [False, True, False, True])
    np.testing.assert_array_equal(
        rules.non_finite_rows(tf.constant(images, tf.bfloat16)), blocked
    )
    assert not rules.non_finite_rows(np.zeros((3, 4), np.int8)).any()
    logits = np.arange(8, dtype=np.float32).reshape(4, 2)
    confidence = np.full(4, 0.9, np.float32)
    new_logits, new_confidence = rules.blocked_outputs(logits, confidence, blocked)
    assert (
        np.isnan(new_logits[blocked]).all() and np.isnan(new_confidence[blocked]).all()
    )
    np.testing.assert_array_equal(new_logits[~blocked], logits[~blocked])
    assert np.isfinite(logits).all()  # The caller's arrays are left alone.
    np.testing.assert_array_equal(rules.predictions(new_logits), [1, -1, 1, -1])
    assert rules.blocked_outputs(logits, None, blocked)[1] is None


@pytest.mark.parametrize("classes", CLASS_COUNTS + (100,))
@pytest.mark.parametrize("rule", rules.RULES)
def test_row_leaves_decide_as_the_scores_also_at_thresholds_equal_to_a_score(
    rule, classes
):
    # RowScores.leaves estimates max_softmax in plain Python (libm's exp);
    # at a threshold within a bit of the score only the exact score decides.
    logits = _logit_cases(classes)
    confidence = np.random.default_rng(2).uniform(0, 1, len(logits))
    exact = rules.scores(logits, rule, confidence)
    scorer = rules.RowScores(classes)
    for row, value, score in zip(logits, confidence, exact):
        if not np.isfinite(score):
            assert not scorer.leaves(rule, row, 0.0, value)
            continue
        for threshold in (score, np.nextafter(score, 2.0), np.nextafter(score, -1.0)):
            threshold = float(min(max(threshold, 0.0), 1.0))
            assert scorer.leaves(rule, row, threshold, value) == rules.leaves(
                score, threshold
            )
            assert scorer.leaves(rule, row.tolist(), threshold, value) == (
                score >= threshold
            )
        assert scorer.leaves(rule, row, None, value) is False


def test_all_finite_is_exact_also_where_the_quick_sum_overflows():
    values = np.full((2, 8), 3e38, np.float32)  # finite, but sums to inf
    assert rules.all_finite(values)
    assert rules.all_finite(np.zeros(3, np.int8))
    for bad in (np.nan, np.inf, -np.inf):
        broken = values.copy()
        broken[1, 3] = bad
        assert not rules.all_finite(broken)
    np.testing.assert_array_equal(rules.non_finite_rows(broken), [False, True])
