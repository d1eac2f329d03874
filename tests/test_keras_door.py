"""Keras 3 objects are rejected with a TypeError that points to tfee.from_keras3."""

import keras as keras3
import numpy as np
import pytest

import tfee
from tfee import keras


@pytest.fixture
def keras3_model():
    inputs = keras3.Input((8, 8, 1))
    x = keras3.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras3.layers.GlobalAveragePooling2D()(x)
    return keras3.Model(inputs, keras3.layers.Dense(3)(x))


def test_attach_exits_rejects_a_keras3_model(keras3_model):
    with pytest.raises(TypeError, match=r"Keras 3 object.*tfee.from_keras3\(model\)"):
        tfee.attach_exits(keras3_model, ["conv"])


def test_introspection_rejects_a_keras3_model(keras3_model):
    with pytest.raises(TypeError, match="Keras 3 object"):
        tfee.exits(keras3_model)


def test_attach_exits_rejects_a_subclassed_model():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, inputs):
            return self.dense(inputs)

    model = Subclassed()
    model(np.zeros((1, 4), "float32"))
    with pytest.raises(TypeError, match="subclassed models have no graph"):
        tfee.attach_exits(model, ["dense"])


def test_attach_exits_rejects_a_layer_and_other_objects():
    with pytest.raises(TypeError, match="Received: model=Dense"):
        tfee.attach_exits(keras.layers.Dense(3), ["x"])
    with pytest.raises(TypeError, match="Received: model=str"):
        tfee.attach_exits("resnet", ["x"])


def test_attach_exits_rejects_models_with_several_inputs_or_outputs():
    a, b = keras.Input((4,)), keras.Input((4,))
    two_inputs = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Add()([a, b])))
    with pytest.raises(
        ValueError, match=r"exactly one input and one output.*2 input\(s\)"
    ):
        tfee.attach_exits(two_inputs, ["add"])
    two_outputs = keras.Model(a, [keras.layers.Dense(2)(a), keras.layers.Dense(3)(a)])
    with pytest.raises(ValueError, match=r"2 output\(s\)"):
        tfee.attach_exits(two_outputs, ["dense"])
