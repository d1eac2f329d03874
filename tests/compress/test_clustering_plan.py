"""Staged clustering driven by the user's own fit (tfee.compress.ClusteringPlan)."""

import csv

import numpy as np
import pytest

import tfee
import tfee.compress
from tests.compress import _tiny
from tfee import keras

COUNTS = {1: 4, 2: 3}
KERNELS = {1: ("block1_conv", "exit_1_head"), 2: ("block2_conv", "logits")}


def _counts(network):
    """{section: most distinct values in any of its kernels}."""
    return {
        section: max(
            len(np.unique(tfee.cost.unwrap(network.get_layer(name)).kernel.numpy()))
            for name in names
        )
        for section, names in KERNELS.items()
    }


def _plan(**kwargs):
    return tfee.compress.ClusteringPlan(
        _tiny.network(), COUNTS, init="linear", **kwargs
    )


def test_each_phase_fits_with_the_users_callbacks_and_keeps_its_counts(tmp_path):
    plan = _plan()
    log = tmp_path / "log.csv"
    seen = []
    with _tiny.eagerly():
        for phase in plan:
            seen.append(phase.keys)
            phase.compile(keras.optimizers.Adam(1e-3))
            phase.model.fit(
                _tiny.dataset(),
                epochs=1,
                callbacks=[*phase.callbacks, keras.callbacks.CSVLogger(str(log))],
                verbose=0,
            )
            rows = list(csv.DictReader(open(log)))
            assert len(rows) == 1 and "loss" in rows[0]  # The user's logger ran.
    assert seen == [(1,), (2,)]
    clustered = plan.result()
    counts = _counts(clustered)
    assert all(counts[s] <= COUNTS[s] for s in COUNTS), counts
    # Every layer has its own trainable flag back.
    assert all(layer.trainable for layer in clustered.layers)


def test_cluster_is_the_same_plan_fitted_for_you():
    with _tiny.eagerly():
        clustered = tfee.compress.cluster(
            _tiny.network(), _tiny.dataset(), COUNTS, init="linear", verbose=0
        )
    counts = _counts(clustered)
    assert all(counts[s] <= COUNTS[s] for s in COUNTS), counts


class _KilledError(Exception):
    pass


class _KillAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            raise _KilledError()


def _run(plan, backup, kill_in_phase=None):
    with _tiny.eagerly():
        for phase in plan:
            callbacks = [*phase.callbacks, keras.callbacks.BackupAndRestore(backup)]
            if phase.number == kill_in_phase:
                callbacks.append(_KillAfterFirstEpoch())
            phase.compile(keras.optimizers.Adam(1e-3))
            phase.model.fit(_tiny.dataset(), epochs=2, callbacks=callbacks, verbose=0)
    return plan.result()


def test_a_run_killed_mid_phase_resumes_and_ends_with_the_same_counts(tmp_path):
    expected = _counts(_run(_plan(), str(tmp_path / "clean_backup")))
    directory, backup = str(tmp_path / "plan"), str(tmp_path / "backup")
    with pytest.raises(_KilledError):
        _run(_plan(directory=directory), backup, kill_in_phase=2)
    resumed = _plan(directory=directory)
    first = next(iter(resumed))
    assert first.number == 2  # Phase 1 was saved when it ended.
    resumed = _plan(directory=directory)
    assert _counts(_run(resumed, backup)) == expected


def test_a_phase_fitted_after_the_plan_moved_on_is_refused():
    plan = _plan()
    phases = iter(plan)
    first = next(phases)
    next(phases)
    first.compile()
    with pytest.raises(ValueError, match="phase 1 was fitted after the plan moved on"):
        first.model.fit(_tiny.dataset(), epochs=1, callbacks=first.callbacks, verbose=0)


def test_the_phase_callbacks_on_another_model_are_refused():
    plan = _plan()
    phases = iter(plan)  # Kept: a dropped iterator ends the plan.
    phase = next(phases)
    phase.network.compile("adam", loss=tfee.losses.joint(phase.network))
    with pytest.raises(ValueError, match="phase.callbacks belong to phase.model"):
        phase.network.fit(
            _tiny.dataset(), epochs=1, callbacks=phase.callbacks, verbose=0
        )


def test_a_directory_of_another_plan_is_refused(tmp_path):
    directory = str(tmp_path / "plan")
    with pytest.raises(_KilledError):
        _run(_plan(directory=directory), str(tmp_path / "b"), kill_in_phase=2)
    with pytest.raises(ValueError, match="`directory` holds the phases of another"):
        tfee.compress.ClusteringPlan(
            _tiny.network(), {1: 8, 2: 3}, init="linear", directory=directory
        )


def test_result_before_the_last_phase_is_refused():
    plan = _plan()
    next(iter(plan))
    with pytest.raises(ValueError, match="needs every phase done"):
        plan.result()


def test_bad_counts_are_refused_by_name():
    with pytest.raises(ValueError, match=r"`clusters\[2\]` must be an integer >= 2"):
        tfee.compress.ClusteringPlan(_tiny.network(), {1: 4, 2: 1})


def test_preserve_sparsity_refuses_a_phase_fitted_without_its_callbacks(
    global_pruning,
):
    # Issue 31, item 2: the pruned zeros of the sections clustered later
    # were lost silently (a block's sparsity 0.73 -> 0.27).
    plan = tfee.compress.ClusteringPlan(
        global_pruning[2],
        {1: 4, 2: 4},
        distill=False,
        init="linear",
        preserve_sparsity=True,
    )
    with (
        _tiny.eagerly(),
        pytest.raises(ValueError, match=r"phase 1 was fitted without phase.callbacks"),
    ):
        for phase in plan:
            phase.compile(keras.optimizers.Adam(1e-2))
            phase.model.fit(_tiny.dataset(), epochs=1, verbose=0)  # no callbacks
