"""Loading saved networks with every layer tfee and tfmot define.

A `.keras` or `.h5` file names tfee's layers (`tfee>SDNHead`) and tfmot's
wrappers; Keras can rebuild them only in a process where those classes are
registered. `import tfee` registers tfee's own layers; `load_model` also
opens tfmot's pruning and clustering scopes, so a network saved in the
middle of pruning or clustering loads the same way (as .keras or .h5). A
quantization-aware network does not survive a file (tfmot cannot rebuild
its wrappers): export it to .tflite instead.

A process that cannot import tfee (a server, another team's code) loads the
network's SavedModel instead: `network.export(path)` writes one that serves
with TensorFlow alone (`tf.saved_model.load(path).serve(images)`).
"""

import contextlib
import os
import warnings
import zipfile

from tfee import _tfmot
from tfee import keras3
from tfee._keras import keras
from tfee._keras import tfmot

__all__ = ["load_model"]

_FORMATS = (".keras", ".h5", ".hdf5", "a SavedModel directory")


def load_model(path, compile=True):
    """Loads a network saved with `model.save`, pruned or clustered ones too.

    Args:
      path: a `.keras` or `.h5` file, or a SavedModel directory written by
        `model.save`. A `.keras` file Keras 3 saved is converted by
        `tfee.from_keras3` (with a one-line warning saying so).
      compile: restore the optimizer, loss and metrics saved with the model.

    Returns:
      The tf_keras model.

    Raises:
      FileNotFoundError: nothing exists at `path`.
      ValueError: `path` is not one of the formats Keras saves, or holds a
        quantization-aware network (tfmot cannot rebuild one from a file).

    Example:
      >>> network.save("net.keras")
      >>> network = tfee.load_model("net.keras")  # in another process
    """
    api = "tfee.load_model"
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{api}: no file or directory at `path`. Received: path={path!r}"
        )
    if not os.path.isdir(path) and not path.lower().endswith(_FORMATS[:-1]):
        raise ValueError(
            f"{api}: `path` must be one of {_FORMATS}. Received: path={path!r}"
        )
    _check_container(path, api)
    if keras3.is_keras3_file(path):
        warnings.warn(
            f"{api}: {path} was saved by Keras 3; converted to tf_keras with "
            "tfee.from_keras3 (same layers, names and weights).",
            stacklevel=2,
        )
        return keras3.from_keras3(path)
    _refuse_quantization_aware(path, api)
    with contextlib.ExitStack() as scopes:
        scopes.enter_context(tfmot.sparsity.keras.prune_scope())
        scopes.enter_context(tfmot.clustering.keras.cluster_scope())
        scopes.enter_context(tfmot.quantization.keras.quantize_scope())
        scopes.enter_context(
            keras.utils.custom_object_scope(
                {**_tfmot.named_on_load_wrappers(), **_bare_tfee_names()}
            )
        )
        return keras.models.load_model(path, compile=compile)


def _refuse_quantization_aware(path, api):
    """tfmot 0.8.1 cannot rebuild its quantize wrappers from a tf_keras 2.21
    file (.keras: "expected 6 variables, but received 7"; .h5: a shape
    mismatch or "name already exists" on saving), so a QAT network is
    named before Keras fails deep inside."""
    if os.path.isdir(path):
        return
    if path.lower().endswith(".keras"):
        with zipfile.ZipFile(path) as archive:
            if "config.json" not in archive.namelist():
                return  # Not a Keras archive: Keras names it.
            config = archive.read("config.json").decode("utf-8", "replace")
    else:
        import h5py

        with h5py.File(path, "r") as f:
            config = str(f.attrs.get("model_config", ""))
    if '"QuantizeWrapper' in config or '"QuantizeLayer"' in config:
        raise ValueError(
            f"{api}: {path} holds a quantization-aware (QAT) network, which "
            "tfmot cannot rebuild from a file. Save the network QAT starts "
            "from and run QAT again, or export the QAT network before the "
            "process ends: tfee.export.tflite(qat, path, quantize='int8', "
            "representative=...)."
        )


def _bare_tfee_names():
    """tfee's registered classes under their bare names too: tfmot's
    pruning and clustering wrappers serialise the layer they wrap as
    `SDNHead`, not `tfee>SDNHead`, in .h5 files, and rebuild it by that name."""
    return {
        name.split(">", 1)[1]: cls
        for name, cls in keras.saving.get_custom_objects().items()
        if name.startswith("tfee>")
    }


def _check_container(path, api):
    """Raises where the file is not what its suffix says (a truncated copy,
    another format renamed), before Keras' messages about zip or HDF5
    signatures."""
    if os.path.isdir(path):
        return
    with open(path, "rb") as f:
        head = f.read(8)
    if path.lower().endswith(".keras"):
        if head[:4] != b"PK\x03\x04" or not zipfile.is_zipfile(path):
            raise ValueError(
                f"{api}: {path} is not a Keras .keras file (a zip archive): it is "
                "truncated or in another format. Received: "
                f"{os.path.getsize(path)} bytes starting {head!r}"
            )
    elif head != b"\x89HDF\r\n\x1a\n":
        raise ValueError(
            f"{api}: {path} is not an HDF5 (.h5) file: it is truncated or in "
            f"another format. Received: {os.path.getsize(path)} bytes starting "
            f"{head!r}"
        )
