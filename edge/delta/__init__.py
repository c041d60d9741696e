"""Squashfs-aware block deltas, applied streaming with bounded memory (docs/delta-format.md)."""

from .apply import ApplyResult, apply_delta, open_delta, read_header
from .errors import (
    CannotReproduceError,
    CorruptDeltaError,
    DeltaError,
    SourceMismatchError,
    TargetMismatchError,
    TruncatedDeltaError,
)
from .make import MakeResult, make_delta

__all__ = [
    "ApplyResult",
    "CannotReproduceError",
    "CorruptDeltaError",
    "DeltaError",
    "MakeResult",
    "SourceMismatchError",
    "TargetMismatchError",
    "TruncatedDeltaError",
    "apply_delta",
    "make_delta",
    "open_delta",
    "read_header",
]
