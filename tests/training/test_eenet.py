import numpy as np
import pytest

import tfee
from tests.training import _tiny
from tfee import keras


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _reference(labels, logits, confidences, costs, lam, version):
    """EENet's recursion written out with numpy (PAPERS.md section 3)."""
    y = _softmax(logits[-1])
    c = np.full(len(labels), costs[-1])
    rows = np.arange(len(labels))
    total = -np.log(y[rows, labels]) + lam * c
    for i in range(len(logits) - 2, -1, -1):
        h = confidences[i]
        y = h * _softmax(logits[i]) + (1 - h) * y
        c = h[:, 0] * costs[i] + (1 - h[:, 0]) * c
        term = -np.log(y[rows, labels]) + lam * c
        total = total + term if version == "v2" else term
    return total


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_eenet_loss_matches_the_papers_recursion(version):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 5)
    logits = [rng.normal(size=(5, 4)).astype("float32") for _ in range(3)]
    confidences = [rng.uniform(0.1, 0.9, (5, 1)).astype("float32") for _ in range(2)]
    costs = (0.2, 0.6, 1.1)
    total, _, expected = tfee.training.eenet_loss(
        labels, logits, confidences, costs, 0.7, version
    )
    reference = _reference(labels, logits, confidences, costs, 0.7, version)
    np.testing.assert_allclose(total.numpy(), reference, rtol=1e-5)
    assert np.all((expected.numpy() > 0.2) & (expected.numpy() < 1.1))


def test_exit_costs_come_from_the_cost_analysis():
    net = _tiny.network(with_confidence=True)
    report = tfee.cost.analyze(net)
    assert tfee.training.exit_costs(net) == tuple(
        e.fraction_of_full for e in report.exits
    )
    normalized = tfee.training.exit_costs(net, "normalized")
    assert normalized[-1] == 1.0 and 0 < normalized[0] < 1


def test_eenet_trains_with_fit_and_logs_its_terms_and_exit_accuracies():
    net = _tiny.network(with_confidence=True)
    _, _, dataset = _tiny.data()
    trainer = tfee.EENet(net, lam=0.5, version="v2")
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = trainer.fit(dataset, validation_data=dataset, epochs=2, verbose=0)
    for key in ("loss", "prediction_loss", "expected_cost", "val_exit_2_accuracy"):
        assert len(history.history[key]) == 2
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_backbone_targets_are_the_deepest_exits_predictions():
    net = _tiny.network(with_confidence=True)
    images, labels, dataset = _tiny.data()
    trainer = tfee.EENet(net, lam=0.3, targets="backbone")
    trainer.compile(optimizer="sgd")
    result = trainer.evaluate(dataset, return_dict=True, verbose=0)
    exit_1, exit_2, confidence = net.predict(images, verbose=0)
    agreed = np.argmax(exit_2, -1)
    assert not np.array_equal(agreed, labels)
    expected = _reference(
        agreed, [exit_1, exit_2], [confidence], trainer.costs, 0.3, "v1"
    )
    assert result["loss"] == pytest.approx(expected.mean(), rel=1e-4)


def test_a_backbone_model_as_target_matches_the_deepest_exit():
    net = _tiny.network(with_confidence=True)
    _, _, dataset = _tiny.data()
    results = []
    for targets in ("backbone", tfee.detach_exits(net)):
        trainer = tfee.EENet(net, lam=0.3, targets=targets)
        trainer.compile(optimizer="sgd")
        results.append(trainer.evaluate(dataset, return_dict=True, verbose=0))
    assert results[1]["loss"] == pytest.approx(results[0]["loss"], rel=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lam": -0.1}, r"`lam` \(the cost penalty lambda\) must be a finite number"),
        ({"version": "v3"}, "`version` must be 'v1' or 'v2'"),
        ({"costs": [0.5]}, r"one finite non-negative number per exit \(2"),
        ({"costs": [0.5, -1.0]}, "one finite non-negative number per exit"),
        ({"targets": "teacher"}, "`targets` must be 'labels', 'backbone'"),
    ],
)
def test_bad_eenet_settings_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tfee.EENet(_tiny.network(with_confidence=True), **kwargs)


def test_eenet_needs_learned_confidences():
    with pytest.raises(ValueError, match="needs a learned confidence"):
        tfee.EENet(_tiny.network())


def test_eenet_compile_refuses_a_loss():
    trainer = tfee.EENet(_tiny.network(with_confidence=True))
    with pytest.raises(ValueError, match="`loss` is defined by"):
        trainer.compile(optimizer="adam", loss="mse")
