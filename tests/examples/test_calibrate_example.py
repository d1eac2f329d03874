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


@pytest.fixture
def saved_net(tmp_path):
    backbone = tfee.backbones.small_cnn(10, input_shape=(8, 8, 1), widths=(4, 8))
    net = tfee.attach_exits(backbone, ["block1_out"], head="linear")
    path = str(tmp_path / "net.keras")
    net.save(path)
    return path


def _calibrate_main(out, capsys, **flags):
    """Runs the example's main with a 0.8 MACs budget; returns its JSON report."""
    with flagsaver.flagsaver(report_dir=str(out), macs_budget=0.8, **flags):
        calibrate.FLAGS(["calibrate"])
        calibrate.main([])
    assert "On test" in capsys.readouterr().out
    with open(out / "test_report.json") as f:
        return json.load(f)


def test_calibrate_main_writes_table_json_plots_and_policy(saved_net, tmp_path, capsys):
    out = tmp_path / "report"
    data = _calibrate_main(out, capsys, keras_model=saved_net)
    names = {p.name for p in out.iterdir()}
    assert {"test_report.txt", "test_report.json", "policy.json"} <= names
    assert {"test_accuracy_vs_macs.png", "test_exit_histogram.png"} <= names
    assert data["extra"]["target"] == {"macs_budget": 0.8}
    assert data["extra"]["validation"]["macs_fraction"] <= 0.8
    policy = tfee.policy.load_policy(str(out / "policy.json"))
    assert policy.num_exits == 2


def test_calibrate_main_passes_a_confidence_bound_to_calibration(
    saved_net, tmp_path, capsys
):
    data = _calibrate_main(
        tmp_path / "report", capsys, keras_model=saved_net, calibrate_confidence=0.9
    )
    assert data["extra"]["target"] == {"macs_budget": 0.8, "confidence": 0.9}
    with flagsaver.flagsaver(keras_model=saved_net, calibrate_confidence=1.5):
        calibrate.FLAGS(["calibrate"])
        with pytest.raises(ValueError, match="confidence.*1.5"):
            calibrate.main([])


def test_calibrate_main_calibrates_on_an_int8_files_own_outputs(tmp_path, capsys):
    backbone = tfee.backbones.small_cnn(10, input_shape=(8, 8, 1), widths=(4, 8))
    net = tfee.attach_exits(backbone, ["block1_out"], head="linear")
    path = str(tmp_path / "net.tflite")
    images = np.random.default_rng(0).random((16, 8, 8, 1), dtype="float32")
    tfee.export.tflite(net, path, quantize="int8", representative=images)
    out = tmp_path / "report"
    data = _calibrate_main(out, capsys, calibrate_tflite=path)
    assert data["extra"]["validation"]["macs_fraction"] <= 0.8
    assert tfee.policy.load_policy(str(out / "policy.json")).num_exits == 2


def test_calibration_reads_an_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 255, (10, 10, 3), dtype=np.uint8)
            data = tfee.tf.io.encode_png(pixels).numpy()
            (tmp_path / "images" / label / f"{i}.png").write_bytes(data)
    backbone = tfee.backbones.small_cnn(2, input_shape=(8, 8, 3), widths=(4, 8))
    net = tfee.attach_exits(backbone, ["block1_out"], head="linear")
    policy, test, validation, _ = calibrate.run_calibration(
        net, str(tmp_path / "images"), str(tmp_path / "out"), "margin", 0.1, None, 0.5
    )
    assert test.num_samples == validation.num_samples == 4
    assert policy.rule == "margin"


def test_missing_model_or_data_is_a_clear_error(tmp_path, saved_net):
    with flagsaver.flagsaver(keras_model=str(tmp_path / "missing.keras")):
        calibrate.FLAGS(["calibrate"])
        with pytest.raises(app.UsageError, match="no such file"):
            calibrate.main([])
    with flagsaver.flagsaver(calibrate_tflite=str(tmp_path / "missing.tflite")):
        calibrate.FLAGS(["calibrate"])
        with pytest.raises(app.UsageError, match="--calibrate_tflite: no such file"):
            calibrate.main([])
    with flagsaver.flagsaver(calibrate_tflite="a.tflite", keras_model=saved_net):
        calibrate.FLAGS(["calibrate"])
        with pytest.raises(app.UsageError, match="not both"):
            calibrate.main([])
    net = tfee.attach_exits(
        tfee.backbones.small_cnn(3, input_shape=(8, 8, 1), widths=(4, 8)),
        ["block1_out"],
    )
    with pytest.raises(
        ValueError, match="must be 'digits' or an existing image folder"
    ):
        calibrate.run_calibration(
            net, str(tmp_path / "nope"), str(tmp_path), "margin", 0.1, None, 0.5
        )
