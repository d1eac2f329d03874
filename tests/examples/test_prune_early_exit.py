"""End-to-end: examples/prune_early_exit.py on the digits, 1 epoch each."""

import json

import numpy as np
import pytest
from absl.testing import flagsaver

from examples import prune_early_exit
from tfee import tf


@pytest.mark.slow
def test_both_orders_write_one_plot_and_json(tmp_path):
    prune_early_exit.FLAGS(["prune_early_exit"])
    # Eager fits: the same arithmetic without tracing, faster on tiny models.
    tf.config.run_functions_eagerly(True)
    try:
        with flagsaver.flagsaver(
            train_epochs=1, epochs=1, sparsity=0.5, output_dir=str(tmp_path)
        ):
            prune_early_exit.main([])
    finally:
        tf.config.run_functions_eagerly(False)
    result = json.loads((tmp_path / "curves.json").read_text())
    assert set(result["orders"]) == {"together", "ordered"}
    for row in result["orders"].values():
        assert row["overall_sparsity"] == pytest.approx(0.5, abs=0.02)
        assert len(row["exit_accuracy"]) == 3
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert result["data"] == "digits" and result["split"] == "test"
    assert (tmp_path / "pruned_ordered.keras").exists()


def test_cascade_curve_at_threshold_zero_uses_the_first_exit_only():
    logits = [np.array([[2.0, 0.0], [0.0, 2.0]]), np.array([[0.0, 2.0], [0.0, 2.0]])]
    # A threshold of 1.0 no exit-1 score reaches sends everyone to exit 2.
    points = prune_early_exit.cascade_curve(
        logits, np.array([0, 0]), [1.0, 3.0], [0.0, 1.0]
    )
    assert points[0] == (0.5, 1.0)
    assert points[1] == (0.0, 3.0)
