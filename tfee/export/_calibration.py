"""Representative data chained through the stages for int8 calibration.

Full-integer conversion calibrates every signature. Stage k > 1 is fed what
the float stage k-1 hands on for the same images (features_(k-1), and exit
k-1's logits for a cascading head), so the calibrated range of each at the
output of stage k-1 and at the input of stage k are the same numbers, and
their int8 scales agree.
"""

import numpy as np

from tfee import naming
from tfee import stages as stages_lib

__all__ = []


def stage_inputs(structure, calibration):
    """[stage 1 inputs, stage 2 inputs, ...] produced by the float stages of
    a network (its `Structure`): per stage a {signature input name: array}
    dict."""
    models = stages_lib.stage_models(structure)
    inputs = [{naming.stage_input_name(1): calibration}]
    value = calibration
    for k, model in enumerate(models[:-1], start=1):
        outputs = model.predict(value, verbose=0)
        value = stages_lib.next_stage_input(models[k], outputs)
        arrays = value if isinstance(value, list) else [value]
        # The stage models' inputs are named as the signatures' are.
        inputs.append(
            {
                name: np.asarray(array, np.float32)
                for name, array in zip(models[k].input_names, arrays)
            }
        )
    return inputs


def generator(names, inputs):
    """A representative dataset yielding (signature_key, inputs) pairs."""
    images = inputs[0][naming.stage_input_name(1)]

    def representative_dataset():
        for i in range(len(images)):
            for name in names:
                kind, k = naming.parse_signature(name)
                if kind == naming.EXIT:
                    yield name, {naming.IMAGE: images[i : i + 1]}
                else:
                    yield name, {
                        key: values[i : i + 1] for key, values in inputs[k - 1].items()
                    }

    return representative_dataset


def single_generator(signature_key, inputs):
    """A representative dataset for a one-signature model: `inputs` is that
    signature's {input name: array}, from `stage_inputs`."""
    count = len(next(iter(inputs.values())))

    def representative_dataset():
        for i in range(count):
            yield signature_key, {
                key: values[i : i + 1] for key, values in inputs.items()
            }

    return representative_dataset
