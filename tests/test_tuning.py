import keras_tuner
import numpy as np
import pytest

import tfee
import tfee.policy
from tests.policy.conftest import make_outputs
from tfee import keras
from tfee import tuning


@pytest.mark.parametrize("oracle", ["random", "bayesian"])
def test_threshold_search_returns_the_objective_it_computed(oracle, tmp_path):
    outputs = make_outputs()
    tuner = tuning.ExitTuner(
        tuning.threshold_evaluator(outputs, macs_weight=0.3),
        oracle=oracle,
        objective="score",
        max_trials=3,
        directory=tmp_path,
    )
    tuner.search()
    trials = tuner.oracle.get_best_trials(num_trials=3)
    assert len(trials) == 3
    assert all(t.status == "COMPLETED" for t in trials)
    best = tuner.get_best_hyperparameters()[0]
    policy = tuning.threshold_policy(best, outputs.num_exits)
    result = tfee.evaluate(outputs, policy=policy)
    assert trials[0].score == pytest.approx(
        result.accuracy - 0.3 * result.macs_fraction
    )
    assert trials[0].score == max(t.score for t in trials)


def test_a_failing_trial_stops_the_search_with_its_cause(tmp_path):
    def broken(hp):
        hp.Float("x", 0, 1)
        raise RuntimeError("bad build")

    tuner = tuning.ExitTuner(
        broken, oracle="random", objective="score", max_trials=2, directory=tmp_path
    )
    with pytest.raises(keras_tuner.errors.FatalError, match="RuntimeError: bad build"):
        tuner.search()


def test_bad_tuner_arguments_raise(tmp_path):
    with pytest.raises(TypeError, match="`evaluate` must be a callable"):
        tuning.ExitTuner(None, directory=tmp_path)
    with pytest.raises(ValueError, match="needs `objective` and `max_trials`"):
        tuning.ExitTuner(lambda hp: 0.0, oracle="random", directory=tmp_path)
    with pytest.raises(ValueError, match="`kind` must be one of"):
        tuning.make_oracle("grid", "score", 2)
    with pytest.raises(TypeError, match="ExitOutputs"):
        tuning.threshold_evaluator({"logits": []})


def test_user_build_function_searches_placement_and_thresholds(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.random((24, 8, 8, 1), dtype="float32")
    labels = (images.mean(axis=(1, 2, 3)) > 0.5).astype("int32")

    def build_and_evaluate(hp):
        backbone = tfee.backbones.small_cnn(2, input_shape=(8, 8, 1), widths=(4, 4, 8))
        attach = hp.Choice("attach", ["block1_out", "block2_out"])
        net = tfee.attach_exits(backbone, [attach], head="linear")
        net.compile(optimizer="adam", loss=tfee.losses.joint(net))
        net.fit(images, [labels] * 2, epochs=1, batch_size=12, verbose=0)
        outputs = tfee.collect_outputs(net, (images, labels))
        result = tfee.evaluate(outputs, policy=tuning.threshold_policy(hp, 2))
        keras.backend.clear_session()
        return {"score": result.accuracy - 0.5 * result.macs_fraction, "attach": 0.0}

    tuner = tuning.ExitTuner(
        build_and_evaluate,
        oracle="random",
        objective="score",
        max_trials=2,
        directory=tmp_path,
    )
    tuner.search()
    best = tuner.get_best_hyperparameters()[0]
    assert best.get("attach") in ("block1_out", "block2_out")
    assert 0.0 <= best.get("threshold_1") <= 1.0
    assert tmp_path.joinpath("tfee_tuning").is_dir()
