import numpy as np
import pytest

import tfee
import tfee.inference
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
    scores = tfee.policy.confidence_scores(outputs.logits[:-1], "max_softmax")
    median = [float(np.median(s)) for s in scores]
    learned = [float(np.median(c)) for c in outputs.confidences[:-1]]
    return [
        ThresholdPolicy(median),
        ThresholdPolicy(learned, rule="learned"),
        PatiencePolicy(2, 3),
    ]


@pytest.mark.parametrize("batch_size", [1, 3, 7])
def test_dynamic_predictions_equal_the_policy_on_full_outputs(net, batch, batch_size):
    images, labels = batch
    outputs = tfee.policy.collect_outputs(net, (images, labels))
    for policy in policies_spreading(outputs):
        expected = policy.exit_indices(outputs.logits, outputs.confidences)
        result = tfee.inference.DynamicPredictor(net, policy).predict(
            images, batch_size=batch_size
        )
        np.testing.assert_array_equal(result.exit_indices, expected)
        chosen = outputs.logits[expected, np.arange(len(images))]
        np.testing.assert_array_equal(result.predictions, np.argmax(chosen, -1))
        np.testing.assert_allclose(result.logits, chosen, rtol=1e-4, atol=1e-5)
    assert len(np.unique(expected)) > 1 or policy.kind == "patience"


def test_dynamic_predictor_reads_datasets_of_image_label_batches(net, batch):
    images, labels = batch
    policy = ThresholdPolicy([0.4, 0.4])
    dataset = tfee.tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
    predictor = tfee.inference.DynamicPredictor(net, policy)
    from_dataset = predictor.predict(dataset)
    from_arrays = predictor.predict(images, batch_size=4)
    np.testing.assert_array_equal(from_dataset.exit_indices, from_arrays.exit_indices)


def test_a_policy_for_another_network_or_bad_input_raises(net, tiny_resnet):
    with pytest.raises(ValueError, match="policy is for 2 exits but the network has 3"):
        tfee.inference.DynamicPredictor(net, ThresholdPolicy([0.5]))
    with pytest.raises(TypeError, match="`policy` must be a tfee policy"):
        tfee.inference.DynamicPredictor(net, {"thresholds": [0.5, 0.5]})
    with pytest.raises(ValueError, match="not a tfee early-exit network"):
        tfee.inference.DynamicPredictor(tiny_resnet, ThresholdPolicy([0.5]))
    predictor = tfee.inference.DynamicPredictor(net, ThresholdPolicy([0.5, 0.5]))
    with pytest.raises(ValueError, match="empty"):
        predictor.predict(np.zeros((0, 16, 16, 3), "float32"))
