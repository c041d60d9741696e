"""Apply a delta: stream it front to back into the target, verified, bounded, resumable.

Order of checks (nothing is written before the first two pass):

1. the delta's preamble parses and its format is supported;
2. for squashfs deltas, this machine recompresses the delta's sample block to
   the promised hash (else: "this device cannot reproduce ...; send a full
   bundle"), and the whole source (the first ``source.size`` bytes of the active
   slot) hashes to ``source.sha256`` — one sequential read, cheaper than a hash
   per op and measured in docs/benchmarks.md;
3. every op's output is checked (length, and sha256 for rebuilt blocks and
   patches) before it is written;
4. at the end the whole target is read back and must hash to
   ``target.sha256``; if not, its first 4 KiB are zeroed so it can never be
   mistaken for a good image, and the checkpoint is marked invalid.

The target is locked (``flock``, edge.locking) from before its first byte is
written: a second apply or install into it is refused with BusyError.

Progress is checkpointed at op boundaries (target fsynced first, then the
state file replaced atomically), so an apply killed at any point resumes from
the last checkpoint without re-reading the delta before it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import lzma
import os
import stat
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

import zstandard

from edge.errors import InputFileError, UsageError, short_digests
from edge.fsutil import (HEAD_HELD_BACK, HeldBackWriter, ShortFileError, check_output_path, remove_if_present,
                         replace_file, saved_head, sha256_prefix)
from edge.locking import check_target_kind, open_target
from edge.memory import return_large_buffers_promptly
from edge.storage import directory_on, missing_device, overlap
from edge.squashfs.compressors import IMPLS, LZO1X_999, Codec, CodecError, available_impls

from . import format as dfmt
from .blocks import FdPread, RebuildMeter, block_size_of, fd_pread, read_reference
from .errors import (
    CannotReproduceError,
    CorruptDeltaError,
    DeltaError,
    ReferenceMismatchError,
    SourceMismatchError,
    TargetMismatchError,
    TruncatedDeltaError,
)
from .format import BLOCK_COMPRESSED, ENC_RAW, Blocks, Copy, DeltaReader, Header, Literal, Patch, Zero
from .patches import read_patch, unzstd

Progress = Callable[[int, int], None]
DeltaOpener = Callable[[int], BinaryIO]
"""Opens the delta at a byte offset. A stream that knows the whole delta's size (a download once the
server said it, a bundle's payload) tells it in a ``known_size`` attribute (it or its ``raw`` stream):
that bounds a checkpoint's delta position as a local file's size does."""
CHECKPOINT_BYTES = 16 << 20
CHECKPOINT_SECONDS = 2.0
COPY_CHUNK = 1 << 20
MAX_PENDING_BYTES = 4 << 20  # plain content waiting to be recompressed


@dataclass
class ApplyResult:
    target: str
    size: int
    sha256: str  # of the written target, verified against the delta's header
    ops: int
    resumed_at_op: int | None
    source_check_seconds: float
    seconds: float
    rebuilt_bytes: int = 0  # plain bytes recompressed into squashfs blocks
    rebuild_rate: float | None = None  # plain bytes/s this device recompresses with all its threads busy
    resumed_at_pos: int | None = None  # target byte the apply resumed at (None: it started from the beginning)


@contextlib.contextmanager
def open_delta(delta: str | DeltaOpener) -> Iterator[BinaryIO]:
    """The delta as one stream from its first byte: a path, "-" (standard input), a pipe, or an opener."""
    with _delta_opener(delta) as opener, opener(0) as stream:
        yield stream


@contextlib.contextmanager
def _delta_opener(delta: str | DeltaOpener) -> Iterator[DeltaOpener]:
    """``_opener(delta)``, closing the one stream of a pipe or standard input afterwards."""
    opener = _opener(delta)
    try:
        yield opener
    finally:
        if isinstance(opener, _ForwardOnly):
            opener.close()


def read_header(delta: str | DeltaOpener) -> tuple[Header, bytes, bytes]:
    with open_delta(delta) as stream:
        return DeltaReader(stream, _name(delta)).preamble()


def _local_size(path: str) -> int | None:
    """The size of a delta file (None when it is not a regular file, e.g. a pipe)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _known_size(stream: BinaryIO) -> int | None:
    """The whole delta's size when an opener's stream tells it (see DeltaOpener)."""
    for layer in (stream, getattr(stream, "raw", None)):
        size = getattr(layer, "known_size", None)
        if isinstance(size, int) and not isinstance(size, bool):
            return size
    return None


def _name(delta: str | DeltaOpener) -> str:
    return ("stdin" if delta == "-" else delta) if isinstance(delta, str) else "delta"


class _ForwardOnly:
    """A delta read from a pipe or standard input ("-"): opened once, read front to back.

    Each ``open_at(offset)`` continues the one stream where the previous reader stopped, reading
    and dropping bytes up to ``offset`` (a resume skips what was applied, it cannot seek). The
    applier never asks for an offset behind the stream's position (after a failed resume it stops
    instead of starting over: see apply_delta)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = _name(path)
        self.pos = 0
        self._fh: BinaryIO | None = None

    def __call__(self, offset: int) -> BinaryIO:
        if self._fh is None:
            if self.path == "-":
                self._fh = sys.stdin.buffer
            else:
                try:
                    self._fh = open(self.path, "rb")
                except OSError as exc:
                    raise InputFileError(f"{self.path}: {exc.strerror}") from None
        if offset < self.pos:
            raise DeltaError(f"{self.name}: a pipe cannot be read again from byte {offset} (it is at {self.pos})")
        while self.pos < offset:
            got = self._fh.read(min(offset - self.pos, 1 << 20))
            if not got:
                raise TruncatedDeltaError(f"{self.name}: truncated: the stream ended at byte {self.pos}, before the "
                                          f"checkpoint's byte {offset}")
            self.pos += len(got)
        return _Continued(self)  # type: ignore[return-value]

    def read(self, n: int) -> bytes:
        assert self._fh is not None
        data = self._fh.read(n)
        self.pos += len(data)
        return data

    def close(self) -> None:
        if self._fh is not None and self.path != "-":
            self._fh.close()


class _Continued:
    """The one stream of a _ForwardOnly delta, for one reader: closing it leaves the stream open."""

    def __init__(self, owner: _ForwardOnly) -> None:
        self._owner = owner

    def read(self, n: int) -> bytes:  # (always a bounded read: DeltaReader asks for at most 1 MiB)
        return self._owner.read(n)

    def close(self) -> None:
        pass

    def __enter__(self) -> _Continued:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _seekable(path: str) -> bool:
    """False for a pipe, a socket or a character device (standard input as /dev/stdin)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return True  # (opening it says what is wrong)
    return stat.S_ISREG(mode) or stat.S_ISBLK(mode) or stat.S_ISDIR(mode)


def _opener(delta: str | DeltaOpener) -> DeltaOpener:
    if not isinstance(delta, str):
        return delta
    if delta == "-" or not _seekable(delta):
        return _ForwardOnly(delta)

    def open_at(offset: int) -> BinaryIO:
        try:
            fh = open(delta, "rb")
        except OSError as exc:
            raise InputFileError(f"{delta}: {exc.strerror}") from None
        fh.seek(offset)  # (a checkpoint's offset is bounded by the file's size: _checkpoint_of)
        return fh

    return open_at


def codec_from_header(header: Header, name: str = "delta") -> tuple[Codec | None, Codec | None]:
    """(codec that rebuilds target blocks, codec that decompresses source blocks)."""
    c = header.codec
    if header.kind != "squashfs" or not c:
        return None, None
    try:
        source_codec = None
        if c.get("source_compressor"):  # (names, levels and block sizes were checked by Header.from_json)
            source_codec = Codec(name=c["source_compressor"], level=0, block_size=int(c["source_block_size"]))
            if not available_impls(source_codec.name):  # (lz4 and lzo need the system library)
                raise CannotReproduceError(f"this device cannot read the source slot's {source_codec.name} blocks "
                                           f"(no {IMPLS[source_codec.name][0]} here); send a full bundle")
        if not c.get("name"):
            return None, source_codec
        codec = Codec(name=c["name"], level=int(c["level"]), block_size=int(c["block_size"]),
                      gzip_window=int(c.get("gzip_window", 15)), xz_dict_size=int(c.get("xz_dict_size", 0)), impl=c["impl"],
                      lz4_hc=bool(c.get("lz4_hc", False)), lzo_algorithm=int(c.get("lzo_algorithm", LZO1X_999)),
                      gzip_strategies=int(c.get("gzip_strategies", 0)), xz_filters=int(c.get("xz_filters", 0)))
        if codec.impl not in available_impls(codec.name):
            raise CannotReproduceError(
                f"this device cannot reproduce {codec.label} blocks: the delta needs {c['impl_version']}, "
                f"which is not available here; send a full bundle")
        return codec, source_codec
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptDeltaError(f"{name}: delta header field codec is malformed: {exc}") from None


def read_sample(sample_frame: bytes, name: str = "delta") -> bytes:
    """The sample block's plain bytes. The generator writes it with zstd's checksum, so a damaged sample
    fails here, as a damaged delta, not later as a device that cannot reproduce the compressor."""
    try:
        return bytes(unzstd(sample_frame, dfmt.MAX_SAMPLE))
    except CorruptDeltaError as exc:
        raise CorruptDeltaError(f"{name}: the sample block is damaged: {exc}") from None


def check_sample(header: Header, codec: Codec | None, sample_frame: bytes, name: str = "delta") -> None:
    if codec is None or not header.sample_sha256:
        return
    plain = read_sample(sample_frame, name)
    got = hashlib.sha256(codec.compress(plain)).hexdigest()
    if got != header.sample_sha256:
        raise CannotReproduceError(
            f"this device cannot reproduce {codec.label} blocks byte for byte "
            f"(the delta was made with {header.codec.get('impl_version') if header.codec else '?'}, "
            f"this device has {codec.impl_version}); send a full bundle")


def default_state_path(target: str) -> str:
    try:
        if stat.S_ISBLK(os.stat(target).st_mode):
            return os.path.join("/var/lib/edge", f"delta-apply-{os.path.basename(target)}.json")
    except FileNotFoundError:
        pass
    return target + ".edge-apply"


def _load_state(path: str) -> dict | None:
    try:
        with open(path) as fh:
            state = json.load(fh)
        return state if isinstance(state, dict) else None
    except (OSError, ValueError, RecursionError):
        return None


def _check_state_path(state_path: str, source: str, delta: str | DeltaOpener, target: str) -> None:
    """The checkpoint file is replaced at every checkpoint and removed at the end: refuse a path that
    names a device node or FIFO (``--state /dev/null`` would replace /dev/null with a file, then delete
    it) or the source, the delta or the target (an apply that ends "written and verified" would
    delete the target it wrote), or a directory on a filesystem that the target holds (writing the
    target would destroy the filesystem, and the filesystem's writes would change the target)."""
    if os.path.exists(target) and directory_on(state_path, target):
        raise UsageError(f"--state: {state_path} is on a filesystem stored in TARGET ({target}): writing the "
                         f"target would destroy it; put the checkpoint file on another filesystem (nothing was "
                         f"written)")
    os.makedirs(os.path.dirname(os.path.abspath(state_path)), exist_ok=True)  # (where checkpoints will go)
    roles = {"OLD": source, "PATCH": delta if isinstance(delta, str) else None, "TARGET": target}
    try:
        check_output_path(state_path, roles)
    except UsageError as exc:
        raise UsageError(f"--state: {exc}") from None
    if os.path.abspath(state_path) == os.path.abspath(target):  # (a target that does not exist yet)
        raise UsageError(f"--state: {state_path} is TARGET; give the checkpoint file another path (nothing was "
                         f"written)")


def _save_state(path: str, state: dict) -> None:
    replace_file(path, json.dumps(state).encode(), mode=0o600)  # (its directory: made by _check_state_path)


def apply_delta(
    source: str,
    delta: str | DeltaOpener,
    target: str,
    *,
    state_path: str | None = None,
    progress: Progress | None = None,
    workers: int = 0,
    on_checkpoint: Callable[[dict], None] | None = None,
    checkpoint_bytes: int = CHECKPOINT_BYTES,
    on_start: Callable[[Header], None] | None = None,
    truncate: bool = True,
) -> ApplyResult:
    """Apply ``delta`` (a path, or ``open_at(offset)`` returning a stream there) to ``source``, writing ``target``.

    ``target`` may be a regular file or a block device; it is written in place
    from the start, so it must not be the source. ``on_start(header)`` runs once
    the delta's header, compressor sample, source image and target room have been
    checked, before the first byte is written; an exception from it stops the apply. A regular-file
    target is cut to the image's size unless ``truncate`` is False (a file standing in for a slot
    keeps its size, as a partition would).
    """
    with _delta_opener(delta) as opener:
        return _apply(source, delta, opener, target, state_path, progress, workers, on_checkpoint, checkpoint_bytes,
                      on_start, truncate)


def _apply(source: str, delta: str | DeltaOpener, opener: DeltaOpener, target: str, state_path: str | None,
           progress: Progress | None, workers: int, on_checkpoint: Callable[[dict], None] | None,
           checkpoint_bytes: int, on_start: Callable[[Header], None] | None, truncate: bool) -> ApplyResult:
    started = time.monotonic()
    return_large_buffers_promptly()  # peak memory follows the live buffers (bounded per op), not heap high-water
    name = _name(delta)
    check_target_kind(target, DeltaError)  # (before the checks that compare it with other files)
    state_path = state_path or default_state_path(target)
    _check_state_path(state_path, source, delta, target)
    if os.path.exists(target) and os.path.exists(source) and overlap(source, target):
        raise DeltaError(f"{target}: the target is the source or shares its storage ({source}); a delta is "
                         f"written to the other slot")
    if isinstance(delta, str) and _local_size(delta) is not None and os.path.exists(target) and overlap(delta, target):
        raise DeltaError(f"{target}: the target is the delta being applied or shares its storage ({delta}); "
                         f"nothing was written: write the target elsewhere")
    if missing_device(target):
        raise DeltaError(f"{target}: no such device")
    with opener(0) as stream:
        reader = DeltaReader(stream, name)
        header, header_raw, sample = reader.preamble()
        ops_start = reader.pos
        delta_size = _local_size(delta) if isinstance(delta, str) else _known_size(stream)
    did = dfmt.header_id(header_raw)
    codec, source_codec = codec_from_header(header, name)
    check_sample(header, codec, sample, name)

    try:
        sfd = os.open(source, os.O_RDONLY)
    except OSError as exc:
        raise InputFileError(f"{source}: {exc.strerror}") from None
    try:
        ssize = os.lseek(sfd, 0, os.SEEK_END)
        if ssize < header.source_size:
            raise SourceMismatchError(f"{source} has {ssize} bytes; the delta was made from an image of {header.source_size}")
        t0 = time.monotonic()
        try:
            got = sha256_prefix(sfd, header.source_size)
        except ShortFileError as exc:
            raise SourceMismatchError(f"source ended at byte {exc.pos}, the delta needs {header.source_size}") from None
        source_check = time.monotonic() - t0
        if got != header.source_sha256:
            seen, wanted = short_digests(got, header.source_sha256)
            raise SourceMismatchError(
                f"{source} is not the image this delta was made from (sha256 {seen}, expected "
                f"{wanted}): wrong base version or a corrupted slot")
        created = not os.path.lexists(target)
        tfd = open_target(target, DeltaError)  # locked: a second apply or install is refused; never a mounted one
        try:
            job = _Job(header, did, opener, name, ops_start, sfd, tfd, target, state_path, codec, source_codec,
                       progress, workers, on_checkpoint, started, source_check, checkpoint_bytes, on_start, truncate,
                       delta_size)
            try:
                return _run(job)
            except (CorruptDeltaError, TargetMismatchError) as exc:
                if not getattr(exc, "after_resume", False) or isinstance(exc, TruncatedDeltaError):
                    raise  # (a stream that ended early is a cut download: the checkpoint stays for the next run)
                # the checkpoint did not lead to this delta's image (another delta with the same header,
                # a target changed since, a damaged state file): start over once, from the first op
                if isinstance(opener, _ForwardOnly):  # ... which a pipe cannot give again: the next run will
                    remove_if_present(state_path)
                    raise DeltaError(f"{name}: resuming from the checkpoint in {state_path} did not give this delta's "
                                     f"image ({exc}); the checkpoint is removed: run the apply again") from None
                return _run(job, resume=False)
        except BaseException:
            if created and os.fstat(tfd).st_size == 0 and not os.path.exists(state_path):
                remove_if_present(target)  # refused before writing (no room, another image): leave no empty file
            raise
        finally:
            os.close(tfd)
    finally:
        os.close(sfd)


def _checkpoint_of(state: dict | None, did: str, header: Header, ops_start: int,
                   head_len: int, delta_size: int | None) -> tuple[int, int, int, bytes] | None:
    """(op, delta position, target position, saved head) of a checkpoint of this delta, or None when
    there is none or it is not one this delta could have written (then the apply starts over).
    ``delta_size``, when known (a local file, a download, a bundle's payload), bounds the delta position."""
    if not state or state.get("delta") != did or state.get("status") != "applying":
        return None
    op, dpos, tpos, head = state.get("op"), state.get("delta_pos"), state.get("target_pos"), state.get("head")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (op, dpos, tpos)):
        return None
    assert isinstance(op, int) and isinstance(dpos, int) and isinstance(tpos, int)
    if not (0 <= op <= header.op_count and dpos >= ops_start and 0 <= tpos <= header.target_size):
        return None
    if delta_size is not None and dpos >= delta_size:  # (an op boundary: at least END follows it)
        return None
    saved = saved_head(head, min(tpos, head_len))
    return (op, dpos, tpos, saved) if saved is not None else None


@dataclass(frozen=True)
class _Job:
    """One apply's checked inputs (the header, the compressors, the open source and target) and the
    caller's options: what a run, and the run that starts over after a bad resume, work from."""

    header: Header
    did: str  # the delta's id in checkpoints
    opener: DeltaOpener
    name: str
    ops_start: int  # the delta position of the first op
    sfd: int
    tfd: int
    target: str
    state_path: str
    codec: Codec | None
    source_codec: Codec | None
    progress: Progress | None
    workers: int
    on_checkpoint: Callable[[dict], None] | None
    started: float
    source_check: float  # seconds the whole-source hash took
    checkpoint_bytes: int
    on_start: Callable[[Header], None] | None
    truncate: bool
    delta_size: int | None


def _run(job: _Job, resume: bool = True) -> ApplyResult:
    header, did, opener, name, ops_start = job.header, job.did, job.opener, job.name, job.ops_start
    sfd, tfd, target, state_path, codec, source_codec = job.sfd, job.tfd, job.target, job.state_path, job.codec, job.source_codec
    progress, workers, on_checkpoint, started = job.progress, job.workers, job.on_checkpoint, job.started
    source_check, checkpoint_bytes, on_start, truncate = job.source_check, job.checkpoint_bytes, job.on_start, job.truncate
    delta_size = job.delta_size
    is_block = stat.S_ISBLK(os.fstat(tfd).st_mode)
    if is_block:
        capacity = os.lseek(tfd, 0, os.SEEK_END)
        if capacity < header.target_size:
            raise DeltaError(f"{target} holds {capacity} bytes, the image needs {header.target_size}")
    else:
        vfs = os.fstatvfs(tfd)
        room = vfs.f_bavail * vfs.f_frsize + os.fstat(tfd).st_blocks * 512
        if room < header.target_size:
            raise DeltaError(f"{target}: the image needs {header.target_size} bytes and its filesystem has room "
                             f"for {room}; free space or write to a larger filesystem")
    if on_start is not None:
        on_start(header)
    state = _load_state(state_path)
    resumed_at = resumed_pos = None
    op_index, dpos, tpos = 0, ops_start, 0
    # The first bytes (the superblock) are kept out of the target until the whole image is
    # verified, so a partial or wrong image never looks like a squashfs image.
    head = bytearray(min(HEAD_HELD_BACK, header.target_size))
    saved_at = _checkpoint_of(state, did, header, ops_start, len(head), delta_size) if resume else None
    if saved_at is not None:
        op_index, dpos, tpos, saved = saved_at
        head[: len(saved)] = saved
        resumed_at, resumed_pos = op_index, tpos
    src = fd_pread(sfd, header.source_size, "source")
    threads = rebuild_threads(codec, workers or os.cpu_count() or 1)
    # With compressor state this large (zstd with 1 MiB blocks: 17 MiB a thread) the applier's 64 MiB
    # do not also hold the previous op's content while the next op's reference is read: rebuilds
    # are finished first (they take far longer than decoding, so little overlap is lost).
    drain_before_decode = codec is not None and threads * compressor_memory(codec) >= HEAVY_COMPRESSOR
    pool = ThreadPoolExecutor(max_workers=threads)
    meter = RebuildMeter()
    last_cp_bytes, last_cp_time = tpos, time.monotonic()

    def checkpoint(status: str = "applying") -> None:
        nonlocal last_cp_bytes, last_cp_time
        os.fsync(tfd)
        st = {"delta": did, "target_sha256": header.target_sha256, "op": op_index, "delta_pos": dpos,
              "target_pos": tpos, "status": status, "head": bytes(head[: min(tpos, len(head))]).hex()}
        _save_state(state_path, st)
        if on_checkpoint is not None:
            on_checkpoint(st)
        last_cp_bytes, last_cp_time = tpos, time.monotonic()

    out = HeldBackWriter(tfd, head)
    # Rebuilding squashfs blocks is the expensive part: every block is compressed on the pool
    # while the main thread decodes the next ops. Results are checked and written per op.
    pending: deque[_Pending] = deque()
    pending_bytes = 0

    def finish_one() -> None:
        nonlocal pending_bytes
        p = pending.popleft()
        data = b"".join(f.result() for f in p.parts)
        if len(data) != p.length or hashlib.sha256(data).digest() != p.sha256:
            assert codec is not None
            which = (f"; `edge delta info {name}` tells which: it checks every op against the header's ops_sha256"
                     if header.ops_sha256 else "")
            raise CannotReproduceError(
                f"{name}: blocks op {p.index} rebuilt {len(data)} bytes that do not match the target: the delta is "
                f"damaged, or this device does not reproduce {codec.label} blocks exactly "
                f"({codec.impl_version}; its sample block matched){which}; send a full bundle")
        out.write(data, p.tpos)
        pending_bytes -= p.content_len

    def finish_all() -> None:
        while pending:
            finish_one()

    try:
        if resumed_at is None:
            checkpoint()
        with opener(dpos) as stream:
            reader = DeltaReader(stream, name)
            reader.pos, reader.op_index = dpos, op_index
            while True:
                op = reader.op()
                if op is None:
                    break
                if op_index >= header.op_count:
                    raise CorruptDeltaError(f"{name}: more ops than the header's {header.op_count}")
                if tpos + op.length > header.target_size:
                    raise CorruptDeltaError(f"{name}: op {op_index} writes past the end of the target ({header.target_size} bytes)")
                if isinstance(op, Blocks):
                    if BLOCK_COMPRESSED in op.flags and not header.sample_sha256:
                        raise CorruptDeltaError(f"{name}: blocks op {op_index} in a delta without a sample block to "
                                                f"check the compressor against")
                    if drain_before_decode:
                        finish_all()
                    content = _blocks_content(op, op_index, src, codec, source_codec, name, dpos)
                    assert codec is not None
                    view = memoryview(content)
                    size = block_size_of(op.mode, codec)
                    pieces = [view[i : i + size] for i in range(0, len(content), size)]
                    if len(pieces) != len(op.flags):
                        raise CorruptDeltaError(f"{name}: blocks op {op_index} has {len(op.flags)} block flags for "
                                                f"{len(pieces)} blocks of content")
                    parts = [pool.submit(_rebuild, meter, op.mode, piece, flag, codec, drain_before_decode)
                             for piece, flag in zip(pieces, op.flags)]
                    pending.append(_Pending(op_index, tpos, op.length, op.sha256, parts, len(content)))
                    pending_bytes += len(content)
                    while pending and (pending_bytes > MAX_PENDING_BYTES or pending[0].done()):
                        finish_one()
                else:
                    if isinstance(op, Patch) and op.targets:
                        for offset, n in op.targets:
                            if offset + n > tpos:
                                raise CorruptDeltaError(f"{name}: patch op {op_index} refers to target bytes "
                                                        f"{offset}..{offset + n}, not written before it (at {tpos})")
                        finish_all()  # its reference may lie in blocks still being rebuilt
                    _apply_op(op, op_index, src, out, tpos, name, dpos)
                tpos += op.length
                op_index += 1
                dpos = reader.pos
                if progress is not None:
                    progress(tpos, header.target_size)
                if tpos - last_cp_bytes >= checkpoint_bytes or time.monotonic() - last_cp_time >= CHECKPOINT_SECONDS:
                    finish_all()
                    checkpoint()
            finish_all()
            reader.expect_end()
        reader.check_totals(header, op_index, tpos)
        if not is_block and (truncate or os.fstat(tfd).st_size < header.target_size):
            os.ftruncate(tfd, header.target_size)
        os.fsync(tfd)
        try:
            got = out.sha256(header.target_size)
            problem = None if got == header.target_sha256 else "hashes to {}, expected {}".format(
                *short_digests(got, header.target_sha256))
        except ShortFileError as exc:
            problem = f"ends at byte {exc.pos} of {header.target_size}"
        if problem is not None:
            checkpoint("invalid")
            raise TargetMismatchError(f"{target}: the written image {problem}; the target has been marked invalid")
        out.seal()
        remove_if_present(state_path)
    except (CorruptDeltaError, TargetMismatchError) as exc:
        if resumed_at is not None:
            exc.after_resume = True  # type: ignore[attr-defined]
        raise
    finally:
        pool.shutdown(wait=True)
    rate = meter.rate(threads)
    return ApplyResult(target, header.target_size, got, op_index, resumed_at, source_check, time.monotonic() - started,
                       meter.plain, round(rate) if rate is not None else None, resumed_pos)


REBUILD_MEMORY = 24 << 20  # compressor state the rebuild threads may hold between them
HEAVY_COMPRESSOR = 12 << 20  # from this much compressor state on, an op is rebuilt before the next is decoded


def rebuild_threads(codec: Codec | None, wanted: int) -> int:
    """Threads that recompress blocks: ``wanted``, fewer when each one's compressor state would
    take the applier past its memory bound (zstd level 19 with 1 MiB blocks holds 17 MiB)."""
    if codec is None:
        return max(1, wanted)
    return max(1, min(wanted, REBUILD_MEMORY // max(1, compressor_memory(codec))))


def compressor_memory(codec: Codec) -> int:
    """Bytes one thread's compressor state takes for this codec's blocks (an upper estimate)."""
    if codec.name == "zstd":
        params = zstandard.ZstdCompressionParameters.from_level(codec.level, source_size=codec.block_size)
        return params.estimated_compression_context_size()
    if codec.name in ("xz", "lzma"):
        return 11 * (codec.xz_dict_size or codec.block_size) + (4 << 20)  # liblzma's bt4 match finder
    return 1 << 20  # zlib: a few hundred KiB


def _rebuild(meter: RebuildMeter, mode: int, plain: memoryview, flag: int, codec: Codec, drop: bool = False) -> bytes:
    try:
        return meter.rebuild(mode, plain, flag, codec)
    except DeltaError:
        raise
    except (zlib.error, lzma.LZMAError, zstandard.ZstdError, CodecError, RuntimeError, ValueError, OverflowError) as exc:
        raise CannotReproduceError(f"this device cannot recompress {codec.label} blocks "
                                   f"({codec.impl_version}): {exc}; send a full bundle") from None
    finally:
        if drop:  # a heavy context is not kept while the main thread reads the next op's reference
            codec.drop_thread_context()


@dataclass
class _Pending:
    index: int
    tpos: int
    length: int
    sha256: bytes
    parts: list
    content_len: int

    def done(self) -> bool:
        return all(f.done() for f in self.parts)


def _decode_error(exc: DeltaError, name: str, kind: str, index: int, at: int) -> CorruptDeltaError:
    """A payload that does not decode (or a reference that is not what the op says), named by the delta,
    the op and the op's first byte in the delta."""
    return CorruptDeltaError(f"{name}: {kind} op {index} (at byte {at}): {exc.args[0]}; the delta is damaged")


def _blocks_content(op: Blocks, index: int, src: Callable[[int, int], bytes], codec: Codec | None,
                    source_codec: Codec | None, name: str, at: int) -> bytes:
    """The new plain content of a blocks op: its patch decoded against the decompressed source extents."""
    if codec is None or source_codec is None:
        raise CorruptDeltaError(f"{name}: blocks op {index} in a delta without a compressor")
    try:
        content = read_patch(op.encoding, op.patch, op.content_len,
                             lambda: read_reference(op.sources, src, source_codec))
    except (CorruptDeltaError, ReferenceMismatchError) as exc:  # (the source matched its hash: the delta is wrong)
        raise _decode_error(exc, name, "blocks", index, at) from None
    if len(content) != op.content_len:
        raise CorruptDeltaError(f"{name}: blocks op {index} decodes to {len(content)} bytes, expected {op.content_len}")
    return content


_COPY_BUFFER = threading.local()


def _copy_buffer(n: int) -> memoryview:
    """A reused buffer for copies: a fresh MiB per chunk costs a mapping and its page faults each time."""
    buf = getattr(_COPY_BUFFER, "buf", None)
    if buf is None:
        buf = _COPY_BUFFER.buf = memoryview(bytearray(COPY_CHUNK))
    return buf[:n]


def _patch_reference(op: Patch, src: FdPread, out: HeldBackWriter) -> bytes | bytearray:
    """A patch op's reference: its source extent, then its extents of the target written so far."""
    if not op.targets:
        return src(op.src, op.src_len)
    ref = bytearray(op.reference_len)
    view = memoryview(ref)
    src.into(op.src, view[: op.src_len])
    at = op.src_len
    for offset, n in op.targets:
        out.read_into(offset, view[at : at + n])
        at += n
    view.release()
    return ref


def _apply_op(op: dfmt.Op, index: int, src: FdPread, out: HeldBackWriter, tpos: int, name: str, at: int) -> None:
    """A COPY, ZERO, LITERAL or PATCH op (BLOCKS ops are rebuilt on the pool by ``_run``)."""
    if isinstance(op, Copy):
        if op.src + op.length > src.limit:
            raise CorruptDeltaError(f"{name}: copy op {index} (at byte {at}) reads source bytes {op.src}..{op.src + op.length}, "
                                    f"past the source image's {src.limit}; the delta is damaged")
        done = 0
        while done < op.length:
            n = min(COPY_CHUNK, op.length - done)
            out.write(src.into(op.src + done, _copy_buffer(n)), tpos + done)
            done += n
    elif isinstance(op, Zero):
        zero = bytes(min(COPY_CHUNK, op.length))
        done = 0
        while done < op.length:
            n = min(COPY_CHUNK, op.length - done)
            out.write(zero[:n], tpos + done)
            done += n
    elif isinstance(op, Literal):
        try:
            data = op.data if op.encoding == ENC_RAW else unzstd(op.data, op.length)
        except CorruptDeltaError as exc:
            raise _decode_error(exc, name, "literal", index, at) from None
        if len(data) != op.length:
            raise CorruptDeltaError(f"{name}: literal op {index} holds {len(data)} bytes, expected {op.length}")
        out.write(data, tpos)
    elif isinstance(op, Patch):
        try:
            data = read_patch(op.encoding, op.patch, op.length, lambda: _patch_reference(op, src, out))
        except CorruptDeltaError as exc:
            raise _decode_error(exc, name, "patch", index, at) from None
        if len(data) != op.length or hashlib.sha256(data).digest() != op.sha256:
            raise CorruptDeltaError(f"{name}: patch op {index} does not produce the expected bytes (corrupt delta)")
        out.write(data, tpos)
    else:  # pragma: no cover - DeltaReader only returns the types above
        raise CorruptDeltaError(f"{name}: unknown op {op!r}")
