"""Knowledge distillation into an early-exit network, trained with `fit`.

The teacher is the student's own deepest exit (self-distillation, gradient
stopped) or a separate frozen model such as the uncompressed network before
pruning or clustering (ESCEPE). Each distilled exit's loss is

    kd_weight * T^2 * KL(softmax(teacher / T) || softmax(exit / T))
        + (1 - kd_weight) * CE(labels, exit)

(Hinton et al., 2015; the recipe tfee follows uses T = 3, kd_weight = 0.3).
"""

import numpy as np

from tfee import naming
from tfee._keras import keras
from tfee._keras import require_tf_keras
from tfee._keras import tf
from tfee.training import losses
from tfee.training._wrapper import ExitLossModel
from tfee.training._wrapper import exit_names
from tfee.training._wrapper import output_roles

__all__ = ["Distiller", "distillation_loss"]

_MATCHES = ("deepest", "per_exit")


def _ends_in_softmax(output):
    """Whether a model output is a softmax's probabilities."""
    layer = output._keras_history.layer
    if isinstance(layer, keras.layers.Softmax):
        return True
    return getattr(layer, "activation", None) is keras.activations.softmax


def _as_logits(probabilities):
    """Logits whose softmax is `probabilities` (log p, up to a constant)."""
    return tf.math.log(tf.clip_by_value(probabilities, 1e-30, 1.0))


def distillation_loss(labels, student_logits, teacher_logits, temperature, kd_weight):
    """Per-sample `kd_weight * T^2 * KL + (1 - kd_weight) * CE` for one exit.

    Args:
      labels: int labels (batch,).
      student_logits: (batch, classes) logits.
      teacher_logits: (batch, classes) logits (gradient is stopped here).
      temperature: the softmax temperature T > 0.
      kd_weight: the distillation share in [0, 1].

    Returns:
      A (batch,) tensor.
    """
    teacher = tf.nn.softmax(tf.stop_gradient(teacher_logits) / temperature)
    log_student = tf.nn.log_softmax(student_logits / temperature)
    log_teacher = tf.math.log(tf.clip_by_value(teacher, 1e-12, 1.0))
    kl = tf.reduce_sum(teacher * (log_teacher - log_student), -1)
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=student_logits
    )
    return kd_weight * temperature**2 * kl + (1.0 - kd_weight) * cross_entropy


def _check_number(value, argument, accepted, valid):
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not np.isfinite(value)
        or not valid(value)
    ):
        raise ValueError(
            f"tfee.Distiller: `{argument}` must be {accepted}. "
            f"Received: {argument}={value!r}"
        )


class Distiller(ExitLossModel):
    """Trains an early-exit student with distillation, in place, via `fit`.

    With `teacher=None` (self-distillation) every shallow exit learns from
    the student's own deepest exit (gradient stopped) and the deepest exit
    from the labels alone. With a teacher model (frozen: called with
    `training=False`, never updated) every student exit, the deepest
    included, is distilled: from the teacher's deepest exit when
    `match="deepest"` (default), or from the teacher's exit of the same
    index when `match="per_exit"` (the teacher must then have as many exits).
    A teacher that is a plain classifier (one logits output) is always
    matched to every exit. The loss is the weighted sum over exits (`weights`), and the student's
    variables are trained in place (it is not cloned, so tfmot-wrapped pruned
    or clustered students keep their wrappers). Logs `loss`, `exit_k_loss`
    and `exit_k_accuracy` for every exit.

    Args:
      student: a tfee early-exit network (possibly tfmot-wrapped).
      teacher: None, a tfee early-exit network, or a single-output tf_keras
        model. Same input shape and class count as the student. A teacher
        output that ends in softmax (a `Softmax` layer or a layer with
        `activation="softmax"`) is read as probabilities and distilled from
        their log, whose softmax at any temperature equals the logits'.
      temperature: softmax temperature T > 0.
      kd_weight: distillation share in [0, 1] (the rest is cross-entropy).
      match: "deepest" or "per_exit"; see above.
      weights: each exit's share of the loss, as in `tfee.losses.joint`:
        "uniform", "sdn" (ramped by `tfee.callbacks.SDNRamp`, so that
        self-distillation adds to SDN's recipe and changes nothing else) or
        one non-negative number per exit. `exit_k_loss` logs each exit's
        term unweighted.

    Raises:
      ValueError: bad temperature or kd_weight, a student with nothing to
        train, or a teacher whose classes or input shape differ.

    Example:
      >>> distiller = tfee.Distiller(clustered, teacher=dense_net)
      >>> distiller.compile(optimizer=keras.optimizers.Adam(1e-4))
      >>> distiller.fit(train, validation_data=val, epochs=3,
      ...               callbacks=[tfmot.clustering.keras.ClusteringSummaries(...)])
      >>> clustered.save("clustered.keras")   # the student, trained in place

    The wrapper itself is not saved as a model: save `student`, or use
    `keras.callbacks.ModelCheckpoint(..., save_weights_only=True)` on it.
    """

    def __init__(
        self,
        student,
        teacher=None,
        temperature=3.0,
        kd_weight=0.3,
        *,
        match="deepest",
        weights="uniform",
        name="distiller",
        **kwargs,
    ):
        api = "tfee.Distiller"
        _check_number(
            temperature, "temperature", "a finite number > 0", lambda v: v > 0
        )
        _check_number(
            kd_weight, "kd_weight", "a number in [0, 1]", lambda v: 0 <= v <= 1
        )
        if match not in _MATCHES:
            raise ValueError(
                f"{api}: `match` must be one of {_MATCHES}. Received: match={match!r}"
            )
        names = exit_names(student) if isinstance(student, keras.Model) else []
        super().__init__(
            student,
            api,
            extra_metrics=tuple(f"{n}_loss" for n in names),
            name=name,
            **kwargs,
        )
        values = losses.exit_weights(names, weights, api)
        with self.distribute_strategy.scope():
            # Variables, so that `tfee.callbacks.SDNRamp` ramps them as it
            # ramps the joint loss's weights (BackupAndRestore keeps them).
            self.exit_weights = [
                tf.Variable(value, trainable=False, name=f"{n}_weight")
                for n, value in zip(names, values)
            ]
        self.student = student
        self.temperature = float(temperature)
        self.kd_weight = float(kd_weight)
        self.match = match
        self._teacher_exits = None
        self._teacher_softmax = None
        if teacher is not None:
            self._teacher_exits = self._check_teacher(teacher, student, match, api)
            # Most keras.applications models and user classifiers end in
            # softmax: their outputs are probabilities, which taken as logits
            # give near-uniform targets. Their log is a valid logits vector.
            self._teacher_softmax = [
                _ends_in_softmax(teacher.outputs[i]) for i in self._teacher_exits
            ]
        self.teacher = teacher

    @staticmethod
    def _check_teacher(teacher, student, match, api):
        require_tf_keras(teacher, "teacher", api, expected="model")
        if not isinstance(teacher, keras.Model):
            raise TypeError(
                f"{api}: `teacher` must be a tf_keras model. "
                f"Received: teacher={type(teacher).__name__}"
            )
        if len(teacher.inputs or []) != 1:
            raise ValueError(
                f"{api}: `teacher` must have exactly one input. Received: "
                f"{len(teacher.inputs or [])} inputs"
            )
        names = list(teacher.output_names)
        roles = output_roles(teacher)
        if len(names) == 1:
            indices = [0]
        elif any(r and naming.exit_number(r) for r in roles):
            indices = [roles.index(n) for n in exit_names(teacher)]
        else:
            raise ValueError(
                f"{api}: `teacher` must output one logits tensor or exits named "
                f"exit_1..exit_K like the student. Received outputs: {names}"
            )
        student_shape = tuple(student.inputs[0].shape[1:])
        teacher_shape = tuple(teacher.inputs[0].shape[1:])
        if student_shape != teacher_shape:
            raise ValueError(
                f"{api}: `teacher` must take the student's input shape "
                f"{student_shape}. Received: teacher input shape {teacher_shape}"
            )
        classes = student.outputs[0].shape[-1]
        for i in indices:
            if teacher.outputs[i].shape[-1] != classes:
                raise ValueError(
                    f"{api}: `teacher` must predict the student's {classes} classes. "
                    f"Received: teacher output {names[i]!r} with "
                    f"{teacher.outputs[i].shape[-1]} classes"
                )
        student_exits = len(exit_names(student))
        if match == "per_exit" and len(indices) != student_exits:
            raise ValueError(
                f"{api}: match='per_exit' needs a teacher with as many exits as the "
                f"student ({student_exits}). Received: a teacher with {len(indices)} "
                "exit(s)"
            )
        return indices

    def _network(self):
        return self.student

    def _per_sample_losses(self, x, y, outputs, training):
        logits = self._exit_logits(outputs)
        if self.teacher is None:
            targets = [tf.stop_gradient(logits[-1])] * (len(logits) - 1) + [None]
        else:
            produced = self.teacher(x, training=False)
            if not isinstance(produced, (list, tuple)):
                produced = [produced]
            teacher_logits = [
                _as_logits(produced[i]) if softmax else produced[i]
                for i, softmax in zip(self._teacher_exits, self._teacher_softmax)
            ]
            if self.match == "per_exit":
                targets = teacher_logits
            else:
                targets = [teacher_logits[-1]] * len(logits)
        terms = {}
        for name, exit_logits, target in zip(self._exit_names, logits, targets):
            if target is None:
                terms[f"{name}_loss"] = tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=y, logits=exit_logits
                )
            else:
                terms[f"{name}_loss"] = distillation_loss(
                    y,
                    exit_logits,
                    tf.cast(target, exit_logits.dtype),
                    self.temperature,
                    self.kd_weight,
                )
        terms["loss"] = tf.add_n(
            [
                weight * terms[f"{name}_loss"]
                for name, weight in zip(self._exit_names, self.exit_weights)
            ]
        )
        return terms
