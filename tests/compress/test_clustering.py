"""Section-wise clustering (ESCEPE), compression ratio and their errors."""

import numpy as np
import pytest

import tfee
import tfee.compress
from tests.compress import _tiny
from tfee import keras


def _distinct(layer, name):
    return len(np.unique(getattr(tfee.cost.unwrap(layer), name).numpy()))


def test_each_section_gets_its_own_number_of_clusters():
    wrapped = tfee.compress.cluster_weights(
        _tiny.network(with_confidence=True), {1: 4, 2: 2}, init="linear"
    )
    small = tfee.compress.strip(wrapped)
    assert _distinct(small.get_layer("block1_conv"), "kernel") <= 4
    assert _distinct(small.get_layer("exit_1_head"), "kernel") <= 4
    assert _distinct(small.get_layer("block2_conv"), "kernel") <= 2
    assert _distinct(small.get_layer("logits"), "kernel") <= 2
    # Non-weight layers pass through unwrapped.
    assert type(wrapped.get_layer("block1_out")).__name__ == "ReLU"
    assert type(wrapped.get_layer("block1_bn")).__name__ == "BatchNormalization"


def test_staged_clustering_with_distillation_keeps_the_cluster_counts():
    net = _tiny.network()
    with _tiny.eagerly():
        clustered = tfee.compress.cluster(
            net, _tiny.dataset(), {1: 4, 2: 4}, init="linear", verbose=0
        )
    assert isinstance(clustered, keras.Model)
    assert tfee.compress.clustering_stages(net, {1: 4, 2: 4}) == ((1,), (2,))
    # BN was folded into the convolutions before clustering (the default).
    assert type(clustered.get_layer("block1_bn")).__name__ == "Activation"
    for name in ("block1_conv", "block2_conv", "logits"):
        assert _distinct(clustered.get_layer(name), "kernel") <= 4


@pytest.mark.parametrize("staged, stages", [(True, ((1,), (2,))), (False, ((1, 2),))])
def test_one_count_clusters_every_section_in_one_stage_each_when_staged(
    staged, stages, capsys
):
    with _tiny.eagerly():
        clustered = tfee.compress.cluster(
            _tiny.network(),
            _tiny.dataset(),
            3,
            staged=staged,
            distill=False,
            init="linear",
            verbose=2,
        )
    assert tfee.compress.clustering_stages(_tiny.network(), 3, staged) == stages
    # verbose=2 prints one "<time>/epoch" line per epoch; one epoch per stage.
    assert capsys.readouterr().out.count("/epoch") == len(stages)
    for name in ("block1_conv", "exit_1_head", "block2_conv", "logits"):
        assert _distinct(clustered.get_layer(name), "kernel") <= 3, name


def test_preserve_sparsity_keeps_pruned_weights_at_zero_in_every_stage(
    global_pruning,
):
    pruned = global_pruning[2]
    names = ("block1_conv", "exit_1_head", "block2_conv", "logits")
    zeros = {n: pruned.get_layer(n).kernel.numpy() == 0 for n in names}
    with _tiny.eagerly():
        clustered = tfee.compress.cluster(
            pruned,
            _tiny.dataset(),
            {1: 4, 2: 4},
            distill=False,
            init="linear",
            preserve_sparsity=True,
            optimizer=keras.optimizers.Adam(1e-2),
            verbose=0,
        )
    # Section 2 is clustered in stage 2, after stage 1 retrained it.
    for name in names:
        kernel = clustered.get_layer(name).kernel.numpy()
        assert zeros[name].any(), name
        assert np.all(kernel[zeros[name]] == 0), name
        assert len(np.unique(kernel)) <= 4, name


def test_cluster_continues_from_prune_and_both_return_keras_models():
    net, data = _tiny.network(), _tiny.dataset()
    with _tiny.eagerly():
        small = tfee.compress.cluster(
            tfee.compress.prune(net, data, 0.5, epochs=1, verbose=0),
            data,
            4,
            epochs=1,
            distill=False,
            init="linear",
            preserve_sparsity=True,
            verbose=0,
        )
    assert isinstance(small, keras.Model)
    assert small.output_names == net.output_names
    kernel = small.get_layer("block2_conv").kernel.numpy()
    assert np.mean(kernel == 0) > 0.3
    assert len(np.unique(kernel)) <= 4
    assert tfee.compress.sparsity_report(small).overall > 0.3


def test_clustering_stages_reject_what_cluster_rejects():
    with pytest.raises(
        ValueError, match=r"clustering_stages: unknown section keys \[3\]"
    ):
        tfee.compress.clustering_stages(_tiny.network(), {1: 4, 3: 4})


def test_fewer_than_two_clusters_are_rejected():
    with pytest.raises(ValueError, match=r"`clusters\[2\]` must be an integer >= 2"):
        tfee.compress.cluster_weights(_tiny.network(), {1: 8, 2: 1})


def test_a_layer_with_fewer_weights_than_clusters_gets_as_many_and_a_warning():
    """The README's {1: 32, ...} on a head whose confidence kernel holds 16
    weights raised; the kernel already holds at most 16 values."""
    with pytest.warns(UserWarning, match="'block1_conv' has only 36 weights.*36 clus"):
        wrapped = tfee.compress.cluster_weights(_tiny.network(), {1: 64}, init="linear")
    clustered = tfee.compress.strip(wrapped)
    kernel = clustered.get_layer("block1_conv").kernel.numpy()
    assert len(np.unique(kernel)) <= 36


def test_unknown_sections_are_rejected():
    with pytest.raises(ValueError, match=r"unknown section keys \[3\]"):
        tfee.compress.cluster_weights(_tiny.network(), {1: 4, 3: 4})


def test_layers_tfmot_cannot_cluster_are_named():
    with pytest.raises(
        ValueError, match=r"tfmot cannot cluster the layers \['odd_scale'\]"
    ):
        tfee.compress.cluster_weights(_tiny.network_with_custom_layer(), 4)


def test_cluster_counts_parse_from_command_line_text():
    assert tfee.compress.parse_clusters("1:32, 2:16,3:8") == {1: 32, 2: 16, 3: 8}
    assert tfee.compress.parse_clusters("backbone:16,heads:8") == {
        "backbone": 16,
        "heads": 8,
    }
    assert tfee.compress.parse_clusters("16") == 16


@pytest.mark.parametrize("text", ["", "1:a", "one:4", "1=4"])
def test_unreadable_cluster_text_is_rejected(text):
    with pytest.raises(ValueError, match="`text` must be a count such as '16'"):
        tfee.compress.parse_clusters(text)


def test_frozen_layers_left_uncompressed_are_named_in_a_warning():
    """A PTEENet network (frozen backbone) compressed section by section kept
    its backbone unclustered without a word."""
    net = _tiny.network(freeze_backbone=True)
    with pytest.warns(UserWarning, match=r"frozen layers .*block1_conv.* uncompressed"):
        tfee.compress.cluster(net, _tiny.dataset(), {1: 4}, epochs=0, verbose=0)
    with pytest.warns(UserWarning, match=r"frozen layers .*block1_conv.* uncompressed"):
        tfee.compress.pruning_plan(net, 0.5)


def test_the_report_counts_the_values_of_frozen_unclustered_kernels():
    net = _tiny.network(freeze_backbone=True)
    with pytest.warns(UserWarning, match="frozen layers"):
        clustered = tfee.compress.cluster(
            net, _tiny.dataset(), {1: 4}, epochs=0, verbose=0
        )
    report = tfee.export.compression_report(clustered)
    # Heads hold 4 values; the frozen backbone's kernels keep all of theirs.
    assert all(section["clusters"] > 4 for section in report.sections)


def test_clustering_again_leaves_heads_that_already_hold_the_count_alone():
    once = tfee.compress.strip(
        tfee.compress.cluster_weights(_tiny.network(), {1: 4}, init="linear")
    )
    again = tfee.compress.cluster_weights(once, {1: 4}, init="linear")
    # The head's kernels hold 4 values already: nothing for tfmot to place.
    assert type(again.get_layer("exit_1_head")).__name__ != "ClusterWeights"
    kernel = tfee.compress.strip(again).get_layer("exit_1_head").kernel.numpy()
    np.testing.assert_array_equal(kernel, once.get_layer("exit_1_head").kernel.numpy())


@pytest.mark.parametrize("argument", ["preserve_sparsity", "cluster_per_channel"])
def test_flags_that_are_not_bools_are_refused(argument):
    # Issue 31, item 10: preserve_sparsity="no" behaved as True.
    with pytest.raises(TypeError, match=rf"`{argument}` must be True or False"):
        tfee.compress.cluster(_tiny.network(), _tiny.dataset(), 4, **{argument: "no"})


def test_section_numbers_given_as_strings_are_named_as_such():
    # Issue 31: {"1": 8} switched to layer scope ("unknown layer names ['1']").
    with pytest.raises(ValueError, match=r"keys \['1'\] are strings; sections are"):
        tfee.compress.cluster_weights(_tiny.network(), {"1": 8, 2: 4})


def test_a_clustered_network_loaded_from_keras_saves_and_loads_as_h5(tmp_path):
    # Issue 31: its loaded weights were all named "kernel", so .h5 saving
    # failed with "name already exists".
    clustered = tfee.compress.cluster_weights(_tiny.network(with_confidence=True), 4)
    clustered.compile("adam", loss=tfee.losses.joint(clustered))
    clustered.fit(_tiny.dataset(), epochs=1, verbose=0)  # optimizer slots too
    clustered.save(tmp_path / "clustered.keras")
    tfee.load_model(tmp_path / "clustered.keras").save(tmp_path / "clustered.h5")
    loaded = tfee.load_model(tmp_path / "clustered.h5")
    images = next(iter(_tiny.dataset()))[0]
    for ours, theirs in zip(clustered(images), loaded(images)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)
