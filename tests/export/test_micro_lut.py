"""tfee.export.micro(compress="lut"): clustered weights as look-up-table indices."""

import json
import os
import shutil
import subprocess
import warnings

import numpy as np
import pytest

import tfee
import tfee.compress
import tfee.export
from tests import tflm_kit
from tests.tiny_files import exporting_micro
from tests.tiny_files import reuse_conversions
from tfee import _flatbuffer
from tfee import keras

# The package re-exports the function `micro`, which hides the module.
from tfee.export._micro import convert as convert_lib

DECODE = "CUSTOM:TFLM_DECODE"
CLUSTERS = 4


@pytest.fixture(scope="module")
def clustered():
    """small_cnn (widths 16, 32) with an SDN exit, every kernel in 4 clusters."""
    keras.utils.set_random_seed(0)
    backbone = tfee.backbones.small_cnn(
        num_classes=3, input_shape=(8, 8, 1), widths=(16, 32)
    )
    network = tfee.attach_exits(
        backbone, ["block1_out"], head="sdn", with_confidence=True
    )
    wrapped = tfee.compress.cluster_weights(network, CLUSTERS, init="linear")
    return tfee.compress.strip(wrapped)


@pytest.fixture(scope="module")
def exports(clustered, images, tmp_path_factory):
    """(plain, lut): the same int8 stage models without and with LUT packing
    (the second export reuses the first one's conversions)."""
    plain = exporting_micro(
        clustered, str(tmp_path_factory.mktemp("plain")), images, name="lut"
    )
    with pytest.MonkeyPatch.context() as patch:
        reuse_conversions(plain, patch)
        packed = tfee.export.micro(
            clustered,
            str(tmp_path_factory.mktemp("packed")),
            images,
            name="lut",
            compress="lut",
        )
    return plain, packed


def test_lut_stages_hold_decode_and_are_smaller_than_plain_int8(exports):
    plain, packed = exports
    assert plain.compress is None and packed.compress == "lut"
    for before, after in zip(plain.stages, packed.stages):
        with open(after.model_path, "rb") as f:
            data = f.read()
        assert DECODE in _flatbuffer.op_names(data) and DECODE in after.ops
        assert DECODE not in before.ops and not before.lut_tensors
        assert after.flash_bytes == after.bytes == len(data)
        assert after.flash_bytes < before.flash_bytes == after.dense_bytes
        assert after.lut_tensors
        for tensor in after.lut_tensors:
            # 4 clusters: at most 4 int8 values per quantization channel.
            assert tensor.bits == 2
            assert tensor.tables == tensor.shape[0]
            assert tensor.index_bytes == tensor.weights * 2 // 8
    kernels = {t.name for s in packed.stages for t in s.lut_tensors}
    assert "stage_2/block2_conv/Conv2D" in kernels
    assert packed.flash_bytes == sum(s.flash_bytes for s in packed.stages)
    with open(packed.manifest_path) as f:
        manifest = json.load(f)
    assert manifest["compress"] == "lut"
    assert manifest["flash_bytes"] == packed.flash_bytes
    for stage, entry in zip(packed.stages, manifest["stages"]):
        assert entry["flash_bytes"] == stage.flash_bytes
        assert entry["dense_bytes"] == stage.dense_bytes
        assert entry["measured_arena_bytes"] == stage.measured_arena_bytes
        assert [t["bits"] for t in entry["lut_tensors"]] == [
            t.bits for t in stage.lut_tensors
        ]


def test_micro_cascade_on_the_lut_export_is_bit_identical_to_plain_int8(
    exports, images
):
    plain, packed = exports
    policy = tfee.ThresholdPolicy([0.5])
    expected = tfee.runtime.MicroCascade(plain.manifest_path, policy)
    actual = tfee.runtime.MicroCascade(packed.manifest_path, policy)
    for want, got in zip(expected.raw_outputs(images), actual.raw_outputs(images)):
        for (values, quantization), (packed_values, packed_quantization) in zip(
            want, got
        ):
            np.testing.assert_array_equal(packed_values, values)
            assert packed_quantization == quantization
    want_logits, want_confidences = expected.exit_outputs(images)
    got_logits, got_confidences = actual.exit_outputs(images)
    for want, got in zip(want_logits + want_confidences, got_logits + got_confidences):
        np.testing.assert_array_equal(got, want)


def test_lut_arenas_are_measured_on_the_packed_models_with_the_margin(exports):
    from tflite_micro import runtime

    plain, packed = exports
    for before, after in zip(plain.stages, packed.stages):
        # DECODE writes the unpacked weights into the arena.
        assert after.measured_arena_bytes > before.measured_arena_bytes
        measured = after.measured_arena_bytes
        assert measured < after.arena_bytes <= 1.1 * measured + 1024 + 16
        runtime.Interpreter.from_file(
            after.model_path, arena_size=after.arena_bytes
        ).invoke()
    assert packed.arena_bytes == max(s.arena_bytes for s in packed.stages)


def test_the_lut_resolver_registers_decode_and_compiles_warning_free(exports, tmp_path):
    plain, packed = exports
    with open(plain.cascade_path) as f:
        assert "AddDecode" not in f.read()
    with open(packed.cascade_path) as f:
        cascade = f.read()
    for stage in packed.stages:
        # DECODE counts in the resolver's capacity.
        assert f"MicroMutableOpResolver<{len(stage.ops)}>" in cascade
        with open(stage.header_path) as f:
            assert "DECODE operator (AddDecode())" in f.read()
    assert cascade.count("resolver.AddDecode();") == len(packed.stages)
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    flags = tflm_kit.compile_flags()
    for source in [packed.cascade_path] + [s.source_path for s in packed.stages]:
        subprocess.run(
            ["g++", *flags, "-Wall", "-Wextra", "-Werror"]
            + [f"-I{packed.directory}", "-c", source, "-o", str(tmp_path / "o.o")],
            check=True,
        )


@pytest.mark.parametrize("compress", ["LUT", "gzip", True, 4])
def test_bad_compress_values_raise_before_anything_is_written(
    network, images, tmp_path, monkeypatch, compress
):
    monkeypatch.setattr(convert_lib, "convert_all", None)
    with pytest.raises(
        ValueError,
        match=rf"`compress` must be one of \[None, 'lut'\].*"
        rf"Received: compress={compress!r}",
    ):
        tfee.export.micro(network, str(tmp_path), images, compress=compress)
    assert os.listdir(tmp_path) == []


def test_lut_on_an_unclustered_network_warns_and_writes_plain_int8(
    network, images, micro_export, tmp_path, monkeypatch
):
    converted = reuse_conversions(micro_export, monkeypatch)
    with pytest.warns(UserWarning, match="packed no weight tensor.*Cluster"):
        export = tfee.export.micro(
            network, str(tmp_path), images, name="tiny", compress="lut"
        )
    for stage in export.stages:
        with open(stage.model_path, "rb") as f:
            assert f.read() == _flatbuffer.without_strings(converted[stage.index])
        assert stage.lut_tensors == () and stage.flash_bytes == stage.dense_bytes


def test_per_kernel_scales_pack_each_folded_kernel_into_one_small_table(
    images, tmp_path
):
    keras.utils.set_random_seed(0)
    backbone = tfee.backbones.small_cnn(
        num_classes=3, input_shape=(8, 8, 1), widths=(16, 32)
    )
    network = tfee.attach_exits(backbone, ["block1_out"], head="sdn")
    # BN folded before clustering: the int8 kernel keeps exactly its clusters.
    folded = tfee.compress.cluster(
        network, None, CLUSTERS, epochs=0, init="linear", fold_batch_norm=True
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        per_kernel = tfee.export.micro(
            folded, str(tmp_path / "kernel"), images, compress="lut", per_channel=False
        )
    assert not [w for w in caught if "still has BatchNormalization" in str(w.message)]
    per_channel = tfee.export.micro(
        folded, str(tmp_path / "channel"), images, compress="lut"
    )
    packed = [t for stage in per_kernel.stages for t in stage.lut_tensors]
    convolutions = [t for t in packed if len(t.shape) == 4]
    assert convolutions and all(t.tables == 1 for t in packed)
    assert all(t.bits <= 2 for t in convolutions)  # 4 clusters: 2-bit indices
    assert per_kernel.flash_bytes < per_channel.flash_bytes


def test_per_kernel_scales_on_unfolded_batch_norm_warn(
    network, images, tmp_path, monkeypatch
):
    def stop(*args):
        raise RuntimeError("stop before converting")

    monkeypatch.setattr(convert_lib, "convert_all", stop)
    with pytest.warns(UserWarning, match="still has BatchNormalization.*Fold BN"):
        with pytest.raises(RuntimeError, match="stop before converting"):
            tfee.export.micro(network, str(tmp_path), images, per_channel=False)
