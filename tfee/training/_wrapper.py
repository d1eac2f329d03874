"""A `keras.Model` wrapper whose loss sees every exit at once.

A per-output Keras loss cannot see the other outputs, so losses that mix
exits (EENet's cascade, distillation from the deepest exit) live in a model
that wraps the functional network and owns `train_step` / `test_step`. The
wrapper trains the network's own variables in place, so `fit`, callbacks,
`tf.data` and `tf.distribute` all work as with the network itself.
"""

from tfee import naming
from tfee._keras import keras
from tfee._keras import require_functional_model
from tfee._keras import tf

__all__ = []


def class_indices(labels, classes):
    """Integer class labels (batch,), also from one-hot rows (batch, classes),
    a common Keras habit that would otherwise be read as batch x classes
    labels."""
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank == 2 and labels.shape[-1] == classes and classes > 1:
        return tf.argmax(labels, axis=-1, output_type=tf.int32)
    indices = tf.reshape(tf.cast(labels, tf.int32), [-1])
    # TensorFlow's cross-entropy raises on CPU for a label outside
    # [0, classes) but returns NaN on GPU; both runs get this message.
    message = (
        f"tfee: labels must be class indices in [0, {classes}) for a network "
        f"of {classes} classes (or one-hot rows of {classes}); this batch has "
        "a label outside (labels of another data set or class count?)"
    )
    # One comparison covers both ends: a negative label wraps to a huge
    # unsigned one.
    in_range = tf.debugging.assert_less(
        tf.cast(indices, tf.uint32), tf.constant(classes, tf.uint32), message=message
    )
    with tf.control_dependencies([in_range]):
        return tf.identity(indices)


def require_trainable(network, api, argument="network"):
    """Raises if `network` has no trainable weights left (e.g. fully frozen)."""
    if not network.trainable_weights:
        raise ValueError(
            f"{api}: `{argument}` has nothing left to train: all of its weights are "
            "frozen (trainable=False). Attach exits with "
            "`tfee.attach_exits(..., freeze_backbone=True)` to train only the heads, "
            f"or unfreeze some layers. Received: {argument}={network.name!r} with "
            f"{len(network.non_trainable_weights)} non-trainable and 0 trainable "
            "weights"
        )


def output_roles(network):
    """The outputs' tfee names (exit_k, confidence_k, or None), in output order.

    tfmot's prune_low_magnitude / cluster_weights over a whole model wrap the
    exit_k output layers too, which renames the outputs; those names
    (prune_low_magnitude_exit_1) count as exit_1.
    """
    roles = []
    for parsed in map(naming.parse_output, network.output_names):
        if parsed is None:
            roles.append(None)
        else:
            kind, k = parsed
            roles.append(
                naming.exit_name(k)
                if kind == naming.EXIT
                else naming.confidence_name(k)
            )
    return roles


def exit_names(network):
    """The outputs' `exit_k` names, in output order."""
    return [r for r in output_roles(network) if r and naming.exit_number(r)]


def require_network(network, api, argument="network"):
    """Raises unless `network` is a (possibly tfmot-wrapped) early-exit network."""
    require_functional_model(network, api, argument=argument, single_output=False)
    names = exit_names(network)
    expected = [naming.exit_name(k) for k in range(1, len(names) + 1)]
    if len(names) < 2 or names != expected:
        raise ValueError(
            f"{api}: `{argument}` is not a tfee early-exit network (outputs named "
            "exit_1..exit_K); build one with tfee.attach_exits. Received outputs: "
            f"{network.output_names}"
        )


class ExitLossModel(keras.Model):
    """Base class: per-sample loss from all outputs at once, per-exit metrics.

    Subclasses implement `_per_sample_losses(x, y, outputs, training)` and
    return a dict whose "loss" entry is a (batch,) tensor; every other entry
    is a (batch,) tensor logged under its key as a running mean.
    """

    def __init__(self, network, api, extra_metrics=(), **kwargs):
        super().__init__(**kwargs)
        require_network(network, api)
        require_trainable(network, api)
        self._api = api
        self._exit_names = exit_names(network)
        self._output_index = {
            role: i for i, role in enumerate(output_roles(network)) if role
        }
        # A network built under a tf.distribute strategy trains under it, also
        # when this wrapper is made outside `strategy.scope()`: otherwise fit
        # would update its MirroredVariables from the default strategy (a
        # TypeError deep inside the optimizer).
        strategy = getattr(network, "_distribution_strategy", None)
        if strategy is not None:
            self._distribution_strategy = strategy
        with self.distribute_strategy.scope():
            self._trackers = {
                name: keras.metrics.Mean(name=name)
                for name in ("loss",) + extra_metrics
            }
            self._accuracies = [
                keras.metrics.SparseCategoricalAccuracy(name=f"{name}_accuracy")
                for name in self._exit_names
            ]
        # The wrapped network is built, so the wrapper is too: otherwise
        # BackupAndRestore warns that the model is unbuilt (it still restores,
        # by deferred restoration).
        self.built = True

    def _network(self):
        raise NotImplementedError

    def compile(self, optimizer="rmsprop", metrics=None, **kwargs):
        """Configures training; the loss is the wrapper's own.

        Args:
          optimizer: any Keras optimizer (or its name).
          metrics: not accepted: every exit's accuracy is logged already.
          **kwargs: passed to `keras.Model.compile` (e.g. `steps_per_execution`,
            `jit_compile`, `run_eagerly`); `loss` and `loss_weights` are not
            accepted.
        """
        for key in ("loss", "loss_weights"):
            if kwargs.get(key) is not None:
                raise ValueError(
                    f"{self._api}.compile: `{key}` is defined by {self._api} "
                    f"itself and cannot be given. Received: {key}={kwargs[key]!r}"
                )
            kwargs.pop(key, None)
        if metrics:
            raise ValueError(
                f"{self._api}.compile: `metrics` is not accepted; every exit's "
                f"accuracy is logged as exit_k_accuracy. Received: metrics={metrics!r}"
            )
        super().compile(optimizer=optimizer, **kwargs)

    @property
    def metrics(self):
        return list(self._trackers.values()) + self._accuracies

    def save(self, filepath, *args, **kwargs):
        """Saves the early-exit network this wrapper trains (not the wrapper).

        The wrapper holds only a loss; what a user (or
        `keras.callbacks.ModelCheckpoint`) wants to load back is the trained
        network, which `keras.models.load_model` then returns. A `.keras`
        file of the wrapper itself could not be loaded.
        """
        return self._network().save(filepath, *args, **kwargs)

    def call(self, inputs, training=None):
        return self._network()(inputs, training=training)

    def _exit_logits(self, outputs):
        return [outputs[self._output_index[n]] for n in self._exit_names]

    def _output(self, outputs, name):
        return outputs[self._output_index[name]]

    def _step(self, data, training):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if y is None:
            raise ValueError(
                f"{self._api}: the data must yield (images, labels) pairs; "
                "received images only"
            )
        network = self._network()
        y = class_indices(y, network.outputs[0].shape[-1])
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            outputs = network(x, training=training)
            if not isinstance(outputs, (list, tuple)):
                outputs = [outputs]
            terms = self._per_sample_losses(x, y, list(outputs), training)
            weights = (
                tf.ones_like(terms["loss"])
                if sample_weight is None
                else tf.reshape(tf.cast(sample_weight, terms["loss"].dtype), [-1])
            )
            loss = tf.reduce_mean(terms["loss"] * weights)
            if network.losses:
                loss += tf.add_n(network.losses)
            # Gradients are summed over replicas, so each replica's loss is
            # divided by their number (what Keras's compiled loss does).
            scaled = loss / tf.cast(replicas, loss.dtype)
        if training:
            # Variables outside this loss (e.g. learned confidences under
            # distillation) get no gradient and are left alone, silently.
            variables = network.trainable_variables
            gradients = tape.gradient(scaled, variables)
            self.optimizer.apply_gradients(
                [(g, v) for g, v in zip(gradients, variables) if g is not None]
            )
        for name, value in terms.items():
            if name == "loss":
                self._trackers["loss"].update_state(loss)
            else:
                self._trackers[name].update_state(value, sample_weight=weights)
        for metric, logits in zip(self._accuracies, self._exit_logits(outputs)):
            metric.update_state(y, logits, sample_weight=sample_weight)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        return self._step(data, training=True)

    def test_step(self, data):
        return self._step(data, training=False)
