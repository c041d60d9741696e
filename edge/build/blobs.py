"""Layer and archive blobs: digest checks and a spool of decompressed tars.

Tar members become :class:`~edge.squashfs.tree.SliceContent` objects, which
need an *uncompressed* tar on disk to point into.  An uncompressed blob is
used in place (a ``.tar`` file, a docker-save layer inside its outer tar);
a compressed one (gzip, zstd, xz, bzip2 -- recognised by magic bytes, not by
name) is decompressed once into a spool file in the cache directory.  That
spool is a blob cache, not an extracted tree: nothing is written per file,
no root is needed.

Every byte is hashed on the way: the blob digest (of the stored bytes) and
the diff_id (of the uncompressed tar) are checked when known, so a corrupt,
truncated or substituted layer is an error naming its digest.  Decompression
output is bounded per call (zstd is walked block by block), so a
decompression bomb costs disk, never memory.
"""

from __future__ import annotations

import bz2
import hashlib
import lzma
import os
import re
import shutil
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import zstandard

from .errors import SourceError

CHUNK = 1 << 20
_DIGEST = re.compile(r"(sha256|sha512):([0-9a-f]+)")
_HEX_LEN = {"sha256": 64, "sha512": 128}

_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_MAX_BLOCK = 128 * 1024

Progress = Callable[[int], None]


def parse_digest(text: str, where: str) -> tuple[str, str]:
    """``sha256:<hex>`` -> (algorithm, hex); anything else is a :class:`SourceError`."""
    match = _DIGEST.fullmatch(text) if isinstance(text, str) else None
    if match is None or len(match.group(2)) != _HEX_LEN[match.group(1)]:
        raise SourceError(f"{where}: {str(text)[:100]!r} is not a sha256/sha512 digest")
    return match.group(1), match.group(2)


def detect_compression(head: bytes) -> str | None:
    """The compression of a stream starting with ``head``, or None for plain data."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"BZh") and len(head) >= 4 and head[3:4].isdigit():
        return "bzip2"
    return None


@dataclass(frozen=True)
class Region:
    """Bytes ``[start, end)`` of ``path``: an uncompressed tar a layer's members point into."""

    path: str
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class BlobView:
    """A blob as the build uses it: its uncompressed tar, and the digests of stored and uncompressed bytes."""

    region: Region
    stored_digest: str
    plain_digest: str
    compression: str | None


@dataclass
class BlobStats:
    """What the cache did: how many blobs it read and decompressed (tests check sources are read once)."""

    blobs_read: int = 0
    decompressed: int = 0


class BlobCache:
    """Uncompressed views of blobs, each read (and verified) once per build.

    Spool files live in a private temporary directory (under ``work_dir`` when
    given) that :meth:`close` removes; keep the cache open until every image
    that references it has been written.
    """

    def __init__(self, work_dir: str | None = None) -> None:
        self.dir = tempfile.mkdtemp(prefix="edge-build-", dir=work_dir)
        self._views: dict[str, BlobView] = {}
        self.stats = BlobStats()

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "BlobCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def uncompressed(
        self,
        path: str,
        start: int,
        length: int,
        *,
        label: str,
        digest: str | None = None,
        diff_id: str | None = None,
        key: str | None = None,
        progress: Progress | None = None,
    ) -> BlobView:
        """The uncompressed bytes of the blob at ``path[start:start+length]``, with its digests.

        ``digest`` is checked against the stored bytes and ``diff_id`` against
        the uncompressed bytes (both ``algorithm:hex``).  ``key`` (default:
        ``digest``, else the location) makes a second request for the same
        blob return the first result without reading it again.
        """
        cache_key = key or digest or f"{os.path.abspath(path)}@{start}+{length}"
        hit = self._views.get(cache_key)
        if hit is not None:
            return hit
        stored_hash = hashlib.new(parse_digest(digest, label)[0]) if digest else hashlib.sha256()
        want_diff = parse_digest(diff_id, label) if diff_id else None
        plain_hash = hashlib.new(want_diff[0]) if want_diff else hashlib.sha256()
        head = _pread_exact(path, start, min(8, length), label) if length else b""
        compression = detect_compression(head)
        self.stats.blobs_read += 1
        chunks = _hashed_chunks(path, start, length, stored_hash, label, progress)
        if compression is None:
            if plain_hash.name == stored_hash.name:
                plain_hash = stored_hash  # the plain bytes are the stored bytes: one hash serves both
                for _ in chunks:
                    pass
            else:
                for chunk in chunks:
                    plain_hash.update(chunk)
            region = Region(path, start, start + length)
        else:
            self.stats.decompressed += 1
            fd, spool = tempfile.mkstemp(prefix="layer-", suffix=".tar", dir=self.dir)
            size = 0
            with os.fdopen(fd, "wb") as out:
                if compression == "zstd":
                    pieces = _zstd_stream(path, start, length, stored_hash, label, progress)
                else:
                    pieces = _multistream(chunks, compression, label)
                for piece in pieces:
                    plain_hash.update(piece)
                    out.write(piece)
                    size += len(piece)
            region = Region(spool, 0, size)
        if digest:
            algo, want = parse_digest(digest, label)
            if stored_hash.hexdigest() != want:
                raise SourceError(f"{label}: content does not match its digest {digest} (got {algo}:{stored_hash.hexdigest()}); the blob is corrupt or was replaced")
        plain = f"{plain_hash.name}:{plain_hash.hexdigest()}"
        if want_diff and plain_hash.hexdigest() != want_diff[1]:
            raise SourceError(f"{label}: uncompressed content does not match diff_id {diff_id} (got {plain}); the layer is corrupt")
        view = BlobView(region, f"{stored_hash.name}:{stored_hash.hexdigest()}", plain, compression)
        self._views[cache_key] = view
        return view


def _pread_exact(path: str, offset: int, size: int, label: str) -> bytes:
    try:
        with open(path, "rb", buffering=0) as fh:
            data = os.pread(fh.fileno(), size, offset)
    except OSError as exc:
        raise SourceError(f"{label}: cannot read {path}: {exc.strerror}") from None
    if len(data) != size:
        raise SourceError(f"{label}: truncated: {path} ends {size - len(data)} bytes early")
    return data


def _hashed_chunks(path: str, start: int, length: int, h: "hashlib._Hash", label: str,
                   progress: Progress | None) -> Iterator[bytes]:
    try:
        fh = open(path, "rb", buffering=0)
    except OSError as exc:
        raise SourceError(f"{label}: cannot open {path}: {exc.strerror}") from None
    with fh:
        if os.fstat(fh.fileno()).st_size < start + length:
            raise SourceError(f"{label}: truncated: needs {length} bytes at offset {start} of {path}, "
                              f"the file has {os.fstat(fh.fileno()).st_size}")
        pos, end = start, start + length
        while pos < end:
            data = os.pread(fh.fileno(), min(CHUNK, end - pos), pos)
            if not data:
                raise SourceError(f"{label}: truncated: {path} shrank while being read")
            h.update(data)
            pos += len(data)
            if progress is not None:
                progress(len(data))
            yield data


# ---------------------------------------------------------------- gzip / xz / bzip2
def _new_decompressor(compression: str):  # type: ignore[no-untyped-def]
    if compression == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if compression == "xz":
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    return bz2.BZ2Decompressor()


def _multistream(chunks: Iterator[bytes], compression: str, label: str) -> Iterator[bytes]:
    """Concatenated gzip members / xz streams / bzip2 streams, output at most CHUNK bytes at a time.

    Zero bytes after the last complete stream (tape-style padding) are
    accepted; anything else there, or a stream cut short, is an error.
    """
    errors = (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError)
    d = None  # the current stream's decompressor; None between streams
    streams = 0
    zeros_only = False
    try:
        for chunk in chunks:
            buf = chunk
            while buf:
                if d is None:
                    if streams and not buf.strip(b"\0"):
                        zeros_only = True
                    if zeros_only:
                        if buf.strip(b"\0"):
                            raise SourceError(f"{label}: data after the end of the {compression} stream")
                        break
                    d = _new_decompressor(compression)
                buf, finished = yield from _feed(d, buf, compression)
                if finished:
                    streams += 1
                    d = None
    except errors as exc:
        raise SourceError(f"{label}: corrupt {compression} data: {exc}") from None
    if d is not None:
        raise SourceError(f"{label}: truncated {compression} stream (it ends before its end marker)")
    if streams == 0:
        raise SourceError(f"{label}: empty {compression} stream")


def _feed(d, buf: bytes, compression: str):  # type: ignore[no-untyped-def]
    """Feed ``buf`` to one stream's decompressor; returns (bytes after the stream's end, finished)."""
    out = d.decompress(buf, CHUNK)
    if out:
        yield out
    if compression == "gzip":
        while not d.eof and (d.unconsumed_tail or len(out) == CHUNK):
            out = d.decompress(d.unconsumed_tail, CHUNK)
            if out:
                yield out
    else:
        while not d.eof and not d.needs_input:
            out = d.decompress(b"", CHUNK)
            if out:
                yield out
    if d.eof:
        return d.unused_data, True
    return b"", False


# ---------------------------------------------------------------- zstd
def _zstd_stream(path: str, start: int, length: int, h: "hashlib._Hash", label: str,
                 progress: Progress | None) -> Iterator[bytes]:
    """zstd frames walked block by block, so one call never inflates more than 128 KiB.

    The block headers say where each block ends, which also tells a frame cut
    short from a complete one (``zstandard``'s streaming readers end silently).
    """
    dctx = zstandard.ZstdDecompressor()
    try:
        fh = open(path, "rb", buffering=0)
    except OSError as exc:
        raise SourceError(f"{label}: cannot open {path}: {exc.strerror}") from None
    end = start + length
    with fh:
        fd = fh.fileno()

        def read(pos: int, size: int, what: str) -> bytes:
            if pos + size > end:
                raise SourceError(f"{label}: truncated zstd stream ({what} at byte {pos - start} needs {size} bytes, "
                                  f"{max(end - pos, 0)} remain)")
            data = os.pread(fd, size, pos)
            if len(data) != size:
                raise SourceError(f"{label}: truncated: {path} ends early")
            h.update(data)
            if progress is not None:
                progress(len(data))
            return data

        pos = start
        frames = 0
        while pos < end:
            magic_raw = read(pos, 4, "frame magic")
            (magic,) = struct.unpack("<I", magic_raw)
            if 0x184D2A50 <= magic <= 0x184D2A5F:  # skippable frame
                (skip,) = struct.unpack("<I", read(pos + 4, 4, "skippable frame size"))
                read_all = pos + 8
                pos = pos + 8 + skip
                while read_all < pos:
                    step = min(CHUNK, pos - read_all)
                    read(read_all, step, "skippable frame")
                    read_all += step
                continue
            if magic != _ZSTD_MAGIC:
                if not frames or magic_raw.strip(b"\0") or not _all_zero(fd, pos + 4, end):
                    raise SourceError(f"{label}: corrupt zstd data: bad frame magic {magic:#010x} at byte {pos - start}")
                rest = pos + 4
                while rest < end:  # zero padding after the last frame: hashed like every stored byte
                    step = min(CHUNK, end - rest)
                    read(rest, step, "padding")
                    rest += step
                break
            frames += 1
            descriptor = read(pos + 4, 1, "frame header")[0]
            fcs_flag, single, checksum, dict_flag = descriptor >> 6, (descriptor >> 5) & 1, (descriptor >> 2) & 1, descriptor & 3
            if descriptor & 0x08:
                raise SourceError(f"{label}: corrupt zstd frame header at byte {pos - start} (reserved bit set)")
            header_len = 1 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag] + ((1 if single else 0), 2, 4, 8)[fcs_flag]
            rest_header = read(pos + 5, header_len - 1, "frame header")
            decomp = dctx.decompressobj()
            try:
                out = decomp.decompress(magic_raw + bytes([descriptor]) + rest_header)
                if out:
                    yield out
                pos += 4 + header_len
                while True:
                    block_header = read(pos, 3, "block header")
                    value = block_header[0] | block_header[1] << 8 | block_header[2] << 16
                    last, btype, bsize = value & 1, (value >> 1) & 3, value >> 3
                    if btype == 3:
                        raise SourceError(f"{label}: corrupt zstd block at byte {pos - start} (reserved block type)")
                    payload_size = 1 if btype == 1 else bsize
                    if payload_size > _ZSTD_MAX_BLOCK:
                        raise SourceError(f"{label}: corrupt zstd block at byte {pos - start} ({bsize} bytes, the limit is 128 KiB)")
                    payload = read(pos + 3, payload_size, "block")
                    out = decomp.decompress(block_header + payload)
                    if out:
                        yield out
                    pos += 3 + payload_size
                    if last:
                        break
                if checksum:
                    out = decomp.decompress(read(pos, 4, "frame checksum"))
                    if out:
                        yield out
                    pos += 4
            except zstandard.ZstdError as exc:
                raise SourceError(f"{label}: corrupt zstd data: {exc}") from None
            if not decomp.eof:
                raise SourceError(f"{label}: corrupt zstd frame ending at byte {pos - start}")
        if frames == 0:
            raise SourceError(f"{label}: empty zstd stream")


def _all_zero(fd: int, pos: int, end: int) -> bool:
    while pos < end:
        data = os.pread(fd, min(CHUNK, end - pos), pos)
        if not data or data.strip(b"\0"):
            return False
        pos += len(data)
    return True
