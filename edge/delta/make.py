"""Make a delta: plan, then encode every draft in parallel, check it, and write the file."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import zstandard

from edge import __version__
from edge.fsutil import ShortFileError, atomic_output, check_output_path, sha256_prefix
from edge.squashfs import SquashfsError, SquashfsImage
from edge.squashfs import format as sqfmt
from edge.squashfs.compressors import Codec, CodecError, available_impls

from . import format as dfmt
from .blocks import RebuildMeter, block_size_of, fd_pread, read_reference, rebuild_block
from .errors import DeltaError, SourceMismatchError
from .format import (
    BLOCK_COMPRESSED,
    BLOCK_SPARSE,
    BLOCK_STORED,
    ENC_RAW,
    ENC_ZSTD,
    MODE_DATA,
    MODE_METADATA,
    Blocks,
    Copy,
    Header,
    Literal,
    Op,
    Patch,
    SourceChain,
    Zero,
)
from .generic_plan import DraftPatch
from .patches import make_patch, uses_reference, zstd_frame
from .generic_plan import plan as generic_plan
from .squashfs_plan import DraftBlocks, DraftCopy, DraftLiteral, DraftZero
from .squashfs_plan import plan as squashfs_plan
from .tradeoff import Item, choose

Progress = Callable[[int, int], None]
MAX_LITERAL = dfmt.MAX_OP_CONTENT
MAX_NOTED = 100  # damaged blocks a result lists (all are counted)
SAMPLE_BYTES = 32 << 10  # plain bytes of a real block the device recompresses before writing anything


@dataclass
class MakeResult:
    path: str
    size: int
    kind: str
    codec: str | None
    source_size: int
    target_size: int
    source_sha256: str = ""
    target_sha256: str = ""
    ops: dict[str, int] = field(default_factory=dict)  # count by kind
    op_bytes: dict[str, int] = field(default_factory=dict)  # delta bytes by kind
    target_bytes: dict[str, int] = field(default_factory=dict)  # target bytes produced by kind
    unreproducible_blocks: int = 0
    seconds: float = 0.0
    # set when the delta was made for a given link speed (see edge.delta.tradeoff)
    shipped_ops: int = 0  # BLOCKS ops sent ready-compressed instead of rebuilt on the device
    rebuild_rate: float | None = None  # plain bytes/s the device is assumed to recompress
    estimated_seconds: dict[str, float] = field(default_factory=dict)  # streamed time to updated, before/after
    # why a pair of squashfs images got a byte-level delta (an image that does not parse), and blocks
    # that do not decompress (a new one is sent as stored, an old one is not used as a reference)
    generic_because: str | None = None
    damaged_blocks: list[str] = field(default_factory=list)  # the first MAX_NOTED
    damaged_block_count: int = 0


def file_sha256(fd: int, size: int) -> str:
    try:
        return sha256_prefix(fd, size)
    except ShortFileError as exc:
        raise DeltaError(f"file shrank while hashing at byte {exc.pos}") from None


def _open_squashfs(path: str) -> tuple[SquashfsImage | None, str | None]:
    """The image, or None and why when the file says it is squashfs (its magic) but does not open."""
    try:
        return SquashfsImage(path), None
    except SquashfsError as exc:
        try:
            with open(path, "rb") as fh:
                claims = fh.read(4) == sqfmt.U32.pack(sqfmt.MAGIC)
        except OSError:
            claims = False
        return None, (f"{path}: {_without_path(str(exc), path)}" if claims else None)


def _without_path(message: str, path: str) -> str:
    return message[len(path) + 2:] if message.startswith(f"{path}: ") else message


def _codec_samples(img: SquashfsImage, fd: int, files: int = 12, fragments: int = 4, metadata: int = 2,
                   budget: int = 1 << 62) -> list[tuple[int, bytes, bytes]]:
    """(mode, plain, stored) blocks of the image to identify its compressor implementation: the first
    compressed block of ``files`` files spread over the image, ``fragments`` fragment blocks, and up to
    ``metadata`` compressed metadata blocks of each table (-noI leaves the inode and directory tables
    stored), until ``budget`` plain bytes."""
    out: list[tuple[int, bytes, bytes]] = []
    used = 0

    def add(mode: int, raw: bytes, limit: int) -> None:
        nonlocal used
        if used >= budget:
            return
        try:
            plain = img.codec.decompress(raw, limit)
        except CodecError:
            return  # a damaged block is no sample (make_delta notes it when it gets to that block)
        out.append((mode, plain, raw))
        used += len(plain)

    lay = img.layout()
    bs = img.superblock.block_size
    with_blocks = [f for f in lay.files if any(b.stored_size and b.compressed for b in f.blocks)]
    step = max(1, len(with_blocks) // files)
    for f in with_blocks[::step][:files]:
        b = next(b for b in f.blocks if b.stored_size and b.compressed)
        add(MODE_DATA, os.pread(fd, b.stored_size, b.offset), bs)
    for b in [b for b in lay.fragments if b.compressed][:fragments]:
        add(MODE_DATA, os.pread(fd, b.stored_size, b.offset), bs)
    for t in lay.tables:
        for b in [b for b in t.metadata_blocks if b.compressed][:metadata]:
            add(MODE_METADATA, os.pread(fd, b.stored_size, b.offset + 2), sqfmt.METADATA_SIZE)
    return out


def _reproduced(codecs: list[Codec], samples: list[tuple[int, bytes, bytes]], pool: ThreadPoolExecutor,
                every: bool = False) -> list[int]:
    """For each of ``codecs``, how many of ``samples`` it rebuilds byte for byte (-1: it cannot run
    here). The blocks are compressed on ``pool`` (the compressors release the GIL), the codecs'
    blocks interleaved; with ``every``, only whether a codec rebuilds them all matters: its count
    stops at its first miss and its blocks not yet compressed are dropped."""

    def same(codec: Codec, mode: int, plain: bytes, stored: bytes) -> bool:
        return rebuild_block(mode, plain, BLOCK_COMPRESSED, codec)[2 if mode == MODE_METADATA else 0:] == stored

    futures = [[pool.submit(same, c, *sample) for c in codecs] for sample in samples]
    scores = [0] * len(codecs)
    counting = [True] * len(codecs)
    for row in futures:
        for i, f in enumerate(row):
            if not counting[i]:
                continue
            try:
                ok = f.result()
            except Exception:  # a native library that cannot run here is simply not a candidate
                scores[i], ok = -1, False
            else:
                scores[i] += ok
            if scores[i] < 0 or (every and not ok):
                counting[i] = False
                for later in futures:
                    later[i].cancel()
    return scores


def _pick_sample(codec: Codec, samples: list[tuple[int, bytes, bytes]]) -> bytes | None:
    """The sample the delta carries, for the device to recompress before it writes anything.

    Candidates are the first SAMPLE_BYTES of each sampled data block (the whole block when blocks
    are smaller: zstd chooses its parameters by input size, and 32 KiB gets those of a 128 KiB
    block, where 8 KiB would not) that the compressor neither leaves nearly as it is (random or
    already-compressed data checks little of it) nor shrinks to almost nothing (runs of one byte).
    The cheapest (its zstd frame in the delta) that tells this codec's implementation apart from the
    other ones available here (a device with another library or version must fail the check) is
    taken; if none does, the cheapest.
    """
    others = [codec.with_impl(impl) for impl in available_impls(codec.name) if impl != codec.impl]
    want = min(SAMPLE_BYTES, codec.block_size)
    candidates: dict[bytes, int] = {}
    for mode, plain, _ in samples:
        piece = bytes(plain[:SAMPLE_BYTES])
        if mode == MODE_DATA and len(piece) == want and piece not in candidates:
            cost = len(zstandard.ZstdCompressor(level=19).compress(piece))
            if len(piece) // 50 <= cost <= len(piece) * 3 // 4:
                candidates[piece] = cost
    ranked = sorted(candidates, key=candidates.__getitem__)
    for piece in ranked:
        if not others or _told_apart(codec.compress(piece), piece, others):
            return piece
    if ranked:
        return ranked[0]
    return next((plain for mode, plain, _ in samples if mode == MODE_DATA), samples[0][1] if samples else None)


def _told_apart(ours: bytes, piece: bytes, others: list[Codec]) -> bool:
    """True when one of ``others`` compresses ``piece`` to something else than ``ours``."""
    for other in others:
        try:
            if other.compress(piece) != ours:
                return True
        except Exception:  # an implementation that cannot run here tells nothing
            continue
    return False


def reproducing_codec(img: SquashfsImage, fd: int, workers: int = 0) -> tuple[Codec | None, bytes | None]:
    """The codec implementation that recompresses this image's blocks byte for byte, and a sample block.

    When more than one implementation rebuilds every sample (small blocks, such as 4 KiB ones, often
    come out the same from libzstd 1.5.4 and python-zstandard's 1.5.7, while others do not), more
    blocks are tried (up to 4 MiB of content) and the one that rebuilds the most is taken, the first
    on a tie."""
    samples = _codec_samples(img, fd)
    codecs = [img.codec.with_impl(impl) for impl in available_impls(img.codec.name)]
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        passing = [c for c, n in zip(codecs, _reproduced(codecs, samples, pool, every=True)) if n == len(samples)]
        if len(passing) > 1:
            more = _codec_samples(img, fd, files=256, fragments=64, metadata=16, budget=4 << 20)
            scores = _reproduced(passing, more, pool)
            passing = [passing[scores.index(max(scores))]]
    if not passing:
        return None, None
    return passing[0], _pick_sample(passing[0], samples)


class _Encoder:
    def __init__(self, level: int, source_fd: int, source_size: int, target_fd: int, target_size: int,
                 codec: Codec | None, source_codec: Codec | None, target_read_codec: Codec | None,
                 names: tuple[str, str] = ("source", "target")) -> None:
        self.level = level
        self.names = names
        self.damaged: list[str] = []  # blocks of either image that do not decompress (the first MAX_NOTED)
        self.damaged_count = 0
        self._damage_lock = threading.Lock()  # (drafts are encoded in a thread pool)
        self.target_read_codec = target_read_codec  # decompresses target blocks (any implementation)
        self.src = fd_pread(source_fd, source_size, "source")
        self.source_size = source_size
        self.tgt = fd_pread(target_fd, target_size, "target")
        self.codec = codec
        self.source_codec = source_codec
        self.unreproducible = 0
        self.meter = RebuildMeter()  # the rebuilds that check BLOCKS ops: this machine's rebuild rate
        self.rebuilt_sample: bytes | None = None  # the plain content of a block rebuilt and matched (a sample)

    def literal(self, data: bytes, level: int | None = None) -> list[Op]:
        ops: list[Op] = []
        for i in range(0, len(data), MAX_LITERAL):
            piece = data[i : i + MAX_LITERAL]
            packed = zstd_frame(piece, level or self.level)
            if len(packed) < len(piece):
                ops.append(Literal(len(piece), ENC_ZSTD, packed))
            else:
                ops.append(Literal(len(piece), ENC_RAW, piece))
        return ops

    def encode(self, draft: object) -> list[Op]:
        if isinstance(draft, DraftCopy):
            return [Copy(draft.src, draft.length)]
        if isinstance(draft, DraftZero):
            return [Zero(draft.length)]
        if isinstance(draft, DraftLiteral):
            data = self.tgt(draft.offset, draft.length)
            if draft.offset + draft.length <= self.source_size and self.src(draft.offset, draft.length) == data:
                return [Copy(draft.offset, draft.length)]  # e.g. table indexes that did not move
            return self.literal(data)
        if isinstance(draft, DraftPatch):
            data = self.tgt(draft.offset, draft.length)
            ref = self.src(draft.src, draft.src_len) if draft.src_len else b""
            if draft.targets:
                ref = b"".join([ref, *(self.tgt(o, n) for o, n in draft.targets)])
            enc, packed = make_patch(data, ref, self.level)
            used = uses_reference(enc)
            op = Patch(draft.src, draft.src_len if used else 0, draft.length, enc, packed,
                       hashlib.sha256(data).digest(), draft.targets if used else ())
            alt = self.literal(data)
            return [op] if len(dfmt.encode_op(op)) < sum(len(dfmt.encode_op(o)) for o in alt) else alt
        if isinstance(draft, DraftBlocks):
            return self.blocks(draft)
        raise TypeError(draft)

    def _target_blocks(self, draft: DraftBlocks) -> list[tuple[bytes | None, bytes, int]]:
        """(plain, stored form as written in the image, flag) of every block of the draft (plain None:
        the block does not decompress)."""
        out = []
        if draft.mode == MODE_DATA:
            assert isinstance(draft.targets, list)
            for t in draft.targets:
                stored = t.word & sqfmt.DATA_SIZE_MASK
                if stored == 0:
                    out.append((bytes(t.plain), b"", BLOCK_SPARSE))
                    continue
                raw = self.tgt(t.offset, stored)
                if t.word & sqfmt.DATA_UNCOMPRESSED:
                    out.append((raw, raw, BLOCK_STORED))
                else:
                    out.append((self._decompress(raw, 1 << 20, t.offset), raw, BLOCK_COMPRESSED))
        else:
            chain = draft.targets
            assert isinstance(chain, SourceChain)
            pos = chain.start
            while pos < chain.end:
                (word,) = sqfmt.U16.unpack(self.tgt(pos, 2))
                size = word & ~sqfmt.METADATA_UNCOMPRESSED
                raw = self.tgt(pos + 2, size)
                if word & sqfmt.METADATA_UNCOMPRESSED:
                    out.append((raw, self.tgt(pos, 2 + size), BLOCK_STORED))
                else:
                    out.append((self._decompress(raw, sqfmt.METADATA_SIZE, pos), self.tgt(pos, 2 + size), BLOCK_COMPRESSED))
                pos += 2 + size
        return out

    def _decompress(self, raw: bytes, limit: int, offset: int) -> bytes | None:
        """A target block's content; None for a block that does not decompress (a damaged image:
        its stored bytes are what the delta must produce, so they travel as they are)."""
        assert self.target_read_codec is not None
        try:
            return self.target_read_codec.decompress(raw, limit)
        except CodecError as exc:
            self._note_damage(f"{self.names[1]}: block at offset {offset} does not decompress ({exc}); sent as stored")
            return None

    def _note_damage(self, message: str) -> None:
        with self._damage_lock:
            self.damaged_count += 1
            if len(self.damaged) < MAX_NOTED:
                self.damaged.append(message)

    def blocks(self, draft: DraftBlocks) -> list[Op]:
        blocks = self._target_blocks(draft)
        expected_all = b"".join(stored for _, stored, _ in blocks)
        if self.codec is None:
            self.unreproducible += sum(1 for _, _, f in blocks if f == BLOCK_COMPRESSED)
            return self.literal(expected_all)
        ok = [plain is not None and self.meter.rebuild(draft.mode, plain, flag, self.codec) == stored
              for plain, stored, flag in blocks]
        if self.rebuilt_sample is None:
            self.rebuilt_sample = next((plain for (plain, _, flag), good in zip(blocks, ok)
                                        if good and flag == BLOCK_COMPRESSED), None)
        ref = b""
        if draft.sources and any(ok):
            assert self.source_codec is not None
            try:
                ref = bytes(read_reference(tuple(draft.sources), self.src, self.source_codec))
            except SourceMismatchError as exc:  # the device would fail on the same bytes: no reference
                self._note_damage(f"{self.names[0]}: {exc.args[0].removeprefix('source ')}; not used as a reference")
        ops: list[Op] = []
        i = 0
        while i < len(blocks):
            j = i
            while j < len(blocks) and ok[j] == ok[i]:
                j += 1
            seg = blocks[i:j]
            expected = b"".join(stored for _, stored, _ in seg)
            size = block_size_of(draft.mode, self.codec)
            if ok[i] and any(len(plain) != size for plain, _, _ in seg[:-1]):
                ok[i] = False  # a short block inside the run: the device splits content into whole blocks
            if not ok[i]:
                # (a block that does not decompress is counted as damaged, not here)
                self.unreproducible += sum(1 for plain, _, _ in seg if plain is not None)
                ops += self.literal(expected)
            else:
                content = b"".join(plain for plain, _, _ in seg if plain is not None)
                flags = tuple(f for _, _, f in seg)
                enc, patch = make_patch(content, ref, self.level)
                sources = tuple(draft.sources) if ref and uses_reference(enc) else ()
                op = Blocks(draft.mode, sources, len(content), flags, enc, patch, len(expected), hashlib.sha256(expected).digest())
                # (each block of this segment was rebuilt above with the device's code and matched)
                if len(dfmt.encode_op(op)) < len(expected):
                    ops.append(op)  # compressed blocks hardly compress again: their raw size bounds a literal
                else:
                    alt = self.literal(expected)
                    ops += [op] if len(dfmt.encode_op(op)) < sum(len(dfmt.encode_op(o)) for o in alt) else alt
            i = j
        return ops


def make_delta(
    source: str,
    target: str,
    out: str,
    *,
    level: int = 19,
    workers: int = 0,
    generic: bool = False,
    progress: Progress | None = None,
    link_speed: float | None = None,
    rebuild_rate: float | None = None,
) -> MakeResult:
    """Write a delta that turns ``source`` into ``target`` (files or squashfs images).

    With ``link_speed`` (bytes/s of the device's download), changed squashfs
    blocks whose recompression on the device would hold the install up longer
    than downloading them are sent ready-compressed (see ``edge.delta.tradeoff``).
    ``rebuild_rate`` is the plain bytes/s the device recompresses with all its
    cores; by default this machine's rate, measured while checking the blocks.
    """
    check_output_path(out, {"OLD": source, "NEW": target})
    if link_speed is not None and link_speed <= 0:
        raise DeltaError(f"link speed must be positive, not {link_speed}")
    if rebuild_rate is not None and rebuild_rate <= 0:
        raise DeltaError(f"rebuild rate must be positive, not {rebuild_rate}")
    start = time.monotonic()
    sfd = os.open(source, os.O_RDONLY)
    tfd = os.open(target, os.O_RDONLY)
    try:
        ssize = os.fstat(sfd).st_size
        tsize = os.fstat(tfd).st_size
        s_img, s_why = (None, None) if generic else _open_squashfs(source)
        t_img, t_why = (None, None) if generic else _open_squashfs(target)
        both_claim = (s_img is not None or s_why is not None) and (t_img is not None or t_why is not None)
        generic_because = (s_why or t_why) if both_claim else None  # both say squashfs, one does not open
        codec = sample = None
        kind = "generic"
        drafts = None
        if s_img is not None and t_img is not None:
            try:
                codec, sample = reproducing_codec(t_img, tfd, workers)
                drafts = squashfs_plan(s_img, t_img, sfd, tfd, tsize)
                kind = "squashfs"
            except (SquashfsError, CodecError) as exc:
                # a damaged or inconsistent image (a corrupt block, overlapping blocks, an index out of
                # range): its bytes are still what the delta must produce, so it gets a byte-level delta
                generic_because = str(exc)
                s_img = t_img = None
                codec = sample = None
        if drafts is None:
            drafts = generic_plan(sfd, ssize, tfd, tsize)
        enc = _Encoder(level, sfd, ssize, tfd, tsize, codec, s_img.codec if s_img is not None else None,
                       t_img.codec if t_img is not None else None, (source, target))
        total = len(drafts)
        ops: list[Op] = []
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            # biggest drafts first so the last ones to finish are small (the output order is kept)
            order = sorted(range(total), key=lambda i: -drafts[i].length if isinstance(drafts[i], (DraftBlocks, DraftPatch)) else 0)
            futures = {i: pool.submit(enc.encode, drafts[i]) for i in order}
            for n in range(total):
                ops.extend(futures.pop(n).result())
                if progress is not None:
                    progress(n + 1, total)
        ops = _merge(ops)
        trade: tuple[int, float | None, dict[str, float]] = (0, None, {})
        if link_speed is not None and kind == "squashfs":
            ops, trade = _ship_compressed(ops, enc, link_speed, rebuild_rate, workers or os.cpu_count() or 1)
        if not any(isinstance(op, Blocks) and BLOCK_COMPRESSED in op.flags for op in ops):
            sample = None  # nothing is recompressed on the device: no sample to check
        else:
            # the image's own sample blocks may all be damaged; a block rebuilt and matched above serves
            sample = (sample or enc.rebuilt_sample or b"")[:SAMPLE_BYTES]
        encoded = [dfmt.encode_op(op) for op in ops]
        ops_hash = hashlib.sha256()
        for raw in encoded:
            ops_hash.update(raw)
        ops_hash.update(dfmt.END)
        _check_limits(encoded)
        codec_header = _codec_header(codec, s_img) if kind == "squashfs" else None
        header = Header(
            kind=kind,
            source_size=ssize,
            source_sha256=file_sha256(sfd, ssize),
            target_size=tsize,
            target_sha256=file_sha256(tfd, tsize),
            op_count=len(ops),
            codec=codec_header,
            sample_sha256=hashlib.sha256(codec.compress(sample)).hexdigest() if codec is not None and sample else None,
            generator=f"edge {__version__}",
            ops_sha256=ops_hash.hexdigest(),
            version=dfmt.format_version(ops, codec_header),
        )
        result = MakeResult(out, 0, kind, codec.impl_version if codec else None, ssize, tsize,
                            header.source_sha256, header.target_sha256, unreproducible_blocks=enc.unreproducible,
                            shipped_ops=trade[0], rebuild_rate=trade[1], estimated_seconds=trade[2],
                            generic_because=generic_because, damaged_blocks=sorted(enc.damaged),
                            damaged_block_count=enc.damaged_count)
        sample_frame = zstd_frame(sample, 19) if codec is not None and sample else b""
        try:  # the applier must accept what is written: a header it would refuse is an internal error here
            dfmt.Header.from_json(header.to_json())
        except DeltaError as exc:
            raise DeltaError(f"internal error: the generator made a header the applier would refuse: {exc}") from None
        with atomic_output(out, prefix=".edge-delta-") as fh:
            fh.write(dfmt.encode_preamble(header, sample_frame))
            for op, raw in zip(ops, encoded):
                fh.write(raw)
                name = dfmt.OP_NAMES[raw[0]]
                result.ops[name] = result.ops.get(name, 0) + 1
                result.op_bytes[name] = result.op_bytes.get(name, 0) + len(raw)
                result.target_bytes[name] = result.target_bytes.get(name, 0) + op.length
            fh.write(dfmt.END)
        result.size = os.path.getsize(out)
        result.seconds = time.monotonic() - start
        return result
    finally:
        os.close(sfd)
        os.close(tfd)


def _ship_compressed(ops: list[Op], enc: _Encoder, link_speed: float, rebuild_rate: float | None,
                     threads: int) -> tuple[list[Op], tuple[int, float | None, dict[str, float]]]:
    """Replace the BLOCKS ops ``tradeoff.choose`` picks by literals of their stored bytes."""
    rebuild_rate = rebuild_rate or enc.meter.rate(threads)
    if rebuild_rate is None:
        return ops, (0, None, {})
    items: list[Item] = []
    positions: list[int] = []
    tpos = 0
    for op in ops:
        size = len(dfmt.encode_op(op))
        if isinstance(op, Blocks) and BLOCK_COMPRESSED in op.flags:
            items.append(Item(size, op.content_len, op.length))  # a literal of compressed bytes: about raw size
        else:
            items.append(Item(size))
        positions.append(tpos)
        tpos += op.length
    chosen, before, after = choose(items, link_speed, rebuild_rate)
    replace = {i: positions[i] for i in chosen}
    out: list[Op] = []
    for n, op in enumerate(ops):
        if n in replace:
            out += enc.literal(enc.tgt(replace[n], op.length), level=3)  # compressed blocks: raw, mostly
        else:
            out.append(op)
    return out, (len(chosen), rebuild_rate, {"before": round(before, 3), "after": round(after, 3)})


def _check_limits(encoded: list[bytes]) -> None:
    """Read every op back with the applier's reader: an op past the format's limits (which bound the
    device's memory) is a generator bug, caught here rather than on the device."""
    for index, raw in enumerate(encoded):
        reader = dfmt.DeltaReader(io.BytesIO(raw), "generated op")
        reader.op_index = index
        try:
            reader.op()
        except DeltaError as exc:
            raise DeltaError(f"internal error: the generator made an op the applier would refuse: {exc}") from None


def _codec_header(codec: Codec | None, s_img: SquashfsImage | None) -> dict:
    out: dict = {"source_compressor": s_img.codec.name if s_img else None,
                 "source_block_size": s_img.superblock.block_size if s_img else None}
    if codec is not None:
        out.update(name=codec.name, impl=codec.impl, impl_version=codec.impl_version, level=codec.level,
                   block_size=codec.block_size, gzip_window=codec.gzip_window, xz_dict_size=codec.xz_dict_size)
        if codec.gzip_strategies:
            out["gzip_strategies"] = codec.gzip_strategies
        if codec.xz_filters:
            out["xz_filters"] = codec.xz_filters
        if codec.name == "lz4":
            out["lz4_hc"] = codec.lz4_hc
        elif codec.name == "lzo":
            out["lzo_algorithm"] = codec.lzo_algorithm
    return out


def _merge(ops: list[Op]) -> list[Op]:
    """Join copies of contiguous source ranges and adjacent zero fills."""
    out: list[Op] = []
    for op in ops:
        last = out[-1] if out else None
        if isinstance(op, Copy) and isinstance(last, Copy) and last.src + last.length == op.src:
            out[-1] = Copy(last.src, last.length + op.length)
        elif isinstance(op, Zero) and isinstance(last, Zero):
            out[-1] = Zero(last.length + op.length)
        else:
            out.append(op)
    return out
