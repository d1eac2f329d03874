"""The single source of tfee's version number."""

__version__ = "0.1.0"
