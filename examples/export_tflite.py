"""Export an early-exit network to TFLite for phones and microcontrollers.

Writes OUTPUT_DIR/net_<quantize>.tflite (exit_k and stage_k signatures, the
policy from --policy embedded) for every --quantize variant, int8 calibrated on
--data's validation images, verifies each against Keras on the same images,
and with --micro writes one int8 model per stage with C arrays and the C++
cascade. Any failed verification ends with exit code 1:

    .venv/bin/python examples/export_tflite.py --model=/tmp/tfee-chain/network.keras \
        --data=../shared/datasets/cifar10 --policy=/tmp/tfee-chain/policy.json \
        --quantize=float32,int8 --output_dir=/tmp/tfee-chain

Without --model it first trains a small network on --data.
"""

import os
import sys

from absl import app
from absl import flags

if not __package__:  # Run as a script: make `examples` importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from examples import shell  # noqa: E402

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(shell)  # --help lists the shared flags too
BINARY = "export_tflite"
CALIBRATION_IMAGES = 512

flags.DEFINE_bool("micro", True, "Also export int8 stage models for TFLite Micro.")
flags.DEFINE_float(
    "min_agreement",
    0.99,
    "Top-1 agreement with Keras each quantized signature needs to pass "
    "verification (tfee.export.verify).",
)


def export_all(
    network,
    output_dir,
    quantizations,
    micro,
    images,
    policy=None,
    labels=None,
    min_agreement=0.99,
):
    """Exports every variant (and the Micro stages).

    Returns:
      (printable lines, summary dict, names of the variants that failed
      verification).
    """
    import tfee
    import tfee.export

    lines, summary, failed = [], {"files": {}}, []
    for quantize in quantizations:
        shell.progress(BINARY, f"converting and verifying {quantize}")
        final = os.path.join(output_dir, f"net_{quantize}.tflite")
        # Written aside until verified: the next step must never pick up a
        # file that failed (nor one an earlier run left).
        path = os.path.join(output_dir, f"net_{quantize}.unverified.tflite")
        report = tfee.export.tflite(
            network,
            path,
            quantize=quantize,
            representative=images,
            policy=policy,
            labels=labels,
        )
        check = tfee.export.verify(path, network, images, min_agreement=min_agreement)
        if check.passed:
            os.replace(path, final)
            path = final
        elif os.path.exists(final):
            os.remove(final)
        lines.append(
            f"{quantize:<8} {report.bytes:>9,} bytes  {report.gzipped_bytes:>9,} "
            f"gzipped  zeros {100 * report.zero_fraction:5.1f}%  "
            f"{'verified' if check.passed else 'VERIFICATION FAILED'}"
        )
        summary["files"][quantize] = {
            "path": path,
            "bytes": report.bytes,
            "gzipped_bytes": report.gzipped_bytes,
            "verified": bool(check.passed),
            "verification": str(check),
        }
        if not check.passed:
            lines.append(str(check))
            failed.append(quantize)
    if micro:
        shell.progress(BINARY, "exporting int8 stage models for TFLite Micro")
        result = tfee.export.micro(
            network,
            os.path.join(output_dir, "micro"),
            representative=images,
            policy=policy,
        )
        for stage in result.stages:
            lines.append(
                f"micro stage_{stage.index}: {stage.bytes:,} bytes, arena "
                f"{stage.arena_bytes:,} bytes, ops {', '.join(stage.ops)}"
            )
        lines.append(
            f"shared arena: {result.arena_bytes:,} bytes (RAM for every stage)"
        )
        lines.append(f"cascade loop: {result.cascade_path} ({result.header_path})")
        summary["micro"] = {
            "stage_bytes": [stage.bytes for stage in result.stages],
            "arena_bytes": result.arena_bytes,
            "cascade": result.cascade_path,
        }
    return lines, summary, failed


def main(argv):
    import tfee.export
    from tfee.policy import load_policy

    shell.no_arguments(argv)
    quantizations = FLAGS.quantize or list(tfee.export.QUANTIZATIONS)
    unknown = [q for q in quantizations if q not in tfee.export.QUANTIZATIONS]
    if unknown:
        raise app.UsageError(
            f"--quantize accepts {tfee.export.QUANTIZATIONS}; received {unknown}"
        )
    output_dir = shell.output_dir(BINARY)
    policy = load_policy(FLAGS.policy) if FLAGS.policy else None
    network, data = shell.model_and_data(BINARY)
    images, _ = shell.arrays(
        data.validation.take(-(-CALIBRATION_IMAGES // FLAGS.batch_size))
    )
    lines, summary, failed = export_all(
        network,
        output_dir,
        quantizations,
        FLAGS.micro,
        images,
        policy,
        data.class_names,  # model_and_data checked they are the model's
        FLAGS.min_agreement,
    )
    summary = {
        **shell.labels(BINARY, "validation"),
        "calibration_images": len(images),
        "policy": FLAGS.policy or None,
        **summary,
    }
    shell.write_summary(output_dir, "export_summary.json", summary)
    for line in lines:
        print(line)
    if failed:
        raise shell.CommandError(
            f"verification failed for {', '.join(failed)} (details above and in "
            f"{os.path.join(output_dir, 'export_summary.json')})"
        )


if __name__ == "__main__":
    shell.run(main)
