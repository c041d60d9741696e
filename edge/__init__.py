"""Edge: a toolkit for immutable embedded Linux systems."""

from ._version import __version__

__all__ = ["__version__"]
