"""Squashfs-aware block deltas, applied streaming with bounded memory (docs/delta-format.md).

The names below load their submodule on first use (edge.lazy): applying a delta does not load
the generator and the squashfs writer behind it.
"""

from typing import TYPE_CHECKING

from edge.lazy import lazy_exports

if TYPE_CHECKING:
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

_EXPORTS = {
    "ApplyResult": ".apply", "apply_delta": ".apply", "open_delta": ".apply", "read_header": ".apply",
    "CannotReproduceError": ".errors", "CorruptDeltaError": ".errors", "DeltaError": ".errors",
    "SourceMismatchError": ".errors", "TargetMismatchError": ".errors", "TruncatedDeltaError": ".errors",
    "MakeResult": ".make", "make_delta": ".make",
}
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

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
