import numpy as np
import pytest

import tfee
import tfee.policy
from tfee.policy import PatiencePolicy
from tfee.policy import ThresholdPolicy


@pytest.fixture
def net(tiny_resnet):
    return tfee.attach_exits(
        tiny_resnet,
        ["stage1_block1_out", "stage2_block1_out"],
        head="sdn",
        with_confidence=True,
    )


@pytest.fixture
def batch():
    rng = np.random.default_rng(3)
    return rng.normal(size=(7, 16, 16, 3)).astype("float32"), rng.integers(0, 3, 7)


def policies_spreading(outputs):
    """Policies whose exits differ across these samples (else the test is vacuous)."""

    def between(scores):
        # Halfway between the two middle scores: stage-by-stage graphs may
        # round a logit differently from the full network, and a threshold
        # equal to a score would let that round-off pick the exit.
        low, high = np.sort(scores)[len(scores) // 2 - 1 : len(scores) // 2 + 1]
        return float((low + high) / 2)

    ruled = []
    for rule in ("max_softmax", "entropy", "margin"):
        scores = tfee.rules.scores(outputs.logits[:-1], rule)
        ruled.append(ThresholdPolicy([between(s) for s in scores], rule))
    learned = [between(c) for c in outputs.confidences[:-1]]
    return ruled + [
        ThresholdPolicy(learned, rule="learned"),
        ThresholdPolicy([None, learned[1]], "learned"),
        PatiencePolicy(2, 3),
    ]


@pytest.mark.parametrize("batch_size", [1, 3, 7])
def test_dynamic_predictions_equal_the_policy_on_full_outputs(net, batch, batch_size):
    images, labels = batch
    outputs = tfee.collect_outputs(net, (images, labels))
    for policy in policies_spreading(outputs):
        expected = policy.exit_indices(outputs.logits, outputs.confidences)
        result = tfee.DynamicPredictor(net, policy).predict(
            images, batch_size=batch_size
        )
        np.testing.assert_array_equal(result.exit_indices, expected)
        chosen = outputs.logits[expected, np.arange(len(images))]
        np.testing.assert_array_equal(result.predictions, np.argmax(chosen, -1))
        np.testing.assert_allclose(result.logits, chosen, rtol=1e-4, atol=1e-5)
    assert len(np.unique(expected)) > 1 or policy.kind == "patience"


@pytest.mark.parametrize("rule", ["max_softmax", "entropy", "margin"])
def test_a_score_equal_to_its_threshold_leaves_at_batch_one(net, batch, rule):
    image = batch[0][:1]
    first = tfee.DynamicPredictor(net, ThresholdPolicy([0.0, 0.0], rule))
    logits = first.predict(image, batch_size=1).logits
    score = float(tfee.rules.scores(logits, rule)[0])
    for threshold, exit_index in ((score, 0), (np.nextafter(score, 2.0), 2)):
        policy = ThresholdPolicy([min(threshold, 1.0), 1.0], rule)
        result = tfee.DynamicPredictor(net, policy).predict(image, 1)
        assert result.exit_indices.tolist() == [exit_index]


def test_non_finite_outputs_never_leave_early_at_batch_one(net, batch):
    for layer in net.layers:
        if layer.name.startswith("exit_1"):
            layer.set_weights([np.full_like(w, np.nan) for w in layer.get_weights()])
    for rule in ("max_softmax", "learned"):
        policy = ThresholdPolicy([0.0, 0.0], rule)
        result = tfee.DynamicPredictor(net, policy).predict(batch[0], 1)
        assert result.exit_indices.tolist() == [1] * len(batch[0])


def test_a_layer_xla_cannot_compile_still_runs_at_batch_one():
    def host_identity(x):
        copied = tfee.tf.numpy_function(lambda a: a, [x], "float32", stateful=False)
        return tfee.tf.ensure_shape(copied, [None, 8, 8, 4])

    inputs = tfee.keras.Input((8, 8, 1))
    x = tfee.keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = tfee.keras.layers.Lambda(host_identity)(x)  # runs in Python: no XLA
    x = tfee.keras.layers.ReLU(name="block1_out")(x)
    x = tfee.keras.layers.GlobalAveragePooling2D()(x)
    backbone = tfee.keras.Model(inputs, tfee.keras.layers.Dense(3, name="logits")(x))
    net = tfee.attach_exits(backbone, ["block1_out"])
    images = np.random.default_rng(0).random((6, 8, 8, 1), dtype="float32")
    outputs = tfee.collect_outputs(net, (images, np.zeros(6, "int32")))
    scores = np.sort(tfee.rules.scores(outputs.logits[0], "max_softmax"))
    policy = ThresholdPolicy([float(scores[2] + scores[3]) / 2])
    result = tfee.DynamicPredictor(net, policy).predict(images, 1)
    np.testing.assert_array_equal(
        result.exit_indices, policy.exit_indices(outputs.logits)
    )
    assert 0 < np.sum(result.exit_indices == 0) < len(images)


def test_the_policy_is_fixed_at_construction(net):
    predictor = tfee.DynamicPredictor(net, ThresholdPolicy([0.5, 0.5]))
    with pytest.raises(AttributeError):
        predictor.policy = ThresholdPolicy([0.1, 0.1], "entropy")


def test_dynamic_predictor_reads_datasets_of_image_label_batches(net, batch):
    images, labels = batch
    policy = ThresholdPolicy([0.4, 0.4])
    dataset = tfee.tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
    predictor = tfee.DynamicPredictor(net, policy)
    from_dataset = predictor.predict(dataset)
    from_arrays = predictor.predict(images, batch_size=4)
    np.testing.assert_array_equal(from_dataset.exit_indices, from_arrays.exit_indices)


def test_a_policy_for_another_network_or_bad_input_raises(net, tiny_resnet):
    with pytest.raises(ValueError, match="policy is for 2 exits but the network has 3"):
        tfee.DynamicPredictor(net, ThresholdPolicy([0.5]))
    with pytest.raises(TypeError, match="`policy` must be a tfee policy"):
        tfee.DynamicPredictor(net, {"thresholds": [0.5, 0.5]})
    with pytest.raises(ValueError, match="not a tfee early-exit network"):
        tfee.DynamicPredictor(tiny_resnet, ThresholdPolicy([0.5]))
    predictor = tfee.DynamicPredictor(net, ThresholdPolicy([0.5, 0.5]))
    with pytest.raises(ValueError, match="empty"):
        predictor.predict(np.zeros((0, 16, 16, 3), "float32"))


def test_non_finite_images_answer_alike_at_every_batch_size_and_warn(network, images):
    """Issue 16: NaN or inf images once left at other exits at batch 1 than 8."""
    bad = images[:8].copy()
    bad[2, 0, 0, 0], bad[5, 1, 1, 0] = np.nan, np.inf
    predictor = tfee.DynamicPredictor(network, tfee.ThresholdPolicy([0.5]))
    with pytest.warns(UserWarning, match=r"2 of 8 images hold NaN or infinite"):
        together = predictor.predict(bad, batch_size=8)
    with pytest.warns(UserWarning, match="NaN or infinite"):
        alone = predictor.predict(bad, batch_size=1)
    np.testing.assert_array_equal(together.predictions, alone.predictions)
    np.testing.assert_array_equal(together.exit_indices, alone.exit_indices)
    assert together.predictions[2] == together.predictions[5] == -1
    assert together.exit_indices[2] == together.exit_indices[5] == 1


@pytest.mark.parametrize(
    "images,received",
    [
        (np.full((2, 16, 16, 3), 200, np.uint8), "dtype=uint8"),  # raw pixels
        (np.zeros((2, 8, 8, 3), np.float32), r"shape=\(2, 8, 8, 3\)"),
    ],
)
def test_the_predictor_checks_its_input_as_every_runtime_does(net, images, received):
    # Issue 31, item 5: uint8 0-255 images ran (everything left at exit 1)
    # and a wrong shape surfaced as a tf.function binding TypeError.
    predictor = tfee.DynamicPredictor(net, ThresholdPolicy([0.5, 0.5]))
    for call in (predictor.predict, predictor.predict_batch):
        with pytest.raises(
            ValueError, match=r"must be at least one float image.*" + received
        ):
            call(images)
