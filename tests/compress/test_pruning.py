"""Pruning early-exit networks: scopes, orders, schedules, resume, errors."""

import warnings

import numpy as np
import pytest

import tfee
import tfee.compress
from tests.compress import _tiny
from tfee import keras
from tfee import tf
from tfee import tfmot
from tfee.compress.batch_norm import batch_norm_layers


def _prune(net, sparsity, **kwargs):
    """`prune` for one epoch, eagerly (see `_tiny.eagerly`): the pruned model
    and its `sparsity_report`."""
    kwargs.setdefault("epochs", 1)
    kwargs.setdefault("verbose", 0)
    with _tiny.eagerly():
        pruned = tfee.compress.prune(net, _tiny.dataset(), sparsity, **kwargs)
    return pruned, tfee.compress.sparsity_report(pruned)


def test_global_scope_reaches_the_target_with_one_threshold_across_layers(
    global_pruning,
):
    report = tfee.compress.sparsity_report(global_pruning[2])
    assert report.overall == pytest.approx(0.6, abs=0.02)
    # One threshold over all layers gives each layer its own sparsity.
    assert max(report.layers.values()) - min(report.layers.values()) > 0.1


def test_prune_leaves_its_input_unchanged_and_returns_a_stripped_keras_model(
    global_pruning,
):
    net, before, pruned = global_pruning
    for old, new in zip(before, net.get_weights()):
        np.testing.assert_array_equal(old, new)
    assert isinstance(pruned, keras.Model)
    assert not any("prune_low_magnitude" in layer.name for layer in pruned.layers)
    assert pruned.output_names == net.output_names
    assert np.mean(pruned.get_layer("block2_conv").kernel.numpy() == 0) > 0.3


def test_sparse_macs_fall_below_dense_macs_for_every_exit(global_pruning):
    for row in tfee.compress.sparsity_report(global_pruning[2]).exits:
        assert row["sparse_macs"] < row["dense_macs"]


def test_layer_scope_prunes_every_layer_to_the_target():
    _, report = _prune(_tiny.network(), 0.5, scope="layer")
    for name, sparsity in report.layers.items():
        assert sparsity == pytest.approx(0.5, abs=0.02), name


def test_section_scope_reaches_each_sections_target():
    _, report = _prune(_tiny.network(), {1: 0.3, 2: 0.8}, scope="section")
    sections = {s["index"]: s["total"] for s in report.sections}
    assert sections[1] == pytest.approx(0.3, abs=0.02)
    assert sections[2] == pytest.approx(0.8, abs=0.02)


def test_heads_and_backbone_keys_prune_by_role():
    _, report = _prune(
        _tiny.network(), {"heads": 0.75, "backbone": 0.0}, scope="section"
    )
    assert report.heads["exit_1"] == pytest.approx(0.75, abs=0.02)
    assert report.layers["block1_conv"] == 0.0


def test_the_readme_mix_of_sections_and_heads_prunes_every_head_at_its_target():
    """Issue 16: {1: .5, 2: .7, "heads": .6} raised on a 3-exit network (the
    numbered sections had claimed every head, leaving "heads" empty)."""
    network = tfee.attach_exits(
        tfee.backbones.small_cnn(3, (8, 8, 1), widths=(4, 8, 8)),
        ["block1_out", "block2_out"],
        head="sdn",
    )
    _, report = _prune(network, {1: 0.5, 2: 0.7, "heads": 0.6}, scope="section")
    assert report.layers["block1_conv"] == pytest.approx(0.5, abs=0.02)
    assert report.layers["block2_conv"] == pytest.approx(0.7, abs=0.02)
    assert report.layers["block3_conv"] == 0.0
    head_weights = {"exit_1": 64 * 3, "exit_2": 128 * 3}
    pruned = sum(report.heads[name] * count for name, count in head_weights.items())
    assert pruned / sum(head_weights.values()) == pytest.approx(0.6, abs=0.02)


def test_ordered_keeps_heads_unchanged_while_the_backbone_is_pruned():
    # Traced, not eager: phase 2 must retrace the train function to unfreeze
    # the heads, which eager execution would hide.
    net = _tiny.network()
    before = net.get_layer("exit_1_head").get_weights()
    seen = {}

    class AfterPhaseOne(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:  # Phase 1 (backbone) is the first `epochs` epochs.
                layers = {tfee.cost.unwrap(x).name: x for x in self.model.layers}
                seen["head"] = tfee.cost.unwrap(layers["exit_1_head"]).get_weights()
                seen["backbone"] = tfee.cost.unwrap(
                    layers["block2_conv"]
                ).kernel.numpy()

    pruned = tfee.compress.prune(
        net,
        _tiny.dataset(),
        0.7,
        order="ordered",
        epochs=1,
        callbacks=[AfterPhaseOne()],
        verbose=0,
    )
    for old, new in zip(before, seen["head"]):
        np.testing.assert_array_equal(old, new)
    assert np.mean(seen["backbone"] == 0) > 0.5
    report = tfee.compress.sparsity_report(pruned)
    assert report.heads["exit_1"] == pytest.approx(0.7, abs=0.02)


def test_frozen_backbone_weights_stay_bit_identical_with_confidence_heads():
    net = _tiny.network(with_confidence=True, freeze_backbone=True)
    before = _tiny.weights_by_layer(net)
    pruned, report = _prune(net, 0.8)
    after = _tiny.weights_by_layer(pruned)
    for name in ("block1_conv", "block1_bn", "block2_conv", "logits"):
        for old, new in zip(before[name], after[name]):
            np.testing.assert_array_equal(old, new)
    assert report.heads["exit_1"] == pytest.approx(0.8, abs=0.02)
    assert "block1_conv" in report.frozen


def test_rounds_prune_the_same_fraction_of_the_remaining_weights():
    schedule = tfee.compress.Rounds(rounds=2, steps_per_round=3)
    assert schedule.sparsity(0, 0.75) == pytest.approx(0.5)
    assert schedule.sparsity(1, 0.75) is None
    assert schedule.sparsity(3, 0.75) == pytest.approx(0.75)
    assert schedule.sparsity(6, 0.75) is None
    assert schedule.length == 6


def test_polynomial_decay_reaches_the_target_at_its_end_step():
    schedule = tfee.compress.PolynomialDecay(begin_step=0, end_step=10, frequency=5)
    assert schedule.sparsity(0, 0.8) == pytest.approx(0.0)
    assert 0 < schedule.sparsity(5, 0.8) < 0.8
    assert schedule.sparsity(10, 0.8) == pytest.approx(0.8)


def test_update_pruning_step_initialises_wrappers_added_in_a_later_phase():
    net = _tiny.network()
    pruned, _ = tfee.compress.pruning_plan(net, 0.5)
    wrappers = tfee.compress.callbacks.pruning_wrappers(pruned)
    wrappers[0].pruning_step.assign(7)  # Phase 1 ran; the others were added later.
    callback = tfee.compress.UpdatePruningStep()
    callback.set_model(pruned)
    callback.on_train_begin()
    assert [int(w.pruning_step.numpy()) for w in wrappers] == [7] * len(wrappers)


def test_an_interrupted_run_resumes_its_schedule(tmp_path):
    net = _tiny.network()
    pruned, scheduler = tfee.compress.pruning_plan(
        net, 0.75, schedule=tfee.compress.Rounds(rounds=3, steps_per_round=2)
    )
    pruned.compile("adam", loss=tfee.losses.joint(pruned))

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("interrupted")

    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with _tiny.eagerly():
        with pytest.raises(RuntimeError, match="interrupted"):
            pruned.fit(
                _tiny.dataset(),
                epochs=3,
                callbacks=[scheduler, backup, Interrupt()],
                verbose=0,
            )
        for wrapper in tfee.compress.callbacks.pruning_wrappers(pruned):
            wrapper.pruning_step.assign(0)  # A restart must not trust memory.
        pruned.fit(_tiny.dataset(), epochs=3, callbacks=[scheduler, backup], verbose=0)
    steps = {
        int(w.pruning_step.numpy())
        for w in tfee.compress.callbacks.pruning_wrappers(pruned)
    }
    assert steps == {6}
    report = tfee.compress.sparsity_report(tfee.compress.strip(pruned))
    assert report.overall == pytest.approx(0.75, abs=0.02)


@pytest.mark.parametrize("sparsity", [1.0, -0.1, "0.5", True])
def test_sparsity_outside_zero_to_one_is_rejected(sparsity):
    with pytest.raises(ValueError, match=r"`sparsity` must be a number in \[0, 1\)"):
        tfee.compress.pruning_plan(_tiny.network(), sparsity)


def test_unknown_section_keys_are_rejected():
    with pytest.raises(ValueError, match=r"unknown section keys \[7, 'neck'\]"):
        tfee.compress.pruning_plan(
            _tiny.network(), {1: 0.5, 7: 0.5, "neck": 0.2}, scope="section"
        )


def test_layers_tfmot_cannot_prune_are_named():
    with pytest.raises(
        ValueError, match=r"tfmot cannot prune the layers \['odd_scale'\]"
    ):
        tfee.compress.pruning_plan(_tiny.network_with_custom_layer(), 0.5)


@pytest.mark.parametrize(
    "schedule", [tfee.compress.PolynomialDecay, tfee.compress.ConstantSparsity]
)
def test_a_schedule_that_ends_before_it_begins_is_rejected(schedule):
    with pytest.raises(ValueError, match="the schedule ends before it begins"):
        schedule(begin_step=10, end_step=5)


def test_a_section_sparsity_outside_zero_to_one_is_rejected():
    with pytest.raises(
        ValueError, match=r"`sparsity\[2\]` must be a number in \[0, 1\)"
    ):
        tfee.compress.pruning_plan(_tiny.network(), {1: 0.5, 2: 1.5}, scope="section")


def test_a_schedule_longer_than_the_training_is_rejected():
    with pytest.raises(
        ValueError, match="the schedule needs 40 steps but a phase trains 2"
    ):
        tfee.compress.prune(
            _tiny.network(),
            _tiny.dataset(),
            0.5,
            epochs=1,
            schedule=tfee.compress.Rounds(rounds=10, steps_per_round=4),
        )


def test_unknown_scope_and_order_are_rejected():
    with pytest.raises(ValueError, match="`scope` must be one of"):
        tfee.compress.pruning_plan(_tiny.network(), 0.5, scope="block")
    with pytest.raises(ValueError, match="`order` must be one of"):
        tfee.compress.pruning_plan(_tiny.network(), 0.5, order="heads_first")


def test_a_fit_shorter_than_the_plan_says_the_target_was_not_reached():
    """Issue 16: a short fit ended below the target without a word."""
    pruned, scheduler = tfee.compress.pruning_plan(
        _tiny.network(), 0.8, schedule=tfee.compress.Rounds(rounds=3, steps_per_round=2)
    )
    pruned.compile("adam", loss=tfee.losses.joint(pruned))
    with _tiny.eagerly(), pytest.warns(UserWarning, match="prunes until step 5"):
        pruned.fit(_tiny.dataset(), epochs=1, callbacks=[scheduler], verbose=0)
    with _tiny.eagerly(), warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*pruning plan.*")
        pruned.fit(_tiny.dataset(), epochs=2, callbacks=[scheduler], verbose=0)


def test_steps_per_execution_is_refused_by_the_scheduler():
    """Issue 16: steps_per_execution=4 made the plan miss its round boundaries."""
    pruned, scheduler = tfee.compress.pruning_plan(
        _tiny.network(), 0.8, schedule=tfee.compress.Rounds(rounds=3, steps_per_round=2)
    )
    pruned.compile("adam", loss=tfee.losses.joint(pruned), steps_per_execution=4)
    with pytest.raises(ValueError, match="steps_per_execution=1. Received: .*=4"):
        pruned.fit(_tiny.dataset(), epochs=1, callbacks=[scheduler], verbose=0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: tfee.compress.ConstantSparsity(0.5, 0),
        lambda: tfee.compress.PolynomialDecay(0.0, 0.8, 0, 100),
    ],
)
def test_a_tfmot_style_schedule_call_is_explained(make):
    """Issue 16: tfmot's schedules start with the sparsity; tfee's take none."""
    with pytest.raises(ValueError, match="tfee schedules take no sparsity"):
        make()


def test_the_old_name_prune_low_magnitude_warns_once_and_makes_the_same_plan():
    from tfee import _checks

    _checks._WARNED.discard("tfee.compress.prune_low_magnitude")
    with pytest.warns(DeprecationWarning, match="is now tfee.compress.pruning_plan"):
        pruned, scheduler = tfee.compress.prune_low_magnitude(_tiny.network(), 0.5)
    assert isinstance(scheduler, tfee.compress.PruningScheduler)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        tfee.compress.prune_low_magnitude(_tiny.network(), 0.5)


def test_using_the_pruning_plan_as_a_model_explains_itself():
    """Issue 16: tfmot's prune_low_magnitude returns the model; tfee's returns
    (model, scheduler), and `plan.compile` failed with a bare tuple error."""
    plan = tfee.compress.pruning_plan(_tiny.network(), 0.5)
    with pytest.raises(AttributeError, match=r"returns \(model, scheduler\).*unpack"):
        plan.compile("adam")
    pruned, scheduler = plan
    assert plan.model is pruned and plan.scheduler is scheduler
    assert isinstance(scheduler, tfee.compress.PruningScheduler)


@pytest.mark.parametrize(
    "callback",
    [tfmot.sparsity.keras.UpdatePruningStep, tfee.compress.UpdatePruningStep],
    ids=["tfmot", "tfee"],
)
def test_training_without_the_scheduler_is_refused_and_changes_nothing(callback):
    """Issue 16: tfmot's UpdatePruningStep (or tfee's) alone ended at 0%."""
    pruned, _ = tfee.compress.pruning_plan(_tiny.network(), 0.8)
    pruned.compile("adam", loss=tfee.losses.joint(pruned))
    before = {w.name: w.numpy().copy() for w in pruned.weights}
    with pytest.raises(tf.errors.InvalidArgumentError, match="callbacks=.scheduler"):
        pruned.fit(_tiny.dataset(), epochs=1, callbacks=[callback()], verbose=0)
    for weight in pruned.weights:
        if "pruning_step" in weight.name:  # The callback's start (-1 -> 0) only.
            assert weight.numpy() == 0, weight.name
        else:
            np.testing.assert_array_equal(weight.numpy(), before[weight.name])


def _plan(network):
    return tfee.compress.pruning_plan(
        network, 0.8, schedule=tfee.compress.Rounds(rounds=3, steps_per_round=2)
    )


def test_a_model_saved_mid_plan_loads_and_resumes_with_the_plans_scheduler(tmp_path):
    """Issue 16: a pruned .keras saved mid-plan failed to load
    (`Unknown object: '_ControlledSparsity'`)."""
    network = _tiny.network()
    pruned, scheduler = _plan(network)
    pruned.compile("adam", loss=tfee.losses.joint(pruned))
    with pytest.warns(UserWarning, match="not reached its target"):
        pruned.fit(_tiny.dataset(), epochs=1, callbacks=[scheduler], verbose=0)
    pruned.save(tmp_path / "mid.keras")

    loaded = keras.models.load_model(tmp_path / "mid.keras")  # No prune_scope.
    wrappers = tfee.compress.callbacks.pruning_wrappers(loaded)
    assert {int(w.pruning_step.numpy()) for w in wrappers} == {2}
    _, resumed = _plan(network)  # The same plan, rebuilt: its scheduler resumes.
    loaded.fit(_tiny.dataset(), epochs=2, callbacks=[resumed], verbose=0)
    report = tfee.compress.sparsity_report(tfee.compress.strip(loaded))
    assert report.overall == pytest.approx(0.8, abs=0.02)


def test_after_the_plan_ends_training_on_without_the_scheduler_keeps_the_masks():
    pruned, scheduler = _plan(_tiny.network())
    pruned.compile("adam", loss=tfee.losses.joint(pruned))
    pruned.fit(_tiny.dataset(), epochs=3, callbacks=[scheduler], verbose=0)
    pruned.fit(
        _tiny.dataset(),
        epochs=1,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
        verbose=0,
    )
    report = tfee.compress.sparsity_report(tfee.compress.strip(pruned))
    assert report.overall == pytest.approx(0.8, abs=0.02)


@pytest.mark.parametrize("order", ["together", "ordered"])
def test_pruning_ends_with_batch_norm_statistics_of_the_pruned_weights(order):
    # Moving averages lag behind the weights the last pruning step changed:
    # left so, the deepest exit can come back at chance (issue 31, item 1).
    pruned, _ = _prune(_tiny.network(), 0.8, order=order)
    names = batch_norm_layers(pruned)
    assert names
    kept = {n: pruned.get_layer(n).moving_mean.numpy().copy() for n in names}
    tfee.compress.reestimate_batch_norm(pruned, _tiny.dataset())
    for name in names:
        np.testing.assert_allclose(
            kept[name], pruned.get_layer(name).moving_mean.numpy(), atol=1e-6
        )


def test_a_pruning_plan_without_batch_norm_data_warns_for_either_order():
    with pytest.warns(UserWarning, match="batch_norm_data=None"):
        tfee.compress.pruning_plan(_tiny.network(), 0.5, order="together")


def test_a_mid_plan_pruned_network_with_confidence_heads_saves_and_loads_as_h5(
    tmp_path,
):
    # Issue 31: saving failed ("name already exists": two "mask" weights in a
    # head with a confidence kernel) and loading said "Unknown layer: 'SDNHead'".
    pruned, scheduler = tfee.compress.pruning_plan(
        _tiny.network(with_confidence=True),
        0.8,
        schedule=tfee.compress.Rounds(rounds=3, steps_per_round=2),
    )
    pruned.compile("adam", loss=tfee.losses.joint(pruned))
    with _tiny.eagerly(), pytest.warns(UserWarning, match="prunes until step 5"):
        pruned.fit(_tiny.dataset(), epochs=1, callbacks=[scheduler], verbose=0)
    images = next(iter(_tiny.dataset()))[0]
    for path in (tmp_path / "mid_plan.h5", tmp_path / "mid_plan.keras"):
        pruned.save(path)
        loaded = tfee.load_model(path)
        for ours, theirs in zip(pruned(images), loaded(images)):
            np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)
    # ... and a network loaded from .keras saves as .h5 too.
    tfee.load_model(tmp_path / "mid_plan.keras").save(tmp_path / "again.h5")
    assert tfee.load_model(tmp_path / "again.h5").output_names == pruned.output_names
