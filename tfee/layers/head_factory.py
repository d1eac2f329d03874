"""Turns a head specification ("sdn", a class, a callable) into a head layer."""

from tfee._keras import keras
from tfee.layers.conv_head import ConvHead
from tfee.layers.exit_head import ExitHead
from tfee.layers.linear_head import LinearHead
from tfee.layers.sdn_head import SDNHead

__all__ = ["HEAD_TYPES", "make_head"]

HEAD_TYPES = {cls.head_type: cls for cls in (LinearHead, SDNHead, ConvHead)}


def make_head(head, num_classes, with_confidence, name):
    """Builds one exit head.

    Args:
      head: "linear", "sdn" or "conv"; an `ExitHead` subclass; or a callable
        `(num_classes, with_confidence, name) -> ExitHead` for custom settings.
      num_classes: classes of the backbone's classifier.
      with_confidence: whether the head has a learned confidence output.
      name: the layer name.

    Returns:
      An unbuilt `ExitHead`.

    Raises:
      ValueError: `head` names no known head type.
      TypeError: `head` (or what it returned) is not an ExitHead.
    """
    if isinstance(head, str):
        if head not in HEAD_TYPES:
            raise ValueError(
                f"Unknown exit head type for `head`, expected one of "
                f"{sorted(HEAD_TYPES)}, an ExitHead subclass or a callable. "
                f"Received: head={head!r}"
            )
        return HEAD_TYPES[head](num_classes, with_confidence=with_confidence, name=name)
    if isinstance(head, type) and issubclass(head, ExitHead):
        return head(num_classes, with_confidence=with_confidence, name=name)
    if callable(head) and not isinstance(head, keras.layers.Layer):
        layer = head(num_classes, with_confidence, name)
        if not isinstance(layer, ExitHead):
            raise TypeError(
                "The callable passed as `head` must return a tfee ExitHead layer. "
                f"Received: {type(layer).__name__}"
            )
        return layer
    raise TypeError(
        f"`head` must be one of {sorted(HEAD_TYPES)}, an ExitHead subclass or a "
        f"callable returning an ExitHead. Received: head={head!r}"
    )
