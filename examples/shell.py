"""What every example binary shares: one flag vocabulary, quiet output, data and
model loading, failures as one line, and the JSON summary.

This module imports no TensorFlow at import time, so `--help` answers at once;
`tfee` is imported when a binary starts working.

Shared flags (every binary): --model, --data, --data_dir, --cache, --image_size,
--validation_fraction, --output_dir, --seed, --epochs, --batch_size,
--train_epochs, --head, --policy, --quantize, --keras_verbose. A binary that
needs no value of one ignores it.
"""

import os
import sys
import time
import warnings

from absl import app
from absl import flags
from absl import logging

FLAGS = flags.FLAGS

flags.DEFINE_string(
    "model",
    "",
    "A saved network: .keras (or .h5) for Keras binaries, .tflite for the file "
    "runners. Empty: train a small network on --data first.",
)
flags.DEFINE_string(
    "data",
    "digits",
    "Data: 'digits' (embedded, offline), an image folder (DIR/<class>/... or "
    "DIR/{train,test}/<class>/...) or a TensorFlow Datasets name (offline, "
    "prepared under --data_dir).",
)
flags.DEFINE_string("data_dir", None, "Where TFDS keeps prepared data.")
flags.DEFINE_string(
    "cache",
    "",
    "A directory where decoded image folders are kept (.npz) between runs, so "
    "that each binary of a chain decodes the JPEGs once.",
)
flags.DEFINE_list(
    "image_size",
    [],
    "height,width to resize images to; default: the model's input size, or the "
    "images' own size when training.",
)
flags.DEFINE_float(
    "validation_fraction",
    0.1,
    "Share of the training images held out for validation (and, for a flat "
    "folder, for test). The same value gives every binary the same splits.",
)
flags.DEFINE_integer(
    "validation_per_class",
    None,
    "For image folders: hold out this many images per class instead "
    "(stratified; the reference recipe holds out 500).",
)
flags.DEFINE_string(
    "output_dir", None, "Where results go (default: /tmp/tfee-<binary>)."
)
flags.DEFINE_integer("seed", 0, "Random seed of weights, splits and shuffling.")
flags.DEFINE_integer(
    "epochs", None, "Training epochs (default: the binary's own, see its help)."
)
flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_integer(
    "train_epochs",
    10,
    "Epochs to train the small default network when --model is empty.",
)
flags.DEFINE_string(
    "head", "sdn", "Exit head type of networks trained here: linear, sdn or conv."
)
flags.DEFINE_string(
    "policy",
    "",
    "A saved exit policy JSON (calibrate.py writes OUTPUT_DIR/policy.json): "
    "export_tflite.py embeds it, run_tflite_cascade.py runs it.",
)
flags.DEFINE_list(
    "quantize",
    [],
    "TFLite variants among float32,float16,dynamic,int8 (default: the binary's "
    "own); int8 is calibrated on --data's validation images.",
)
flags.DEFINE_integer(
    "keras_verbose",
    2,
    "Keras fit verbosity: 0 silent, 1 progress bar, 2 a line per epoch.",
)

flags.register_validator(
    "batch_size", lambda v: v >= 1, message="--batch_size must be a positive integer"
)
flags.register_validator(
    "epochs",
    lambda v: v is None or v >= 0,
    message="--epochs must be a non-negative integer",
)
flags.register_validator(
    "validation_fraction",
    lambda v: 0 < v < 0.5,
    message="--validation_fraction must be in (0, 0.5)",
)


def _image_size_is_valid(value):
    if not value:
        return True
    try:
        return len(value) == 2 and all(int(v) > 0 for v in value)
    except ValueError:
        return False


flags.register_validator(
    "image_size",
    _image_size_is_valid,
    message="--image_size must be two positive integers: height,width",
)


flags.DEFINE_bool(
    "native_logs",
    False,
    "Show what TensorFlow, LiteRT and the converter print from C++ (hidden by "
    "default: the CUDA probe, oneDNN notices, converter statistics).",
)


def quiet():
    """Silences Python deprecation noise and TensorFlow's Python logger.

    Must run before TensorFlow is imported; `run` calls it first.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def _hide_native_logs():
    """Points file descriptor 2 at /dev/null and Python's stderr at a copy of
    the real one: C++ code (TensorFlow's absl logging, which ignores
    TF_CPP_MIN_LOG_LEVEL before InitializeLog, LiteRT, the MLIR converter)
    writes to the descriptor, Python's warnings, errors and tracebacks to
    `sys.stderr`."""
    sys.stderr.flush()
    real = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = os.fdopen(real, "w", buffering=1)


class CommandError(Exception):
    """A failure that ends the binary with a one-line reason, exit code 1."""


def run(main):
    """`app.run(main)`, quiet, with failures turned into one line and exit 1."""

    def guarded(argv):
        if not FLAGS.native_logs:
            _hide_native_logs()
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")
        logging.set_verbosity(logging.ERROR)
        try:
            return main(argv)
        except app.UsageError:
            raise
        except (CommandError, ValueError, TypeError, OSError) as error:
            name = os.path.basename(sys.argv[0])
            reason = str(error).strip().splitlines()[0] if str(error) else repr(error)
            print(f"{name}: error: {reason}", file=sys.stderr)
            sys.exit(1)

    quiet()
    app.run(guarded)


def output_dir(binary):
    """--output_dir, or /tmp/tfee-<binary>; created."""
    from tfee import _files

    path = FLAGS.output_dir or os.path.join("/tmp", f"tfee-{binary}")
    try:  # Before any work, not after it.
        _files.check_output_path(path, binary, "--output_dir", directory=True)
    except ValueError as error:
        raise CommandError(str(error)) from None
    os.makedirs(path, exist_ok=True)
    return path


def epochs(default):
    return default if FLAGS.epochs is None else FLAGS.epochs


def progress(binary, message):
    """One line of tfee's own progress, naming the phase or stage."""
    print(f"[{binary} {time.strftime('%H:%M:%S')}] {message}", flush=True)


def image_size(model_input_shape=None):
    """--image_size, else the model's (height, width), else None."""
    if FLAGS.image_size:
        return tuple(int(v) for v in FLAGS.image_size)
    if model_input_shape is not None:
        return tuple(int(v) for v in model_input_shape[:2])
    return None


def load_data(model_input_shape=None, normalise=False):
    """`tfee.data.load` over --data with the shared flags.

    Images are resized to --image_size or to the model's input size. A model
    that takes one channel gets grey images from an RGB source.
    """
    import tfee
    from tfee import tf

    size = image_size(model_input_shape)
    if FLAGS.data == "digits" and (size in (None, (8, 8))):
        size = None  # the embedded digits are 8x8 already
    try:
        data = tfee.data.load(
            FLAGS.data,
            data_dir=FLAGS.data_dir,
            batch_size=FLAGS.batch_size,
            validation_fraction=FLAGS.validation_fraction,
            validation_per_class=FLAGS.validation_per_class,
            seed=FLAGS.seed,
            image_size=size,
            cache=FLAGS.cache or None,
            normalise=normalise,
        )
    except ValueError as error:
        raise CommandError(f"--data={FLAGS.data!r}: {error}") from None
    channels = model_input_shape[-1] if model_input_shape is not None else None
    if channels is not None and data.input_shape[-1] != channels:
        if channels == 1 and data.input_shape[-1] == 3:
            print(
                f"[shell] --data={FLAGS.data!r} is RGB and the model takes one "
                "channel: feeding the mean of the three channels",
                flush=True,
            )

            def grey(x, y):
                return tf.reduce_mean(x, axis=-1, keepdims=True), y

            splits = [ds.map(grey) for ds in data[:3]]
            data = data._replace(
                train=splits[0],
                validation=splits[1],
                test=splits[2],
                input_shape=data.input_shape[:2] + (1,),
            )
        else:
            raise CommandError(
                f"--data={FLAGS.data!r} has {data.input_shape[-1]} channels; "
                f"the model takes {channels}"
            )
    if model_input_shape is not None and data.input_shape != tuple(model_input_shape):
        raise CommandError(
            f"--data={FLAGS.data!r} gives images of shape {data.input_shape}; "
            f"the model takes {tuple(model_input_shape)}"
        )
    return data


def arrays(dataset):
    """(images, labels) numpy arrays of a batched split."""
    import numpy as np

    images, labels = [], []
    for x, y in dataset:
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels)


def labels_path(model_path):
    """Where a saved network's class names live: `network.labels.txt` beside
    `network.keras`, one name per line (the usual TFLite labels file)."""
    return os.path.splitext(model_path)[0] + ".labels.txt"


def save_network(network, path, class_names):
    """Saves a Keras network atomically, with its class names beside it."""
    from tfee import _files

    _files.write_atomically(path, network.save)
    names = labels_path(path)
    if class_names:
        _files.write_bytes_atomically(names, "".join(f"{n}\n" for n in class_names))
    elif os.path.exists(names):
        os.remove(names)  # a stale file from another run would mislabel this one


def model_class_names(path):
    """The class names a saved network was trained on, or None where unknown:
    a .tflite's metadata labels, else the labels file `save_network` wrote."""
    if path.endswith(".tflite"):
        from tfee.runtime import read_metadata

        return read_metadata(path).get("labels")
    names = labels_path(path)
    if not os.path.isfile(names):
        return None
    with open(names) as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def check_classes(classes, data, flag="model"):
    """Refuses --data whose classes are not the model's: a folder of other (or
    fewer) classes would be numbered 0.. in its own order and every accuracy
    would silently mean nothing."""
    path = getattr(FLAGS, flag)
    if data.num_classes != classes:
        named = f" {list(data.class_names)}" if data.class_names else ""
        raise CommandError(
            f"--data={FLAGS.data!r} has {data.num_classes} classes{named}; "
            f"--{flag}={path} answers {classes} classes. Give data with the classes the "
            "model was trained on (the same class folders)."
        )
    trained = model_class_names(path)
    if trained and data.class_names and list(data.class_names) != list(trained):
        raise CommandError(
            f"--data={FLAGS.data!r} has classes {list(data.class_names)}; "
            f"--{flag}={path} was trained on {list(trained)} (in that order). "
            "Give data with the model's class folders."
        )
    return data


def load_keras_model(flag="model"):
    """The network saved at --model (tfee.load_model), as a CommandError if missing."""
    import tfee

    path = getattr(FLAGS, flag)
    if not os.path.exists(path):
        raise CommandError(f"--{flag}: no such file: {path}")
    try:
        return tfee.load_model(path)
    except ValueError as error:
        raise CommandError(f"--{flag}={path}: {error}") from None


def check_head(head=None):
    import tfee

    head = FLAGS.head if head is None else head
    if head not in tfee.layers.HEAD_TYPES:
        raise app.UsageError(
            f"--head must be one of {sorted(tfee.layers.HEAD_TYPES)}. "
            f"Received: {head!r}"
        )


def model_and_data(binary):
    """(network, data): --model with --data sized for it, or --data and the
    small default network trained on it."""
    import tfee

    if FLAGS.model:
        network = load_keras_model()
        data = load_data(tuple(network.input_shape[1:]))
        return network, check_classes(int(network.outputs[0].shape[-1]), data)
    check_head()
    data = load_data()
    progress(binary, f"training the default network ({FLAGS.train_epochs} epochs)")
    network = tfee.recipes.train_small_network(
        data,
        FLAGS.train_epochs,
        head=FLAGS.head,
        seed=FLAGS.seed,
        verbose=FLAGS.keras_verbose,
    )
    return network, data


def no_arguments(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")


def write_summary(directory, name, summary):
    """Writes `summary` as JSON (atomically) and returns the path."""
    from tfee import report

    path = os.path.join(directory, name)
    report.write_json(path, summary)
    return path


def labels(binary, split):
    """What every JSON summary and plot says about where its numbers come from."""
    return {
        "binary": binary,
        "model": FLAGS.model or "(trained by this run)",
        "data": FLAGS.data,
        "split": split,
        "seed": FLAGS.seed,
        "validation_fraction": FLAGS.validation_fraction,
    }


def title(binary, split):
    model = os.path.basename(FLAGS.model) if FLAGS.model else "new network"
    data = os.path.basename(os.path.normpath(FLAGS.data))
    return f"{model} on {data} ({split} split)"
