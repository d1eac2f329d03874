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
from tfee._keras import tf

__all__ = []


# What `model.predict` batches by: chained in the same batches, the stages
# compute what predicting stage by stage did (bit for bit on the reference
# network, so its int8 files are unchanged).
_BATCH = 32


def stage_inputs(structure, calibration):
    """[stage 1 inputs, stage 2 inputs, ...] produced by the float stages of
    a network (its `Structure`): per stage a {signature input name: array}
    dict.

    The stages run chained in one traced function, batch by batch as
    `predict` would run each (one trace instead of K - 1 `predict` calls,
    each tracing its own)."""
    models = stages_lib.stage_models(structure)

    @tf.function
    def handed_on(images):
        value, result = images, []
        for k, model in enumerate(models[:-1], start=1):
            value = stages_lib.next_stage_input(models[k], model(value, training=False))
            result.append(value if isinstance(value, list) else [value])
        return result

    batches = [
        handed_on(calibration[start : start + _BATCH])
        for start in range(0, len(calibration), _BATCH)
    ]
    inputs = [{naming.stage_input_name(1): calibration}]
    for k in range(1, len(models)):
        # The stage models' inputs are named as the signatures' are.
        inputs.append(
            {
                name: np.concatenate(
                    [np.asarray(batch[k - 1][i], np.float32) for batch in batches]
                )
                for i, name in enumerate(models[k].input_names)
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
