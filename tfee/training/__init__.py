"""Training early-exit networks with model.fit: losses and callbacks."""

from tfee.training import callbacks
from tfee.training import losses

__all__ = ["callbacks", "losses"]
