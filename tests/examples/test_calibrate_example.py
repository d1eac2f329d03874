"""examples/calibrate.py runs end to end on tiny data."""

import json

import numpy as np
import pytest
from absl import app
from absl.testing import flagsaver

import tfee
import tfee.export
import tfee.policy
from examples import calibrate
from tfee import tf


@pytest.fixture
def saved_net(tmp_path):
    backbone = tfee.backbones.small_cnn(10, input_shape=(8, 8, 1), widths=(4, 8))
    net = tfee.attach_exits(backbone, ["block1_out"], head="linear")
    path = str(tmp_path / "net.keras")
    net.save(path)
    return path


def _calibrate_main(out, capsys, **flags):
    """Runs the example's main with a 0.8 MACs budget; returns its JSON report."""
    with flagsaver.flagsaver(output_dir=str(out), macs_budget=0.8, **flags):
        calibrate.FLAGS(["calibrate"])
        calibrate.main([])
    assert "On test" in capsys.readouterr().out
    with open(out / "test_report.json") as f:
        return json.load(f)


def test_calibrate_main_writes_table_json_plots_and_policy(saved_net, tmp_path, capsys):
    out = tmp_path / "report"
    data = _calibrate_main(out, capsys, model=saved_net)
    names = {p.name for p in out.iterdir()}
    assert {"test_report.txt", "test_report.json", "policy.json"} <= names
    assert {"test_accuracy_vs_macs.png", "test_exit_histogram.png"} <= names
    assert data["extra"]["target"] == {"macs_budget": 0.8}
    assert data["extra"]["validation"]["macs_fraction"] <= 0.8
    policy = tfee.load_policy(str(out / "policy.json"))
    assert policy.num_exits == 2


def test_calibrate_main_passes_a_confidence_bound_to_calibration(
    saved_net, tmp_path, capsys
):
    data = _calibrate_main(
        tmp_path / "report", capsys, model=saved_net, calibration_confidence=0.9
    )
    assert data["extra"]["target"] == {"macs_budget": 0.8, "confidence": 0.9}
    with flagsaver.flagsaver(model=saved_net, calibration_confidence=1.5):
        calibrate.FLAGS(["calibrate"])
        with pytest.raises(ValueError, match="confidence.*1.5"):
            calibrate.main([])


def test_calibrate_main_fits_a_learned_decision_and_ensemble(
    saved_net, tmp_path, capsys
):
    out = tmp_path / "report"
    data = _calibrate_main(out, capsys, model=saved_net, rule="decision", ensemble=True)
    assert data["extra"]["ensemble"] is True
    policy = tfee.load_policy(str(out / "policy.json"))
    assert isinstance(policy, tfee.DecisionPolicy) and policy.ensemble is not None


def test_calibrate_main_calibrates_on_an_int8_files_own_outputs(tmp_path, capsys):
    backbone = tfee.backbones.small_cnn(10, input_shape=(8, 8, 1), widths=(4, 8))
    net = tfee.attach_exits(backbone, ["block1_out"], head="linear")
    path = str(tmp_path / "net.tflite")
    images = np.random.default_rng(0).random((16, 8, 8, 1), dtype="float32")
    tfee.export.tflite(net, path, quantize="int8", representative=images)
    out = tmp_path / "report"
    data = _calibrate_main(out, capsys, model=path)
    assert data["extra"]["validation"]["macs_fraction"] <= 0.8
    assert tfee.load_policy(str(out / "policy.json")).num_exits == 2


def test_calibration_reads_an_image_folder_at_the_models_size(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(10):
            pixels = rng.integers(0, 255, (10, 10, 3), dtype=np.uint8)
            data = tfee.tf.io.encode_png(pixels).numpy()
            (tmp_path / "images" / label / f"{i}.png").write_bytes(data)
    backbone = tfee.backbones.small_cnn(2, input_shape=(8, 8, 3), widths=(4, 8))
    net = tfee.attach_exits(backbone, ["block1_out"], head="linear")
    net.save(tmp_path / "net.keras")
    report = _calibrate_main(
        tmp_path / "out",
        capsys,
        model=str(tmp_path / "net.keras"),
        data=str(tmp_path / "images"),
        validation_fraction=0.2,
        rule="margin",
    )
    assert report["extra"]["data"] == str(tmp_path / "images")
    assert report["extra"]["split"] == "test"
    assert report["evaluation"]["num_samples"] == 4


def test_missing_model_or_data_is_a_clear_error(tmp_path, saved_net):
    from examples import shell

    with flagsaver.flagsaver(model=str(tmp_path / "missing.keras")):
        calibrate.FLAGS(["calibrate"])
        with pytest.raises(shell.CommandError, match="--model: no such file"):
            calibrate.main([])
    with flagsaver.flagsaver(model=str(tmp_path / "missing.tflite")):
        calibrate.FLAGS(["calibrate"])
        with pytest.raises(shell.CommandError, match="--model: no such file"):
            calibrate.main([])
    with flagsaver.flagsaver(model=saved_net, rule="most_confident"):
        calibrate.FLAGS(["calibrate"])
        with pytest.raises(app.UsageError, match="--rule must be one of"):
            calibrate.main([])
    with flagsaver.flagsaver(model=saved_net, data=str(tmp_path / "nope")):
        calibrate.FLAGS(["calibrate"])
        with pytest.raises(shell.CommandError, match="--data=.*no folder at"):
            calibrate.main([])


def _folder(root, classes, per_class=6):
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            tf.io.write_file(str(root / name / f"{i}.png"), tf.io.encode_png(pixels))
    return str(root)


@pytest.mark.parametrize(
    "classes,message",
    [
        (
            ("cat", "dog"),
            "has 2 classes \\['cat', 'dog'\\]; --model=.* answers 3 classes",
        ),
        (("cow", "cat", "dog"), "was trained on \\['bird', 'cat', 'dog'\\]"),
    ],
)
def test_a_folder_of_other_classes_is_refused_not_renumbered(
    tmp_path, classes, message
):
    # Issue 31: a folder with a subset (or others) of the model's classes was
    # numbered 0.. in its own order and calibrate reported 0% as a result.
    from examples import shell

    backbone = tfee.backbones.small_cnn(3, input_shape=(8, 8, 1), widths=(4, 8))
    net = tfee.attach_exits(backbone, ["block1_out"], head="linear")
    path = str(tmp_path / "net.keras")
    shell.save_network(net, path, ("bird", "cat", "dog"))
    assert shell.model_class_names(path) == ["bird", "cat", "dog"]
    data = _folder(tmp_path / "other", classes)
    with flagsaver.flagsaver(model=path, data=data, output_dir=str(tmp_path / "out")):
        calibrate.FLAGS(["calibrate"])
        with pytest.raises(shell.CommandError, match=message):
            calibrate.main([])
    assert not (tmp_path / "out" / "policy.json").exists()
