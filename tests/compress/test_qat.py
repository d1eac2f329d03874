"""Quantization-aware training that keeps clusters and zeros (tfmot PCQAT)."""

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

import tfee
import tfee.compress
from tests.compress import _tiny
from tfee import keras


def _kernels(model):
    return {
        w.name.split("/")[0]: w.numpy()
        for w in model.weights
        if w.name.endswith("/kernel:0")
    }


def _most_distinct(kernel):
    """Distinct values per output channel for conv kernels (tfmot keeps
    Conv2D centroids per channel during QAT), per tensor otherwise."""
    if kernel.ndim == 4:
        return max(len(np.unique(kernel[..., c])) for c in range(kernel.shape[-1]))
    return len(np.unique(kernel))


@pytest.fixture(scope="module")
def trained_qat(global_pruning):
    """(clustered input, QAT model after one epoch of training)."""
    clustered = tfee.compress.strip(
        tfee.compress.cluster_weights(
            global_pruning[2], 4, init="linear", preserve_sparsity=True
        )
    )
    with _tiny.eagerly():
        qat = tfee.compress.quantization_aware_training(
            clustered, _tiny.dataset(), optimizer=keras.optimizers.Adam(1e-3), verbose=0
        )
    return clustered, qat


def test_qat_wraps_heads_and_keeps_the_exit_names(trained_qat):
    clustered, qat = trained_qat
    assert qat.output_names == clustered.output_names
    head = qat.get_layer("quant_exit_1_head")
    assert isinstance(head.quantize_config, tfee.compress.ExitHeadQuantizeConfig)


def test_clusters_and_zeros_survive_qat_on_every_kernel(trained_qat):
    clustered, qat = trained_qat
    before, after = _kernels(clustered), _kernels(qat)
    assert (
        set(before)
        == set(after)
        == {
            "block1_conv",
            "block2_conv",
            "exit_1_head",
            "logits",
        }
    )
    changed = False
    for name, kernel in after.items():
        assert _most_distinct(kernel) <= 4, name
        np.testing.assert_array_equal(kernel == 0, before[name] == 0, err_msg=name)
        changed |= not np.array_equal(kernel, before[name])
    assert changed  # Training moved the centroids.


def test_qat_network_converts_to_an_int8_tflite_and_keeps_its_accuracy_api(
    trained_qat,
):
    flatbuffer = tfee.export.tflite_bytes(
        trained_qat[1], quantize="int8", representative=_tiny.dataset()
    )
    interpreter = Interpreter(model_content=flatbuffer)
    assert sorted(interpreter.get_signature_list()) == [
        "exit_1",
        "exit_2",
        "stage_1",
        "stage_2",
    ]
    types = {d["dtype"] for d in interpreter.get_tensor_details()}
    assert np.int8 in types
    accuracy = tfee.exit_accuracy(trained_qat[1], _tiny.dataset())
    assert set(accuracy.exits) == {"exit_1", "exit_2"}


def test_qat_rejects_a_network_without_exits(tiny_cnn):
    with pytest.raises(ValueError, match="not a tfee early-exit network"):
        tfee.compress.quantize_preserving_clusters(tiny_cnn)


def test_qat_rejects_a_bad_epoch_count():
    with pytest.raises(ValueError, match="`epochs` must be a positive integer"):
        tfee.compress.quantization_aware_training(
            _tiny.network(), _tiny.dataset(), epochs=0
        )


def test_a_qat_network_is_refused_by_every_compression_step(trained_qat):
    # Issue 31: tfmot answered with advice to implement PrunableLayer.
    _, qat = trained_qat
    data = _tiny.dataset()
    steps = {
        "prune": lambda: tfee.compress.prune(qat, data, 0.5, epochs=1, verbose=0),
        "pruning_plan": lambda: tfee.compress.pruning_plan(qat, 0.5),
        "cluster": lambda: tfee.compress.cluster(qat, data, 4, epochs=1, verbose=0),
        "cluster_weights": lambda: tfee.compress.cluster_weights(qat, 4),
        "quantization_aware_training": lambda: (
            tfee.compress.quantization_aware_training(qat, data, verbose=0)
        ),
    }
    for name, step in steps.items():
        with pytest.raises(ValueError, match="Prune and cluster before QAT"):
            step()
            pytest.fail(f"{name} accepted a QAT network")


def test_compression_report_refuses_a_qat_network_instead_of_counting_biases(
    trained_qat,
):
    # Its kernels live in tfmot's wrappers: the report counted 66 weights.
    import tfee.export

    _, qat = trained_qat
    with pytest.raises(ValueError, match="quantization-aware"):
        tfee.export.compression_report(qat)


def test_load_model_names_a_qat_file_instead_of_failing_deep_in_keras(
    trained_qat, tmp_path
):
    # tfmot cannot rebuild its quantize wrappers from a file ("expected 6
    # variables, but received 10" from Keras before).
    _, qat = trained_qat
    qat.save(tmp_path / "qat.keras")
    with pytest.raises(ValueError, match="holds a quantization-aware"):
        tfee.load_model(tmp_path / "qat.keras")
