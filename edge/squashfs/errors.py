"""The one error type the squashfs engine raises for bad images and bad input trees."""

from __future__ import annotations

from edge.errors import EdgeError


class SquashfsError(EdgeError):
    """An image is truncated, corrupt, hostile or unsupported, or a tree cannot be written.

    The message names the image (when known) and the offset or table involved.
    """

    exit_code = 4
