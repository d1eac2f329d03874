"""Keras 3 models into tf_keras: the entrance for models built with `import keras`.

TensorFlow 2.16+ installs Keras 3 as `keras` and `tf.keras`, so most models
people train today are Keras 3 models; tfee works in tf_keras (Keras 2)
because tfmot does. `from_keras3` rebuilds a Keras 3 functional or Sequential
model, layer by layer from its config, as a tf_keras functional model with
the same graph, layer names and weights.

A `.keras` file is read from the file alone, without Keras 3's loader: its
`config.json` describes the graph and `model.weights.h5` holds each layer's
variables under a path named after the layer's class
(`layers/conv2d_1/vars/0`), numbered per container in layer order, which
`_h5_key` reproduces. (The Keras 3 package is imported in any case: tfmot
imports it.) A Keras 3 model object is read through its own `get_config()`
and weights.

What differs between the two Keras is translated: `InputLayer`'s
`batch_shape`, dtype policies (`DTypePolicy` -> its name), initializer,
regularizer and constraint configs (`module`/`registered_name` dropped),
nested models, and call nodes (`{"args", "kwargs"}` -> tf_keras' inbound
node lists). An argument tf_keras lacks is dropped only where it holds the
value that means "off" in Keras 3 (`lora_rank=None`, ...); otherwise, and for
custom or unknown layers, the layer is refused by name.
"""

import inspect
import json
import os
import re
import zipfile

import numpy as np

from tfee import _keras
from tfee._keras import keras

__all__ = ["from_keras3", "is_keras3_file"]

API = "tfee.from_keras3"

# Keras 3 arguments that tf_keras lacks, with the value at which leaving them
# out changes nothing.
_NEUTRAL = {
    "lora_rank": None,
    "lora_alpha": None,
    "quantization_config": None,
    "optional": False,
    "input_axes": None,
    "output_axes": None,
    "gradient_checkpointing": False,
    "seed_generator": None,
    "rms_scaling": False,
    "use_gate": False,
    "data_format": "channels_last",
}
# Arguments the two Keras name differently, same meaning.
_RENAMED = {
    ("InputLayer", "batch_shape"): "batch_input_shape",
    ("LeakyReLU", "negative_slope"): "alpha",
}

# Names the two Keras define differently: Keras 3's hard_sigmoid is
# relu6(x + 3) / 6, tf_keras' clip(0.2 x + 0.5, 0, 1).
_DIFFERENT_ACTIVATIONS = ("hard_sigmoid",)
# Base Layer arguments tf_keras accepts through **kwargs.
_LAYER_KWARGS = {"name", "trainable", "dtype", "dynamic", "batch_input_shape"}
_CONTAINERS = ("Functional", "Sequential", "Model")


class Keras3Error(ValueError):
    """A Keras 3 model that cannot be rebuilt in tf_keras, with the reason."""


def is_keras3_file(path):
    """Whether `path` is a `.keras` archive written by Keras 3."""
    if not str(path).lower().endswith(".keras") or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        if "metadata.json" not in archive.namelist():
            return False
        metadata = json.loads(archive.read("metadata.json"))
    return str(metadata.get("keras_version", "")).startswith("3.")


def from_keras3(model):
    """Rebuilds a Keras 3 functional or Sequential model as a tf_keras model.

    Args:
      model: a Keras 3 `keras.Model` (functional or Sequential), or the path
        of a `.keras` file Keras 3 saved (read without importing Keras 3).

    Returns:
      A tf_keras functional (or Sequential) model with the same layers,
      layer names, graph and weights, ready for `tfee.attach_exits`.

    Raises:
      FileNotFoundError: no file at `model`.
      TypeError: `model` is neither a Keras 3 model nor a path; a subclassed
        Keras 3 model (it has no config to rebuild).
      ValueError: a layer tf_keras has no counterpart for (a custom layer, a
        Lambda, a Keras 3 operation, an activation defined otherwise) or one
        set with an argument tf_keras lacks; the message names the layer.
        Also where the rebuilt model computes otherwise than the Keras 3 one
        on a random batch (checked for float inputs of known size; a file
        is loaded by Keras 3 for this check only, where it can be).

    Example:
      >>> import keras  # Keras 3
      >>> k3 = keras.applications.MobileNetV2(weights=None, alpha=0.35)
      >>> backbone = tfee.from_keras3(k3)
      >>> network = tfee.attach_exits(backbone, tfee.FlopsFractions([0.5]))
    """
    if isinstance(model, (str, os.PathLike)):
        config, weights = _read_file(os.fspath(model))
    else:
        config, weights = _read_object(model)
    rebuilt = _build(config)
    _freeze_as_saved(rebuilt, config)
    _assign(rebuilt, weights, ())
    source = model
    if isinstance(model, (str, os.PathLike)):
        source = _keras3_model_of(os.fspath(model))
    if source is not None:
        _check_same_outputs(source, rebuilt)
    return rebuilt


def _keras3_model_of(path):
    """The file loaded by Keras 3 for the output check, or None where Keras 3
    cannot load it (the conversion itself never needs it)."""
    try:
        import keras as keras3

        return keras3.saving.load_model(path, compile=False)
    except Exception:  # noqa: BLE001 (any failure only skips the check)
        return None


def _check_same_outputs(model, rebuilt):
    """Runs both models on one random batch: a layer whose tf_keras
    counterpart computes something else would otherwise pass silently.
    Skipped where no batch can be drawn (unknown sizes, integer inputs)."""
    inputs = rebuilt.inputs
    if any(
        not t.dtype.is_floating or any(d is None for d in t.shape[1:]) for t in inputs
    ):
        return
    rng = np.random.default_rng(0)
    batch = [
        rng.normal(size=(2,) + tuple(t.shape[1:])).astype(t.dtype.as_numpy_dtype)
        for t in inputs
    ]
    batch = batch[0] if len(batch) == 1 else batch
    want = _as_list(model(batch, training=False))
    got = _as_list(rebuilt(batch, training=False))
    # float16 compute rounds at ~1e-3.
    half = any(
        getattr(layer, "compute_dtype", "float32") in ("float16", "bfloat16")
        for layer in rebuilt.layers
    )
    tolerance = 1e-2 if half else 1e-4
    for k, (w, g) in enumerate(zip(want, got)):
        scale = max(1.0, float(np.abs(w).max()))
        if w.shape != g.shape or not np.allclose(
            g, w, rtol=tolerance, atol=tolerance * scale
        ):
            difference = np.abs(g - w).max() if w.shape == g.shape else None
            raise Keras3Error(
                f"{API}: the rebuilt tf_keras model does not compute what the "
                f"Keras 3 model does (output {k}: largest difference {difference} "
                f"on a random batch, shapes {w.shape} vs {g.shape}); a layer "
                "behaves differently in the two Keras. Please report the model."
            )


def _as_list(outputs):
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return [np.asarray(o, dtype=np.float64) for o in outputs]


def _freeze_as_saved(model, config):
    """tf_keras' from_config leaves a model's own `trainable` flag at True;
    a frozen nested base (transfer learning) must stay frozen."""
    if not config["config"].get("trainable", True):
        model.trainable = False
    for entry in config["config"]["layers"]:
        if entry["class_name"] in _CONTAINERS:
            _freeze_as_saved(model.get_layer(entry["config"]["name"]), entry)


def _read_file(path):
    import h5py

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{API}: no file at path={path!r}")
    if not is_keras3_file(path):
        raise ValueError(
            f"{API}: {path} is not a .keras file saved by Keras 3 (its "
            "metadata.json names no Keras 3 version); load a tf_keras file "
            "with tfee.load_model."
        )
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
        with archive.open("model.weights.h5") as stream:
            with h5py.File(stream, "r") as store:
                weights = {}
                _h5_weights(config, store["/"], (), weights)
    return config, weights


def _h5_key(class_name, used):
    """Keras 3's name for a layer's group in model.weights.h5: its class in
    snake case, numbered from the second of that class in its container."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
    used[name] = used.get(name, -1) + 1
    return name if used[name] == 0 else f"{name}_{used[name]}"


def _h5_weights(container, group, names, weights):
    """{layer name path: [arrays]} of every layer under `container`."""
    used = {}
    children = group["layers"] if "layers" in group else {}
    for layer in container["config"]["layers"]:
        if (
            container["class_name"] == "Sequential"
            and layer["class_name"] == "InputLayer"
        ):
            continue  # A Sequential's layers, which name the groups, omit it.
        key = _h5_key(layer["class_name"], used)
        path = names + (layer["config"]["name"],)
        if key not in children:
            continue  # _assign names any layer left without its weights.
        node = children[key]
        if layer["class_name"] in _CONTAINERS:
            _h5_weights(layer, node, path, weights)
        elif "vars" in node and len(node["vars"]):
            variables = node["vars"]
            weights[path] = [
                np.asarray(variables[str(i)]) for i in range(len(variables))
            ]


def _read_object(model):
    if not _keras.is_keras3_object(model):
        raise TypeError(
            f"{API} expects a Keras 3 model or the path of a .keras file Keras 3 "
            f"saved. Received: model={type(model).__module__}.{type(model).__name__}"
        )
    class_name = type(model).__name__
    if class_name not in ("Functional", "Sequential"):
        raise TypeError(
            f"{API}: a subclassed Keras 3 model ({class_name}) has no config to "
            "rebuild from; build it with the functional API or Sequential."
        )
    if not model.built:
        raise ValueError(
            f"{API}: the Keras 3 model {model.name!r} is not built yet (a "
            "Sequential without an Input): call it once on a batch, or start it "
            "with keras.Input(shape), then convert it."
        )
    config = {"class_name": class_name, "config": model.get_config()}
    weights = {}
    _object_weights(model, (), weights)
    return config, weights


def _object_weights(model, names, weights):
    for layer in model.layers:
        path = names + (layer.name,)
        if type(layer).__name__ in _CONTAINERS:
            _object_weights(layer, path, weights)
        elif layer.weights:
            weights[path] = [np.asarray(w.numpy()) for w in layer.weights]


def _build(config):
    translated = _container(config)
    if config["class_name"] == "Sequential":
        return keras.Sequential.from_config(translated["config"])
    return keras.Model.from_config(translated["config"])


def _container(layer):
    """A Functional or Sequential config in tf_keras' form."""
    source = layer["config"]
    sequential = layer["class_name"] == "Sequential"
    # A nested tf_keras model keeps the node its own graph made as node 0,
    # so its calls in the outer graph count from 1 (Keras 3: from 0).
    nested = {
        entry["config"].get("name", entry.get("name"))
        for entry in source["layers"]
        if entry["class_name"] in _CONTAINERS
    }
    nested_sequential = {
        entry["config"].get("name", entry.get("name"))
        for entry in source["layers"]
        if entry["class_name"] == "Sequential"
    }
    layers = [_layer(entry, sequential, nested) for entry in source["layers"]]
    config = {
        "name": source.get("name", layer.get("name")),
        "trainable": source.get("trainable", True),
        "layers": layers,
    }
    if not sequential:
        config["input_layers"] = _endpoints(source["input_layers"], nested_sequential)
        config["output_layers"] = _endpoints(source["output_layers"], nested_sequential)
    return {"class_name": layer["class_name"], "config": config}


def _endpoints(value, sequential):
    """[[layer, node, tensor], ...]: Keras 3 writes one endpoint unnested.
    Its endpoints already count a nested Functional's own node (node
    arguments do not); a nested Sequential's they do not."""
    if isinstance(value, dict):
        raise Keras3Error(
            f"{API}: models with dict inputs or outputs are not rebuilt; use "
            "lists. Received: " + json.dumps(value)[:200]
        )
    if value and isinstance(value[0], str):
        value = [value]
    return [_history(v, sequential)[:3] for v in value]


def _history(history, nested):
    name, node, tensor = history[:3]
    return [name, node + 1 if name in nested else node, tensor]


def _layer(entry, in_sequential, nested):
    class_name = entry["class_name"]
    name = entry.get("name") or entry["config"].get("name")
    if class_name in _CONTAINERS:
        translated = _container(entry)
    else:
        translated = {"class_name": class_name, "config": _layer_config(entry)}
    if not in_sequential:
        translated["name"] = name
        translated["inbound_nodes"] = [
            _node(node, name, nested) for node in entry.get("inbound_nodes", [])
        ]
    return translated


def _layer_config(entry):
    class_name, config = entry["class_name"], entry["config"]
    name = config.get("name")
    module = entry.get("module") or ""
    registered = entry.get("registered_name")
    cls = getattr(keras.layers, class_name, None)
    if module.startswith("keras.src.ops") or module.startswith("keras.ops"):
        # `keras.ops.mean(x)` in a functional graph is an operation whose
        # name may match a tf_keras layer of other semantics (ops Reshape
        # counts the batch axis, layers.Reshape does not).
        raise Keras3Error(
            f"{API}: {name!r} is a Keras 3 operation ({module}.{class_name}) "
            "called on tensors in the graph; tf_keras has no counterpart. "
            "Write it as a layer (e.g. keras.layers.Reshape, Add, Multiply) in "
            "the Keras 3 model, then convert it."
        )
    if (registered and registered != class_name) or not module.startswith(
        ("keras.layers", "keras.src.layers")
    ):
        raise Keras3Error(
            f"{API}: layer {name!r} is a custom Keras 3 layer ({registered or class_name} "
            f"from {module or 'an unknown module'}); tfee rebuilds only Keras' own "
            "layers. Write it as a tf_keras layer (`from tfee import keras`) and "
            "rebuild the model with it, or replace it with built-in layers."
        )
    if cls is None or class_name in ("Lambda", "TFSMLayer", "TorchModuleWrapper"):
        raise Keras3Error(
            f"{API}: layer {name!r} ({class_name}) has no tf_keras counterpart tfee "
            "can rebuild. Replace it with built-in layers (a Lambda with a "
            "layer that does the same) in the Keras 3 model, then convert it."
        )
    translated = {}
    for key, value in config.items():
        key = _RENAMED.get((class_name, key), key)
        if key == "activation":
            _check_activation(value, name)
        translated[key] = _value(value, name, key)
    return _accepted(cls, translated, name, class_name)


def _check_activation(value, name):
    if not isinstance(value, str):
        return  # A dict: _value refuses it by name.
    try:
        known = keras.activations.get(value) is not None
    except (TypeError, ValueError):
        known = False
    if value in _DIFFERENT_ACTIVATIONS or not known:
        reason = (
            "computes something else in tf_keras"
            if value in _DIFFERENT_ACTIVATIONS
            else "does not exist in tf_keras"
        )
        raise Keras3Error(
            f"{API}: layer {name!r} uses activation={value!r}, which {reason}. "
            "Use another activation (or a layer doing the same) in the Keras 3 "
            "model, then convert it."
        )


def _accepted(cls, config, name, class_name):
    """`config` without the Keras 3 arguments tf_keras's `cls` lacks, where
    they hold their neutral value; raises for any other."""
    # Subclasses hand arguments on in **kwargs (BatchNormalization's renorm
    # reaches its base class): every __init__ up the hierarchy counts.
    accepted = set(_LAYER_KWARGS)
    for base in cls.__mro__:
        if "__init__" in vars(base):
            accepted |= set(inspect.signature(base.__init__).parameters)
    result = {}
    for key, value in config.items():
        if key in accepted:
            result[key] = value
        elif key in _NEUTRAL and value == _NEUTRAL[key]:
            continue  # Keras 3's "off": tf_keras behaves so without it.
        else:
            raise Keras3Error(
                f"{API}: layer {name!r} ({class_name}) sets `{key}`={value!r}, "
                f"which tf_keras's {class_name} does not have (its value there "
                "would be ignored). Rebuild the layer without it in the Keras 3 "
                "model, then convert it."
            )
    return result


def _value(value, name, key):
    """One config value in tf_keras' form."""
    if not isinstance(value, dict):
        return value
    class_name = value.get("class_name")
    module = value.get("module") or ""
    if class_name in ("DTypePolicy", "FloatDTypePolicy"):
        return value["config"]["name"]
    for kind in ("initializers", "regularizers", "constraints"):
        if module in (f"keras.{kind}", f"keras.src.{kind}") or module.startswith(
            f"keras.src.{kind}."
        ):
            cls = getattr(getattr(keras, kind), class_name, None)
            if cls is None or value.get("registered_name") not in (None, class_name):
                raise Keras3Error(
                    f"{API}: layer {name!r} sets `{key}` to {class_name}, which "
                    f"tf_keras has no {kind[:-1]} named so. Use a built-in one."
                )
            config = dict(value.get("config") or {})
            return {
                "class_name": class_name,
                "config": _accepted(cls, config, f"{name}.{key}", class_name),
            }
    if class_name == "__keras_tensor__":
        raise Keras3Error(
            f"{API}: layer {name!r} takes a tensor in `{key}`; tfee rebuilds layers "
            "whose configs hold plain values only."
        )
    raise Keras3Error(
        f"{API}: layer {name!r} sets `{key}` to a {class_name or 'dict'} object "
        f"tfee cannot translate: {json.dumps(value)[:200]}"
    )


def _node(node, name, nested):
    """One call of a layer in tf_keras' inbound-node form."""
    if isinstance(node, list):  # Already tf_keras' form.
        return node
    kwargs = {}
    for key, value in (node.get("kwargs") or {}).items():
        if value is None:
            continue  # mask=None and the like: tf_keras passes nothing.
        if key == "training" and value is False:
            kwargs[key] = value
            continue
        if key == "training":
            # Keras 3 lets fit's and predict's own `training` override it;
            # tf_keras keeps it in every call (MC dropout at inference).
            raise Keras3Error(
                f"{API}: layer {name!r} is called with training={value!r}, which "
                "Keras 3 overrides at call time but tf_keras would keep in every "
                "call. Remove it (or use training=False) in the Keras 3 model."
            )
        raise Keras3Error(
            f"{API}: layer {name!r} is called with `{key}`={value!r}; tfee "
            "rebuilds calls whose keyword arguments are `training` only."
        )
    inputs = []

    def collect(value):
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            history = _history(value["config"]["keras_history"], nested)
            inputs.append(history + [kwargs])
        elif isinstance(value, (list, tuple)):
            for item in value:
                collect(item)
        elif isinstance(value, dict):
            for item in value.values():
                collect(item)
        else:
            raise Keras3Error(
                f"{API}: layer {name!r} is called with a constant argument "
                f"({value!r}); tfee rebuilds calls on tensors only."
            )

    collect(node.get("args", []))
    return inputs


def _assign(model, weights, names):
    """Sets every layer's weights from `weights` ({name path: arrays})."""
    for layer in model.layers:
        path = names + (layer.name,)
        if isinstance(layer, keras.Model):
            _assign(layer, weights, path)
            continue
        values = weights.get(path)
        if values is None:
            if layer.weights:
                raise Keras3Error(
                    f"{API}: no weights were found for layer {'/'.join(path)!r}; "
                    "the file or model holds none for it."
                )
            continue
        expected = [tuple(w.shape) for w in layer.weights]
        received = [tuple(v.shape) for v in values]
        if expected != received:
            raise Keras3Error(
                f"{API}: layer {'/'.join(path)!r} ({type(layer).__name__}) holds "
                f"weights of shapes {expected} in tf_keras but {received} in Keras "
                "3; tfee cannot map them."
            )
        layer.set_weights(values)
        if hasattr(layer, "finalize_state"):
            # Preprocessing layers (Normalization) derive their constants
            # from the adapted variables just set.
            layer.finalize_state()
