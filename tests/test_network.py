"""attach_exits, detach_exits and reading exits and sections back from the graph."""

import warnings

import numpy as np
import pytest

import tfee
from tfee import keras
from tfee import tf


def _weights_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


def test_exits_are_named_in_depth_order_and_the_last_is_the_backbone(tiny_cnn):
    net = tfee.attach_exits(tiny_cnn, ["block2_out", "block1_out"], head="linear")
    assert net.output_names == ["exit_1", "exit_2", "exit_3"]
    infos = tfee.exits(net)
    assert [i.attach_layer for i in infos] == ["block1_out", "block2_out", "logits"]
    assert [i.head_type for i in infos] == ["linear", "linear", "backbone"]
    assert infos[-1].head is None
    macs = [i.cumulative_macs for i in infos]
    assert macs == sorted(macs) and len(set(macs)) == 3


def test_attaching_leaves_the_input_model_unchanged(tiny_cnn, images):
    before_weights = [w.copy() for w in tiny_cnn.get_weights()]
    layers_before = [layer.name for layer in tiny_cnn.layers]
    before_prediction = tiny_cnn.predict(images, verbose=0)
    net = tfee.attach_exits(tiny_cnn, ["block1_out"])
    net.compile("sgd", tfee.losses.joint(net))
    net.fit(images, [np.zeros(6)] * 2, epochs=1, verbose=0)
    assert [layer.name for layer in tiny_cnn.layers] == layers_before
    assert tiny_cnn.output_names == ["logits"]
    assert all(
        np.array_equal(a, b) for a, b in zip(before_weights, tiny_cnn.get_weights())
    )
    np.testing.assert_array_equal(
        before_prediction, tiny_cnn.predict(images, verbose=0)
    )


def test_the_deepest_exit_reproduces_the_backbone(tiny_resnet):
    x = np.random.default_rng(0).random((4, 16, 16, 3), dtype="float32")
    net = tfee.attach_exits(tiny_resnet, ["stage1_block1_out"])
    np.testing.assert_allclose(
        net.predict(x, verbose=0)[-1], tiny_resnet.predict(x, verbose=0), atol=1e-5
    )


def test_a_softmax_classifier_becomes_logits(tiny_cnn, images):
    probabilities = keras.layers.Softmax(name="probabilities")(tiny_cnn.output)
    model = keras.Model(tiny_cnn.input, probabilities)
    net = tfee.attach_exits(model, ["block1_out"])
    logits = net.predict(images, verbose=0)[-1]
    expected = model.predict(images, verbose=0)
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), expected, atol=1e-6)


def test_learned_confidences_follow_the_exits(tiny_cnn, images):
    net = tfee.attach_exits(
        tiny_cnn, ["block1_out", "block2_out"], head="conv", with_confidence=True
    )
    assert net.output_names == [
        "exit_1",
        "exit_2",
        "exit_3",
        "confidence_1",
        "confidence_2",
    ]
    assert [i.confidence for i in tfee.exits(net)] == [
        "confidence_1",
        "confidence_2",
        None,
    ]
    outputs = net.predict(images, verbose=0)
    assert outputs[3].shape == (6, 1)


def test_freeze_backbone_leaves_only_heads_trainable(tiny_cnn):
    net = tfee.attach_exits(tiny_cnn, ["block1_out"], freeze_backbone=True)
    trainable = {w.name.split("/")[0] for w in net.trainable_weights}
    assert trainable == {"exit_1_head"}


def test_sections_partition_the_network(tiny_resnet):
    net = tfee.attach_exits(tiny_resnet, tfee.FlopsFractions([0.3, 0.6]), head="sdn")
    sections = tfee.sections(net)
    assert [s.exit_name for s in sections] == ["exit_1", "exit_2", "exit_3"]
    names = [n for s in sections for n in s.layers]
    layer_names = {
        layer.name
        for layer in net.layers
        if not isinstance(layer, keras.layers.InputLayer)
    }
    assert len(names) == len(set(names)) and set(names) == layer_names
    assert sections[0].head_layers == ("exit_1_head", "exit_1")
    assert sections[-1].backbone_layers[-1] == "logits"


def test_exits_and_sections_survive_save_and_load(tiny_resnet, tmp_path):
    net = tfee.attach_exits(
        tiny_resnet, tfee.FlopsFractions([0.3, 0.6]), head="sdn", with_confidence=True
    )
    path = str(tmp_path / "net.keras")
    net.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert tfee.exits(loaded) == tfee.exits(net)
    assert tfee.sections(loaded) == tfee.sections(net)


def test_detach_exits_returns_an_independent_backbone(tiny_cnn, images):
    net = tfee.attach_exits(tiny_cnn, ["block1_out"])
    backbone = tfee.detach_exits(net)
    assert backbone.output_names == ["logits"]
    np.testing.assert_allclose(
        backbone.predict(images, verbose=0),
        net.predict(images, verbose=0)[-1],
        atol=1e-6,
    )
    backbone.layers[1].kernel.assign(np.zeros(backbone.layers[1].kernel.shape))
    assert not _weights_equal(backbone, tfee.detach_exits(net))


def test_flops_fractions_place_sdn_exits_on_resnet20():
    net = tfee.attach_exits(
        tfee.backbones.resnet_cifar(20),
        tfee.FlopsFractions([0.15, 0.3, 0.45, 0.6, 0.75, 0.9]),
    )
    report = tfee.cost.analyze(net)
    fractions = [e.fraction_of_full for e in report.exits[:-1]]
    for target, actual in zip([0.15, 0.3, 0.45, 0.6, 0.75, 0.9], fractions):
        assert abs(target - actual) < 0.07
    assert [e.attach_layer for e in tfee.exits(net)][:2] == [
        "stage1_block1_out",
        "stage1_block2_out",
    ]


@pytest.mark.parametrize("rule", ["fine", "pareto", "linear", "golden"])
def test_pteenet_rules_place_exits_where_cost_reaches_each_fraction(rule, tiny_resnet):
    placement = tfee.PTEENet(rule, num_exits=2)
    assert all(0 < f < 1 for f in placement.fractions)
    net = tfee.attach_exits(tiny_resnet, placement, head="conv", with_confidence=True)
    assert len(tfee.exits(net)) == 3


def test_pteenet_rule_fractions_follow_the_paper():
    assert tfee.PTEENet("pareto", 3).fractions == pytest.approx([0.2, 0.36, 0.488])
    assert tfee.PTEENet("linear", 3).fractions == pytest.approx([0.25, 0.5, 0.75])
    assert tfee.PTEENet("fine", 2).fractions == pytest.approx([0.05, 0.0975])
    phi = (1 + 5**0.5) / 2
    assert tfee.PTEENet("golden", 2).fractions == pytest.approx([phi**-2, phi**-1])


def test_keras_applications_model_accepts_exits():
    model = keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), classes=4, alpha=0.35
    )
    net = tfee.attach_exits(model, tfee.FlopsFractions([0.3, 0.6]), head="linear")
    outputs = net.predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0)
    assert [o.shape for o in outputs] == [(1, 4)] * 3


def test_branched_graph_accepts_exits_after_the_merge_only():
    inputs = keras.Input((8, 8, 3))
    stem = keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    left = keras.layers.Conv2D(4, 1, name="left")(stem)
    right = keras.layers.Conv2D(4, 3, padding="same", name="right")(stem)
    merged = keras.layers.Concatenate(name="merge")([left, right])
    x = keras.layers.GlobalAveragePooling2D()(merged)
    model = keras.Model(inputs, keras.layers.Dense(2, name="logits")(x))
    net = tfee.attach_exits(model, ["stem", "merge"])
    assert [e.attach_layer for e in tfee.exits(net)] == ["stem", "merge", "logits"]
    with pytest.raises(
        ValueError, match=r"'left' in `placement` is not on the single path"
    ):
        tfee.attach_exits(model, ["left"])


def test_unknown_layer_name_raises_and_lists_candidates(tiny_cnn):
    with pytest.raises(ValueError, match=r"unknown layer 'block9_out'.*'block1_out'"):
        tfee.attach_exits(tiny_cnn, ["block9_out"])


def test_layer_inside_a_residual_block_is_rejected(tiny_resnet):
    with pytest.raises(
        ValueError,
        match=r"'stage1_block1_1_relu' in `placement` is not on the single path.*skip",
    ):
        tfee.attach_exits(tiny_resnet, ["stage1_block1_1_relu"])


def test_layer_after_global_pooling_is_rejected(tiny_cnn):
    with pytest.raises(
        ValueError, match=r"'pool' in `placement` outputs shape .*not a 4-D feature map"
    ):
        tfee.attach_exits(tiny_cnn, ["pool"])


@pytest.mark.parametrize(
    "fractions, match",
    [
        ([0.2, 1.0], r"in \(0, 1\). Received: 1.0"),
        ([0.0], r"Received: 0.0"),
        ([0.5, 0.3], "strictly increasing"),
        ([], "non-empty"),
    ],
)
def test_invalid_fractions_raise_clear_errors(fractions, match):
    with pytest.raises(ValueError, match=match):
        tfee.FlopsFractions(fractions)


def test_more_fractions_than_layers_raises(tiny_cnn):
    with pytest.raises(ValueError, match=r"asks for 3 exits but the model has only 2"):
        tfee.attach_exits(tiny_cnn, tfee.FlopsFractions([0.2, 0.4, 0.6]))


def test_reach_matching_raises_when_no_layer_reaches_a_fraction(tiny_cnn):
    with pytest.raises(ValueError, match=r"no free layer reaches it"):
        tfee.attach_exits(tiny_cnn, tfee.FlopsFractions([0.995], match="reach"))


def test_unknown_head_type_raises_a_clear_error(tiny_cnn):
    with pytest.raises(
        ValueError, match=r"expected one of \['conv', 'linear', 'sdn'\].*head='mlp'"
    ):
        tfee.attach_exits(tiny_cnn, ["block1_out"], head="mlp")


def test_custom_head_callable_is_used(tiny_cnn):
    def head(num_classes, with_confidence, name):
        return tfee.layers.ConvHead(
            num_classes, filters=2, with_confidence=with_confidence, name=name
        )

    net = tfee.attach_exits(tiny_cnn, ["block1_out"], head=head)
    assert net.get_layer("exit_1_head").get_config()["filters"] == 2


def test_attaching_twice_is_refused(tiny_cnn):
    net = tfee.attach_exits(tiny_cnn, ["block1_out"])
    with pytest.raises(ValueError, match="already has exits"):
        tfee.attach_exits(net, ["block2_out"])


def test_introspecting_a_plain_model_raises(tiny_cnn):
    with pytest.raises(ValueError, match="not a tfee early-exit network"):
        tfee.sections(tiny_cnn)


def test_invalid_placement_type_raises(tiny_cnn):
    with pytest.raises(TypeError, match="Received: placement=0.5"):
        tfee.attach_exits(tiny_cnn, 0.5)


def test_exits_and_sections_are_read_through_tfmot_wrappers(tiny_cnn):
    net = tfee.attach_exits(tiny_cnn, ["block1_out"], head="sdn")
    pruned = tfee.tfmot.sparsity.keras.prune_low_magnitude(net)
    assert pruned.output_names[0].startswith("prune_low_magnitude")
    assert tfee.is_early_exit(pruned)
    assert [e.attach_layer.endswith("block1_out") for e in tfee.exits(pruned)][0]
    assert len(tfee.sections(pruned)) == 2


def test_an_exit_that_costs_more_than_the_backbone_warns():
    """Issue 16: conv heads on wide early features made leaving at exit 1
    cost 2.7x the backbone without a word."""
    backbone = tfee.backbones.small_cnn(
        num_classes=10, input_shape=(32, 32, 3), widths=(8, 16)
    )
    with pytest.warns(UserWarning, match=r"leaving at exit_1 \(2\.\d+x\) costs"):
        tfee.attach_exits(backbone, ["block1_out"], head="conv")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*never save compute.*")
        tfee.attach_exits(backbone, ["block1_out"], head="linear")


def test_exits_almost_at_the_same_depth_warn():
    """Issue 16: PTEENet placement put exits 0.5% of the MACs apart."""
    image = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(image)
    x = keras.layers.DepthwiseConv2D(1, name="cheap")(x)  # 0.2% of the MACs.
    x = keras.layers.Conv2D(64, 3, name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    backbone = keras.Model(image, keras.layers.Dense(4)(x))
    with pytest.warns(UserWarning, match=r"after conv1 and cheap \(0\.2\d%\)"):
        tfee.attach_exits(backbone, ["conv1", "cheap"], head="linear")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*MACs apart.*")
        tfee.attach_exits(backbone, ["cheap", "conv2"], head="linear")


@pytest.mark.parametrize(
    "ending", [keras.layers.GlobalAveragePooling2D, keras.layers.Flatten]
)
def test_a_feature_extractor_without_a_classifier_is_refused_by_name(ending):
    # Issue 31, item 4: its feature channels were taken for classes.
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, name="block1_out")(inputs)
    x = keras.layers.Conv2D(16, 3, name="features")(x)
    model = keras.Model(inputs, ending(name="pooled")(x))
    with pytest.raises(ValueError, match=r"output comes from pooled after 'features'"):
        tfee.attach_exits(model, ["block1_out"])


def test_a_1x1_convolution_to_classes_before_pooling_counts_as_a_classifier():
    # SqueezeNet's head: conv 1x1 to the classes, then global average pooling.
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, name="block1_out")(inputs)
    x = keras.layers.Conv2D(10, 1, name="classes")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    network = tfee.attach_exits(model, ["block1_out"], head="linear")
    assert len(tfee.exits(network)) == 2
