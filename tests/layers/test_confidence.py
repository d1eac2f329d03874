"""Weightless confidence scores."""

import math

import numpy as np
import pytest

import tfee
from tfee import keras
from tfee import rules

LOGITS = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]], "float32")


def confidence(logits, rule):
    return tfee.layers.Confidence(rule)(logits).numpy()[:, 0]


def test_max_softmax_is_the_top_probability():
    scores = confidence(LOGITS, "max_softmax")
    top = math.exp(2) / (math.exp(2) + 2)
    np.testing.assert_allclose(scores, [top, 1 / 3], rtol=1e-6)


def test_entropy_confidence_is_zero_for_a_uniform_prediction():
    scores = confidence(LOGITS, "entropy")
    assert scores[1] == pytest.approx(0.0, abs=1e-6)
    assert 0 < scores[0] < 1


def test_margin_is_top1_minus_top2():
    scores = confidence(LOGITS, "margin")
    p = np.exp(LOGITS[0]) / np.exp(LOGITS[0]).sum()
    np.testing.assert_allclose(scores, [p[0] - p[1], 0.0], atol=1e-6)


@pytest.mark.parametrize("rule", rules.SCORE_RULES)
def test_non_finite_logits_give_nan_confidence(rule):
    logits = np.array([[np.nan, 1.0], [np.inf, 0.0], [1.0, 0.0]], "float32")
    scores = confidence(logits, rule)
    assert np.isnan(scores[0]) and np.isnan(scores[1]) and np.isfinite(scores[2])


def test_confidence_layer_round_trips_through_config_and_save(tmp_path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, tfee.layers.Confidence("margin")(inputs))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert loaded.layers[1].get_config()["rule"] == "margin"
    np.testing.assert_allclose(
        loaded.predict(LOGITS, verbose=0), model.predict(LOGITS, verbose=0)
    )


def test_unknown_rule_raises_a_clear_error():
    with pytest.raises(ValueError, match=r"expected one of .*Received: rule='softmax'"):
        tfee.layers.Confidence("softmax")
    with pytest.raises(ValueError, match="Received: rule='learned'"):
        tfee.layers.Confidence("learned")


@pytest.mark.parametrize("rule", rules.SCORE_RULES)
def test_confidence_layer_computes_the_registry_rule(rule):
    logits = np.random.default_rng(0).normal(0, 3, (16, 5)).astype("float32")
    np.testing.assert_allclose(
        confidence(logits, rule), rules.scores(logits, rule), atol=1e-6
    )


def test_confidence_layer_rejects_single_class_input():
    with pytest.raises(ValueError, match="at least 2 classes"):
        tfee.layers.Confidence()(np.zeros((2, 1), "float32"))
