"""Int8 per exit, as a device runs it: post-training int8 against QAT (issue 14).

Two int8 files of the cached reference network (never trained here):

  ptq  post-training full-int8 export, calibrated on --int8_calibration
       validation images;
  qat  the same network after --int8_qat_epochs of quantization-aware training
       (`tfee.compress.quantization_aware_training(preserve_clusters=False)`,
       SDN-weighted joint loss, cached under --cache_dir and resumed after an
       interruption), exported to int8 with the ranges it learned.

For each file it measures what a device computes: every exit's test accuracy
through the stage chain (`Cascade(path).exit_logits`, stage_1 -> features ->
stage_2 ...), against the float32 network's; and top-1 agreement of every
exit_k and stage_k signature with the Keras model the file was converted from
(`tfee.export.verify` on --int8_samples other validation images; for qat the
QAT model, whose fake quantization the file implements) and with the float
network. Criteria: accuracy within 0.3 points of float32 at every exit and
top-1 agreement >= 99% on every signature. Disagreements that are near-ties
(Keras' two top logits within two int8 steps) are reported for ptq.

    .venv/bin/python -m benchmarks.int8_agreement
    .venv/bin/python -m benchmarks.int8_agreement --quick    # smoke check only
"""

import os
import tempfile

import numpy as np
from absl import app
from absl import flags

import tfee
import tfee.compress
import tfee.export
from benchmarks import common
from tfee import keras
from tfee import naming

FLAGS = flags.FLAGS
flags.DEFINE_integer("int8_calibration", 512, "Validation images for calibration.")
flags.DEFINE_integer("int8_samples", 512, "Other validation images compared.")
flags.DEFINE_integer("int8_qat_epochs", 2, "Quantization-aware training epochs.")
flags.DEFINE_float("int8_qat_learning_rate", 1e-4, "Adam learning rate of QAT.")

ACCURACY_POINTS = 0.3
AGREEMENT = 0.99


def near_tie_share(path, network, images):
    """{exit_k: share of int8/Keras disagreements that are near-ties}."""
    keras_logits = network.predict(images, verbose=0)[: len(tfee.exits(network))]
    shares = {}
    for k, expected in enumerate(keras_logits, start=1):
        name = naming.exit_name(k)
        call = common.signature_function(path, name)
        got = np.concatenate([call(images[i : i + 1]) for i in range(len(images))])
        step = call.logits_details["quantization"][0]
        top2 = np.sort(expected, axis=-1)[:, -2:]
        near = top2[:, 1] - top2[:, 0] < 2 * step
        differ = np.argmax(got, -1) != np.argmax(expected, -1)
        shares[name] = float(near[differ].mean()) if differ.any() else None
    return shares


def qat_network(network, data):
    """The QAT form of `network`, trained --int8_qat_epochs (cached, resumable)."""
    tag = "quick" if FLAGS.quick else "full"
    weights = os.path.join(FLAGS.cache_dir, f"reference_qat_{tag}.weights.h5")
    model = tfee.compress.quantize_preserving_clusters(
        network, preserve_sparsity=False, preserve_clusters=False
    )
    model.compile(
        optimizer=keras.optimizers.Adam(FLAGS.int8_qat_learning_rate),
        loss=tfee.losses.joint(model),
        metrics=["accuracy"],
    )
    if os.path.exists(weights):
        print(f"loading the QAT network: {weights}", flush=True)
        model.load_weights(weights)
        return model
    backup = os.path.join(FLAGS.cache_dir, f"reference_qat_{tag}_backup")
    print(
        f"quantization-aware training, {FLAGS.int8_qat_epochs} epochs ...", flush=True
    )
    model.fit(
        data.pipeline("train", training=True),
        epochs=FLAGS.int8_qat_epochs,
        callbacks=[keras.callbacks.BackupAndRestore(backup)],
        verbose=2,
    )
    os.makedirs(FLAGS.cache_dir, exist_ok=True)
    model.save_weights(weights)
    return model


def measure(path, source, network, data, compared):
    """Per-exit stage-chain accuracy and per-signature agreement of one file."""
    test_x, test_y = data.normalised("test"), data.test[1]
    chain = tfee.Cascade(path).exit_logits(test_x, batch_size=500)
    file_accuracy = [float(np.mean(logits.argmax(1) == test_y)) for logits in chain]
    float_logits = network.predict(test_x, verbose=0, batch_size=500)[: len(chain)]
    float_accuracy = [float(np.mean(x.argmax(1) == test_y)) for x in float_logits]
    drops = [100 * (f - q) for f, q in zip(float_accuracy, file_accuracy)]
    against_source = tfee.export.verify(path, source, compared, samples=len(compared))
    against_float = (
        against_source
        if source is network
        else tfee.export.verify(path, network, compared, samples=len(compared))
    )
    entry = {
        "test_accuracy_float32": float_accuracy,
        "test_accuracy_int8_stage_chain": file_accuracy,
        "drop_points": [round(d, 3) for d in drops],
        "accuracy_met": bool(max(drops) <= ACCURACY_POINTS),
        "agreement_with_source": {
            c.signature: c.top1_agreement for c in against_source.checks
        },
        "agreement_with_float32": {
            c.signature: c.top1_agreement for c in against_float.checks
        },
    }
    entry["agreement_met"] = bool(
        min(entry["agreement_with_source"].values()) >= AGREEMENT
    )
    print(
        f"{os.path.basename(path)}: drops (points) {entry['drop_points']}; "
        f"lowest agreement {min(entry['agreement_with_source'].values()):.4f}",
        flush=True,
    )
    return entry


def run(argv=None):
    """Exports ptq and qat files, measures them; writes int8_agreement_<tag>.json."""
    network, data = common.reference()
    images = data.normalised("validation")
    # At most half the images calibrate, so that some are left to compare
    # (the quick stand-in has only a few).
    split = min(FLAGS.int8_calibration, len(images) // 2)
    calibration = images[:split]
    compared = images[split : split + FLAGS.int8_samples]
    result = {
        "setup": common.setup(),
        "calibration_images": len(calibration),
        "compared_images": len(compared),
        "criteria": f"per exit: int8 stage-chain test accuracy within "
        f"{ACCURACY_POINTS} points of float32; per signature: top-1 agreement "
        f">= {AGREEMENT:.0%} with the Keras model converted",
        "qat": {
            "epochs": FLAGS.int8_qat_epochs,
            "optimizer": "Adam",
            "learning_rate": FLAGS.int8_qat_learning_rate,
        },
    }
    sources = {"ptq": network, "qat": qat_network(network, data)}
    with tempfile.TemporaryDirectory() as directory:
        for variant, source in sources.items():
            path = os.path.join(directory, f"reference_{variant}.tflite")
            export = tfee.export.tflite(
                source, path, quantize="int8", representative=calibration
            )
            result[variant] = measure(path, source, network, data, compared)
            result[variant]["file_bytes"] = export.bytes
            if variant == "ptq":
                result[variant]["disagreements_within_two_int8_steps"] = near_tie_share(
                    path, network, compared
                )
    result["record"] = common.machine_record(argv)
    return common.finish("int8_agreement", result, ["ptq", "qat"])


def main(argv):
    run(argv)


if __name__ == "__main__":
    app.run(main)
