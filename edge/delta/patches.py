"""Content patches: the bytes a BLOCKS or PATCH op decodes into the new content.

Three encodings carry a patch (ids in ``format``):

- ``ENC_ZSTD``: one zstd frame of the content (no reference);
- ``ENC_ZSTD_DICT``: one zstd frame made with the reference as a raw-content
  dictionary (what ``zstd --patch-from`` does);
- ``ENC_BSDIFF``: bsdiff's three streams (Colin Percival's algorithm, as
  computed by the ``bsdiff4`` library): control tuples, byte-wise differences
  against approximately matching reference regions, and extra bytes with no
  match.  Each stream is one zstd frame.  Layout::

      varint len(control frame) | varint len(diff frame) | control frame | diff frame | extra frame

  Machine code that moved keeps most bytes and shifts its addresses by small
  constants; the difference stream is then mostly zeros and a few recurring
  values, which compresses far better than re-finding each run as a match.  On
  the security pair (libcrypto, libapt-pkg, python3.11) it is 18% smaller than
  the dictionary patch.

The generator tries dictionary patches and bsdiff where it can win and keeps
the smallest (``make_patch``); the applier decodes any of them with every size
checked before it is allocated.
Pure: bytes in, bytes out.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import bsdiff4.core
import zstandard

from edge.squashfs.native import NativeUnavailable, zstd_decompress_with_prefix

from .errors import CorruptDeltaError
from .format import ENC_BSDIFF, ENC_RAW, ENC_ZSTD, ENC_ZSTD_DICT, DeltaReader, varint

CONTROL_TUPLE = 24  # three signed 64-bit integers: diff length, extra length, reference seek


def control_limit(length: int) -> int:
    """Largest control stream a patch producing ``length`` bytes may carry (one tuple per 64 output bytes,
    plus a few): bounds the applier's memory; the generator uses a dictionary patch beyond it."""
    return CONTROL_TUPLE * (length // 64 + 16)


def unzstd(frame: bytes | memoryview, limit: int, ref: bytes | bytearray = b"") -> bytes | bytearray:
    """Decompress one zstd frame of at most ``limit`` bytes (``ref``: raw-content dictionary).

    With a reference, the system libzstd reads it in place (``ZSTD_DCtx_refPrefix``);
    python-zstandard's dictionary objects copy it, so a 10 MiB reference would cost 20 MiB of
    the applier's 64. Without the system library, python-zstandard does the work."""
    try:
        size = zstandard.frame_content_size(frame)
        if size > limit:
            raise CorruptDeltaError(f"zstd frame claims {size} bytes, more than {limit}")
        if ref:
            try:
                return zstd_decompress_with_prefix(frame, ref, limit)
            except NativeUnavailable:
                pass
            except ValueError as exc:
                raise CorruptDeltaError(f"zstd frame does not decompress ({exc})") from None
            dctx = zstandard.ZstdDecompressor(dict_data=_raw_dict(ref), max_window_size=1 << 26)
        else:
            dctx = zstandard.ZstdDecompressor(max_window_size=1 << 26)
        out = dctx.decompress(frame, max_output_size=limit)
    except zstandard.ZstdError as exc:
        raise CorruptDeltaError(f"zstd frame does not decompress ({exc})") from None
    if len(out) > limit:
        raise CorruptDeltaError(f"zstd frame inflates past {limit} bytes")
    return out


def _raw_dict(ref: bytes | bytearray) -> zstandard.ZstdCompressionDict:
    return zstandard.ZstdCompressionDict(ref, dict_type=zstandard.DICT_TYPE_RAWCONTENT)


def zstd_frame(data: bytes | bytearray | memoryview, level: int, ref: bytes | bytearray = b"") -> bytes:
    """One zstd frame of ``data`` as the generator writes every frame of a delta: with zstd's content
    checksum (4 bytes), which the device's decoder checks, so a damaged frame is reported at its op
    (not as a rebuild that does not match, or a device that cannot reproduce the compressor)."""
    cctx = zstandard.ZstdCompressor(level=level, write_checksum=True, dict_data=_raw_dict(ref) if ref else None)
    return cctx.compress(data)


def encode_bsdiff(data: bytes, ref: bytes, level: int) -> bytes | None:
    """The ENC_BSDIFF payload turning ``ref`` into ``data``, or None when its control stream is too
    large for the applier's bound (content with no long matches: a dictionary patch does as well)."""
    control, diff, extra = bsdiff4.core.diff(ref, data)
    if len(control) > control_limit(len(data)):
        return None
    # (the extra stream with the reference as dictionary is 4% smaller, but loading a level-19
    # dictionary costs as much CPU as the patch it would shorten)
    c, d, e = (zstd_frame(stream, level) for stream in (control, diff, extra))
    return varint(len(c)) + varint(len(d)) + c + d + e


def decode_bsdiff(payload: bytes | memoryview, length: int, ref: bytes) -> bytes:
    """Apply an ENC_BSDIFF payload to ``ref``: exactly ``length`` bytes, or CorruptDeltaError."""
    view = memoryview(payload)
    lengths = DeltaReader(io.BytesIO(view), "bsdiff patch")
    clen, dlen = lengths.varint("control stream length"), lengths.varint("diff stream length")
    pos = lengths.pos
    if clen > len(view) - pos or dlen > len(view) - pos - clen:
        raise CorruptDeltaError(f"bsdiff patch: streams of {clen} and {dlen} bytes do not fit in {len(view)} bytes")
    control = unzstd(view[pos : pos + clen], control_limit(length))
    if len(control) % CONTROL_TUPLE:
        raise CorruptDeltaError(f"bsdiff patch: control stream of {len(control)} bytes is not whole tuples")
    diff = unzstd(view[pos + clen : pos + clen + dlen], length)
    extra = unzstd(view[pos + clen + dlen :], length - len(diff))
    try:
        out = bsdiff4.core.patch(ref, length, control, diff, extra)
    except (ValueError, OverflowError) as exc:
        raise CorruptDeltaError(f"bsdiff patch does not apply: {exc}") from None
    return out


QUICK_LEVEL = 9  # dictionary patches at this level cost a twentieth of level 19's CPU (the dictionary loads fast)
BSDIFF_MAX_RATIO = 0.2  # bsdiff is tried where the quick dictionary patch is under this share of the content
BSDIFF_CLEAR_WIN = 0.7  # a bsdiff patch under this share of the quick one is kept without a full-level try
# below this share the content is the reference nearly unchanged (or runs of one byte, on which bsdiff's
# search turns quadratic: a few MB of zeros took minutes); bsdiff never won there on the benchmark pairs
BSDIFF_MIN_RATIO = 0.002


_RUNS = (bytes(256 << 10), b"\xff" * (256 << 10))


def _long_runs(data: bytes) -> bool:
    """Whether ``data`` holds a run of 256 KiB of zeros or 0xff bytes (holes, padding). bsdiff's scan
    re-extends its match at every position of such a run: quadratic (4 MB of zeros took minutes)."""
    return any(run in data for run in _RUNS)


def make_patch(data: bytes, ref: bytes, level: int, *, bsdiff: bool = True) -> tuple[int, bytes]:
    """(encoding, payload): the smallest patch from ``ref`` to ``data`` among those tried.

    Without a reference: zstd alone.  With one: a dictionary patch at ``QUICK_LEVEL``
    first; bsdiff where that patch is under ``BSDIFF_MAX_RATIO`` of the content but not under
    ``BSDIFF_MIN_RATIO`` (content
    that is mostly old content moved and adjusted; elsewhere bsdiff never won on the
    benchmark pairs and costs more than both dictionary patches); then the dictionary
    patch at ``level``, unless bsdiff already beat the quick one by ``1 - BSDIFF_CLEAR_WIN``
    (a full-level dictionary patch was never that much smaller than the quick one
    there).  Measured on the security pair: the same bytes as trying everything
    everywhere, at 60% of the CPU.
    """
    if not ref:
        return ENC_ZSTD, zstd_frame(data, level)
    quick_level = min(level, QUICK_LEVEL)
    quick = zstd_frame(data, quick_level, ref)
    best = (ENC_ZSTD_DICT, quick)
    if (bsdiff and data and BSDIFF_MIN_RATIO * len(data) <= len(quick) < BSDIFF_MAX_RATIO * len(data)
            and not _long_runs(data)):
        payload = encode_bsdiff(data, ref, level)
        # checked here with the applier's own decoder: a patch that does not reproduce is never shipped
        if payload is not None and len(payload) < len(quick) and decode_bsdiff(payload, len(data), ref) == data:
            best = (ENC_BSDIFF, payload)
            if len(payload) < BSDIFF_CLEAR_WIN * len(quick):
                return best
    if level > quick_level:
        full = zstd_frame(data, level, ref)
        if len(full) < len(best[1]):
            best = (ENC_ZSTD_DICT, full)
    return best


def uses_reference(encoding: int) -> bool:
    return encoding in (ENC_ZSTD_DICT, ENC_BSDIFF)


def read_patch(encoding: int, payload: bytes, length: int, ref: bytes | Callable[[], bytes]) -> bytes:
    """The content a patch decodes to (``length`` bytes at most; callers check the exact length).

    ``ref`` may be a function that reads the reference: it is then called only when
    the encoding uses one, and for a dictionary patch its bytes are released as soon
    as zstd holds its own copy (the applier's peak memory counts the reference once).
    """
    if encoding == ENC_RAW:
        return payload
    if encoding == ENC_ZSTD:
        return unzstd(payload, length)
    if encoding == ENC_ZSTD_DICT:
        return unzstd(payload, length, ref() if callable(ref) else ref)
    data = ref() if callable(ref) else ref
    if not isinstance(data, bytes):
        data = bytes(data)  # (bsdiff4 takes read-only buffers; rebinding frees the bytearray before the decode)
    return decode_bsdiff(payload, length, data)
