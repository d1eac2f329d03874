"""Representative data chained through the stages for int8 calibration.

Full-integer conversion calibrates every signature. Stage k > 1 is fed the
features that the float stage k-1 produces on the same images, so the
calibrated range of features_(k-1) at the output of stage k-1 and at the input
of stage k are the same numbers, and their int8 scales agree.
"""

import numpy as np

from tfee import naming
from tfee import stages as stages_lib

__all__ = []


def stage_inputs(network, calibration):
    """[stage 1 input, stage 2 input, ...] produced by the float stages."""
    inputs = [calibration]
    for model in stages_lib.stage_models(network)[:-1]:
        inputs.append(
            np.asarray(model.predict(inputs[-1], verbose=0)["features"], np.float32)
        )
    return inputs


def generator(names, inputs):
    """A representative dataset yielding (signature_key, inputs) pairs."""

    def representative_dataset():
        for i in range(len(inputs[0])):
            for name in names:
                kind, k = name.split("_")
                k = int(k)
                if kind == "exit":
                    yield name, {"image": inputs[0][i : i + 1]}
                else:
                    key = naming.stage_input_name(k)
                    yield name, {key: inputs[k - 1][i : i + 1]}

    return representative_dataset


def single_generator(data):
    """A representative dataset for a one-signature model."""

    def representative_dataset():
        for i in range(len(data)):
            yield [data[i : i + 1]]

    return representative_dataset
