"""examples/prune_early_exit.py: its cascade curve (the binary itself runs in
tests/examples/test_shell_chain.py)."""

import numpy as np

from examples import prune_early_exit


def test_cascade_curve_at_threshold_zero_uses_the_first_exit_only():
    logits = [np.array([[2.0, 0.0], [0.0, 2.0]]), np.array([[0.0, 2.0], [0.0, 2.0]])]
    # A threshold of 1.0 no exit-1 score reaches sends everyone to exit 2.
    points = prune_early_exit.cascade_curve(
        logits, np.array([0, 0]), [1.0, 3.0], [0.0, 1.0]
    )
    assert points[0] == (0.5, 1.0)
    assert points[1] == (0.0, 3.0)
