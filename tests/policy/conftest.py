"""Generated per-exit outputs: later exits are right more often."""

import numpy as np
import pytest

import tfee.policy


def make_outputs(num_exits=4, samples=400, classes=5, seed=0, confidences=False):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, samples)
    logits = rng.normal(size=(num_exits, samples, classes))
    strength = np.linspace(0.5, 3.0, num_exits)[:, None] * rng.random(
        (num_exits, samples)
    )
    logits[np.arange(num_exits)[:, None], np.arange(samples)[None], labels[None]] += (
        2 * strength
    )
    learned = None
    if confidences:
        learned = rng.random((num_exits, samples))
        learned[-1] = np.nan
    return tfee.policy.ExitOutputs(
        logits=logits,
        confidences=learned,
        labels=labels,
        exit_macs=np.linspace(100, 1000, num_exits).astype(int),
        full_macs=950,
    )


@pytest.fixture
def outputs():
    return make_outputs()
