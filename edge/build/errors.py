"""The typed errors of image builds, and their exit codes.

Exit code 5 covers everything about *what* to build (a recipe, a board
definition, an architecture mismatch, a boot file that cannot be produced);
exit code 6 covers the *input* root filesystem (a corrupt or truncated layer,
a digest mismatch, a hostile archive).  Both name the file and the field,
layer digest or byte offset involved, in one line.
"""

from __future__ import annotations

from edge.errors import EdgeError


class BuildError(EdgeError):
    """A recipe or board cannot be built as asked."""

    exit_code = 5


class RecipeError(BuildError):
    """A recipe file is malformed: the message names the file, the line and the field."""


class ArchMismatchError(BuildError):
    """The root filesystem's binaries (or image config) are for another CPU than the board's."""


class SourceError(EdgeError):
    """A root filesystem source is unreadable, corrupt, truncated or hostile."""

    exit_code = 6
