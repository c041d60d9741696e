"""Errors of the delta engine (exit code 10)."""

from __future__ import annotations

from edge.errors import EdgeError


class DeltaError(EdgeError):
    """A delta cannot be made or applied; the message says why and what to do."""

    exit_code = 10


class CorruptDeltaError(DeltaError):
    """The delta file is truncated, malformed or not a delta."""


class TruncatedDeltaError(CorruptDeltaError):
    """The delta stream ended early (a short file, or a download cut off): running again resumes."""


class SourceMismatchError(DeltaError):
    """The source (the active slot) is not the image the delta was made from."""


class ReferenceMismatchError(SourceMismatchError):
    """The source bytes an op names are not the blocks the op says they are. The applier checks the whole
    source against the delta's hash first, so there it means a damaged delta; the generator, reading a
    damaged old image, sends those bytes without a reference."""


class CannotReproduceError(DeltaError):
    """This machine cannot recompress blocks exactly as the target image's compressor did."""


class TargetMismatchError(DeltaError):
    """The written target does not hash to what the delta promised; it has been marked invalid."""
