"""tfee's Keras layers: exit heads and confidence scores."""

from tfee.layers.confidence import Confidence
from tfee.layers.conv_head import ConvHead
from tfee.layers.exit_head import ExitHead
from tfee.layers.head_factory import HEAD_TYPES
from tfee.layers.head_factory import make_head
from tfee.layers.linear_head import LinearHead
from tfee.layers.sdn_head import SDNHead

__all__ = [
    "Confidence",
    "ConvHead",
    "ExitHead",
    "HEAD_TYPES",
    "LinearHead",
    "SDNHead",
    "make_head",
]
