"""The typed errors every part of Edge raises, and the exit code each maps to.

Every error a user can cause (bad input, bad configuration, a bundle that does
not verify) is an :class:`EdgeError` subclass.  The CLI prints its message on
one line and exits with the class's ``exit_code``; nothing else reaches the
user as a traceback.  Exit codes are part of the CLI contract (``docs/cli.md``).
"""

from __future__ import annotations


class EdgeError(Exception):
    """Base class of every error a user can act on."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(EdgeError):
    """The command line or a referenced path does not make sense."""

    exit_code = 2


class InputFileError(EdgeError):
    """An input file is missing, unreadable or not what it claims to be."""

    exit_code = 3


def short_digests(a: str, b: str, shown: int = 16) -> tuple[str, str]:
    """Two hex digests a message compares, abbreviated: ``shown`` characters each, or more where they
    only differ later (up to 4 characters past their first difference), so that they never read alike."""
    first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    n = max(shown, first + 4)

    def cut(digest: str) -> str:
        return digest if n >= len(digest) else digest[:n] + "…"

    return cut(a), cut(b)
