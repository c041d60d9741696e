"""Squashfs block work shared by the delta generator and the device-side applier.

The generator checks its output by running exactly the code the device will
run: ``rebuild_block`` turns plain content back into the target's stored blocks,
and ``read_reference`` decompresses source extents into the dictionary a patch
was made against.  If ``rebuild_block`` reproduces the target bytes on the build host,
the device runs the same function with the same compressor.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from edge.fsutil import ShortFileError, pread_into
from edge.squashfs import format as sqfmt
from edge.squashfs.compressors import Codec, CodecError

from .errors import CorruptDeltaError, ReferenceMismatchError, SourceMismatchError
from .format import (
    BLOCK_COMPRESSED,
    BLOCK_SPARSE,
    BLOCK_STORED,
    MAX_OP_REFERENCE,
    MODE_DATA,
    MODE_METADATA,
    SourceBlock,
    SourceChain,
)

Pread = Callable[[int, int], bytes]


class FdPread:
    """A bounds-checked pread on ``fd`` limited to the first ``limit`` bytes: ``(offset, size) -> bytes``,
    or ``into(offset, buffer)`` to fill a caller's buffer (no allocation on hot copy paths)."""

    def __init__(self, fd: int, limit: int, name: str) -> None:
        self.fd, self.limit, self.name = fd, limit, name

    def _check(self, offset: int, size: int) -> None:
        if offset < 0 or size < 0 or offset + size > self.limit:
            raise CorruptDeltaError(f"delta asks for {self.name} bytes {offset}..{offset + size}, outside its {self.limit} bytes")

    def __call__(self, offset: int, size: int) -> bytes:
        self._check(offset, size)
        data = os.pread(self.fd, size, offset)
        if len(data) != size:
            raise SourceMismatchError(f"{self.name} ended early at byte {offset + len(data)}")
        return data

    def into(self, offset: int, buf: memoryview) -> memoryview:
        self._check(offset, len(buf))
        try:
            pread_into(self.fd, buf, offset)
        except ShortFileError as exc:
            raise SourceMismatchError(f"{self.name} ended early at byte {exc.pos}") from None
        return buf


def fd_pread(fd: int, limit: int, name: str) -> FdPread:
    """A bounds-checked pread on ``fd`` limited to the first ``limit`` bytes."""
    return FdPread(fd, limit, name)


def block_size_of(mode: int, codec: Codec) -> int:
    return codec.block_size if mode == MODE_DATA else sqfmt.METADATA_SIZE


def rebuild_block(mode: int, plain: bytes, flag: int, codec: Codec) -> bytes:
    """The stored form of one block: compressed, stored raw, or nothing (a data-block hole)."""
    if flag == BLOCK_SPARSE:
        if mode != MODE_DATA:
            raise CorruptDeltaError("a metadata block cannot be a hole")
        return b""
    if flag == BLOCK_STORED:
        body = plain
        header = len(plain) | sqfmt.METADATA_UNCOMPRESSED
    elif flag == BLOCK_COMPRESSED:
        body = (codec if mode == MODE_DATA else codec.for_metadata()).compress(plain)
        header = len(body)
    else:
        raise CorruptDeltaError(f"unknown block flag {flag}")
    if mode == MODE_METADATA:
        return sqfmt.U16.pack(header) + body
    return body


class RebuildMeter:
    """``rebuild_block`` that counts the plain bytes it compresses and the thread CPU seconds that takes.

    The generator and the applier both rebuild on a thread pool; ``rate`` is what
    ``edge delta make --rebuild-rate`` takes and ``edge delta apply --json`` reports.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.plain = 0
        self.cpu = 0.0

    def rebuild(self, mode: int, plain: bytes | memoryview, flag: int, codec: Codec) -> bytes:
        t0 = time.thread_time()
        out = rebuild_block(mode, plain, flag, codec)
        spent = time.thread_time() - t0
        if flag == BLOCK_COMPRESSED:
            with self._lock:
                self.plain += len(plain)
                self.cpu += spent
        return out

    def rate(self, threads: int) -> float | None:
        """Plain bytes/s with ``threads`` threads compressing (None before anything was compressed)."""
        return self.plain / self.cpu * threads if self.cpu > 0 else None


def read_reference(sources: tuple[SourceBlock | SourceChain, ...], pread: Pread, codec: Codec,
                   limit: int = MAX_OP_REFERENCE) -> bytearray:
    """Decompress the source extents of an op into one reference buffer (bounded by ``limit``; a
    bytearray, not copied into bytes: the applier's peak memory counts it once)."""
    out = bytearray()
    for src in sources:
        if isinstance(src, SourceBlock):
            stored = src.word & sqfmt.DATA_SIZE_MASK
            if src.plain > codec.block_size:
                raise CorruptDeltaError(f"source block at {src.offset} claims {src.plain} plain bytes, more than a block")
            if len(out) + src.plain > limit:
                raise CorruptDeltaError(f"an op's reference exceeds {limit} bytes")
            if stored == 0:
                out += bytes(src.plain)
            else:
                raw = pread(src.offset, stored)
                if src.word & sqfmt.DATA_UNCOMPRESSED:
                    plain = raw
                else:
                    plain = _decompress(codec, raw, codec.block_size, src.offset)
                if len(plain) != src.plain:
                    raise ReferenceMismatchError(f"source block at {src.offset} holds {len(plain)} bytes, the delta expects {src.plain}")
                out += plain
        else:
            pos = src.start
            while pos < src.end:
                (word,) = sqfmt.U16.unpack(pread(pos, 2))
                size = word & ~sqfmt.METADATA_UNCOMPRESSED
                if not 0 < size <= sqfmt.METADATA_SIZE or pos + 2 + size > src.end:
                    raise ReferenceMismatchError(f"source metadata block at {pos} has a bad header")
                raw = pread(pos + 2, size)
                out += raw if word & sqfmt.METADATA_UNCOMPRESSED else _decompress(codec, raw, sqfmt.METADATA_SIZE, pos)
                pos += 2 + size
                if len(out) > limit:  # checked per 8 KiB block: a long chain stops here, not at its end
                    raise CorruptDeltaError(f"an op's reference exceeds {limit} bytes")
    return out


def _decompress(codec: Codec, raw: bytes, limit: int, offset: int) -> bytes:
    try:
        return codec.decompress(raw, limit)
    except CodecError as exc:
        raise ReferenceMismatchError(f"source block at offset {offset} does not decompress: {exc}") from None
