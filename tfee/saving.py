"""Loading saved networks with every layer tfee and tfmot define.

A `.keras` or `.h5` file names tfee's layers (`tfee>SDNHead`) and tfmot's
wrappers; Keras can rebuild them only in a process where those classes are
registered. `import tfee` registers tfee's own layers; `load_model` also
opens tfmot's pruning, clustering and quantization scopes, so a network saved
in the middle of any compression loads the same way.

A process that cannot import tfee (a server, another team's code) loads the
network's SavedModel instead: `network.export(path)` writes one that serves
with TensorFlow alone (`tf.saved_model.load(path).serve(images)`).
"""

import contextlib
import os
import zipfile

from tfee._keras import keras
from tfee._keras import tfmot

__all__ = ["load_model"]

_FORMATS = (".keras", ".h5", ".hdf5", "a SavedModel directory")


def load_model(path, compile=True):
    """Loads a network saved with `model.save`, pruned, clustered or QAT ones too.

    Args:
      path: a `.keras` or `.h5` file, or a SavedModel directory written by
        `model.save`.
      compile: restore the optimizer, loss and metrics saved with the model.

    Returns:
      The tf_keras model.

    Raises:
      FileNotFoundError: nothing exists at `path`.
      ValueError: `path` is not one of the formats Keras saves.

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
    with contextlib.ExitStack() as scopes:
        scopes.enter_context(tfmot.sparsity.keras.prune_scope())
        scopes.enter_context(tfmot.clustering.keras.cluster_scope())
        scopes.enter_context(tfmot.quantization.keras.quantize_scope())
        return keras.models.load_model(path, compile=compile)


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
