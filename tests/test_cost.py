"""MAC counting against hand counts and published figures."""

import numpy as np
import pytest

import tfee
from tfee import keras


def _hand_model():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=True, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    y = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.SeparableConv2D(6, 3, padding="same", name="separable")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Concatenate(name="concat")([x, x])
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="dense")(x))


def test_layer_macs_match_a_hand_count():
    per_layer = {
        "conv": 8 * 8 * 4 * 3 * 3 * 1,  # 2304
        "bn": 8 * 8 * 4,  # 256
        "relu": 0,
        "depthwise": 8 * 8 * 4 * 3 * 3,  # 2304
        "add": 8 * 8 * 4,  # 256
        "separable": 8 * 8 * 4 * 9 + 8 * 8 * 4 * 6,  # 2304 + 1536
        "pool": 4 * 4 * 6 * 4,  # 384
        "concat": 0,
        "gap": 4 * 4 * 12,  # 192
        "dense": 12 * 10,  # 120
    }
    model = _hand_model()
    for name, expected in per_layer.items():
        layer = model.get_layer(name)
        node = layer._inbound_nodes[0]
        assert (
            tfee.cost.layer_macs(layer, node.input_shapes, node.output_shapes)
            == expected
        ), name
    assert tfee.cost.model_macs(model) == sum(per_layer.values())


def test_resnet20_and_resnet56_match_published_figures():
    # He et al. / SDN: ResNet-20 about 41M MACs, ResNet-56 about 125M.
    assert tfee.cost.model_macs(tfee.backbones.resnet_cifar(20)) == pytest.approx(
        41e6, rel=0.02
    )
    assert tfee.cost.model_macs(tfee.backbones.resnet_cifar(56)) == pytest.approx(
        125e6, rel=0.02
    )


def test_sparse_macs_count_only_non_zero_weights():
    model = _hand_model()
    dense = model.get_layer("dense")
    kernel = dense.kernel.numpy()
    kernel[:6] = 0
    dense.kernel.assign(kernel)
    node = dense._inbound_nodes[0]
    assert (
        tfee.cost.layer_macs(dense, node.input_shapes, node.output_shapes, sparse=True)
        == 60
    )
    assert tfee.cost.model_macs(model, sparse=True) == tfee.cost.model_macs(model) - 60


def test_cumulative_exit_macs_include_every_head_on_the_way(tiny_cnn):
    net = tfee.attach_exits(tiny_cnn, ["block1_out", "block2_out"], head="linear")
    report = tfee.cost.analyze(net)
    backbone = [s.backbone_macs for s in report.sections]
    heads = [s.head_macs for s in report.sections]
    assert report.full_macs == tfee.cost.model_macs(tiny_cnn) == sum(backbone)
    assert heads[0] == 8 * 8 * 4 + 4 * 3  # pool + dense of a linear head
    for k, exit_cost in enumerate(report.exits):
        assert exit_cost.cumulative_macs == sum(backbone[: k + 1]) + sum(heads[: k + 1])
    assert report.exits[-1].fraction_of_full > 1.0  # heads cost something
    assert "exit_1" in report.table()


def test_section_parameters_and_bytes_add_up(tiny_cnn):
    net = tfee.attach_exits(tiny_cnn, ["block1_out"], head="sdn")
    report = tfee.cost.analyze(net)
    assert sum(s.parameters for s in report.sections) == net.count_params()
    assert sum(s.bytes for s in report.sections) == 4 * net.count_params()


def test_head_macs_respect_sparsity():
    head = tfee.layers.LinearHead(3)
    head(np.zeros((1, 4, 4, 8), "float32"))
    head.kernel.assign(np.zeros((8, 3)))
    assert head.macs((1, 4, 4, 8), sparse=True) == 4 * 4 * 8
    assert head.macs((1, 4, 4, 8)) == 4 * 4 * 8 + 24


def test_unknown_layer_with_weights_warns_and_counts_zero():
    class Scale(keras.layers.Layer):
        def build(self, shape):
            self.scale = self.add_weight(name="scale", shape=())

        def call(self, x):
            return x * self.scale

    inputs = keras.Input((4,))
    model = keras.Model(inputs, Scale(name="scale")(inputs))
    with pytest.warns(UserWarning, match="no MAC counter for layer type Scale"):
        assert tfee.cost.model_macs(model) == 0
    tfee.cost.register_macs(Scale, lambda layer, i, o, sparse: 4)
    assert tfee.cost.model_macs(model) == 4


def test_register_macs_rejects_non_layer_classes():
    with pytest.raises(TypeError, match="must be a tf_keras Layer subclass"):
        tfee.cost.register_macs(int, lambda *a: 0)


def test_a_counter_for_a_head_subclass_overrides_the_heads_own_count():
    class CheapHead(tfee.layers.LinearHead):
        pass

    inputs = keras.Input((4, 4, 8))
    model = keras.Model(inputs, CheapHead(3)(inputs))
    assert tfee.cost.model_macs(model) == 4 * 4 * 8 + 8 * 3
    tfee.cost.register_macs(CheapHead, lambda layer, i, o, sparse: 1)
    assert tfee.cost.model_macs(model) == 1
