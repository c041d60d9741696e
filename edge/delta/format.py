"""The Edge delta file format: a JSON header, then operations in target order.

    magic "EDGEDELT" | u32 version | u32 header length | header (canonical JSON)
    | u32 sample length | sample (zstd frame of plain bytes, squashfs deltas only)
    | op | op | ... | END

Every op produces the next bytes of the target, so a device writes the
inactive slot front to back while the delta streams in.  Integers in ops are
unsigned LEB128 varints.  See docs/delta-format.md for the full description.

This module is pure: ops to bytes and bytes (a stream) to ops.  Every length
read from a delta is checked against hard caps before anything is allocated.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from typing import BinaryIO

from edge.squashfs.compressors import GZIP_STRATEGY_IDS, XZ_BCJ_IDS
from edge.squashfs.native import LZO1X_999

from .errors import CorruptDeltaError, TruncatedDeltaError

MAGIC = b"EDGEDELT"
VERSION = 4  # 2 added ENC_BSDIFF, 3 OP_PATCH_TARGET, 4 what format_version says; older deltas (subsets) are still read
READABLE_VERSIONS = frozenset({1, 2, 3, 4})
PREAMBLE = struct.Struct("<8sII")
MAX_HEADER = 1 << 20
HEADER_SHA256 = "header_sha256"  # header key: sha256 of the header's canonical JSON without this key
# every header field of the deltas made before headers carried HEADER_SHA256
UNSEALED_FIELDS = frozenset({"format", "kind", "source", "target", "op_count", "codec", "sample_sha256", "generator",
                             "stats", "ops_sha256"})
MAX_SAMPLE = 1 << 20
# Hard caps a device enforces whatever a delta claims (the generator stays well below them).
# Per-op limits, chosen so that the applier's peak memory stays under 64 MiB with everything
# one op can hold alive at once (reference, the decoder's copy of it, patch, content, rebuilds
# in flight; docs/delta-format.md, "Memory"). The generator stays inside them.
MAX_OP_CONTENT = 4 << 20  # plain bytes one BLOCKS/PATCH op produces or one LITERAL holds
MAX_OP_REFERENCE = 10 << 20  # plain reference (dictionary) bytes one op may ask for
MAX_OP_EXTENTS = 1 << 16
MAX_TARGET_EXTENTS = 64  # already-written target extents one patch op may add to its reference
MAX_PATCH = MAX_OP_CONTENT + (64 << 10)  # encoded bytes of one op's patch or literal

OP_END = 0
OP_COPY = 1
OP_ZERO = 2
OP_LITERAL = 3
OP_BLOCKS = 4
OP_PATCH = 5
OP_PATCH_TARGET = 6  # a patch whose reference also holds target bytes written before it (format 3)
OP_NAMES = {OP_COPY: "copy", OP_ZERO: "zero", OP_LITERAL: "literal", OP_BLOCKS: "blocks", OP_PATCH: "patch",
            OP_PATCH_TARGET: "patch"}

ENC_RAW = 0
ENC_ZSTD = 1  # zstd frame, no dictionary
ENC_ZSTD_DICT = 2  # zstd frame, the op's reference bytes as a raw-content dictionary
ENC_BSDIFF = 3  # bsdiff control/diff/extra streams against the op's reference (see patches.py)
PATCH_ENCODINGS = (ENC_RAW, ENC_ZSTD, ENC_ZSTD_DICT, ENC_BSDIFF)
ENC_NAMES = {ENC_RAW: "raw", ENC_ZSTD: "zstd", ENC_ZSTD_DICT: "zstd-dict", ENC_BSDIFF: "bsdiff"}

MODE_DATA = 0  # squashfs data/fragment blocks: each stored as-is, size words live in the inodes
MODE_METADATA = 1  # squashfs metadata blocks: 8 KiB plain, each prefixed by its 2-byte header

BLOCK_COMPRESSED = 0
BLOCK_STORED = 1
BLOCK_SPARSE = 2
BLOCK_UNUSED = 3  # (the fourth value of a 2-bit flag: refused)


@dataclass(frozen=True, slots=True)
class Copy:
    src: int
    length: int


@dataclass(frozen=True, slots=True)
class Zero:
    length: int


@dataclass(frozen=True, slots=True)
class Literal:
    length: int  # target bytes
    encoding: int
    data: bytes


@dataclass(frozen=True, slots=True)
class SourceBlock:
    """A source data/fragment block (``word`` is the squashfs size word; 0 = hole of ``plain`` bytes)."""

    offset: int
    word: int
    plain: int


@dataclass(frozen=True, slots=True)
class SourceChain:
    """A run of chained source metadata blocks [start, end)."""

    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Blocks:
    """Rebuild squashfs blocks: reference = decompressed source extents; content = patch applied;
    then every block of ``content`` is compressed (or stored, or skipped as a hole) per ``flags``."""

    mode: int
    sources: tuple[SourceBlock | SourceChain, ...]
    content_len: int
    flags: tuple[int, ...]
    encoding: int
    patch: bytes
    length: int  # target bytes produced
    sha256: bytes


@dataclass(frozen=True, slots=True)
class Patch:
    """Generic byte-level diff: target bytes = decode(patch, reference), where the reference is
    source[src:src+src_len] followed by each ``targets`` extent (offset, length) of the target, all of
    which lie before this op's own bytes (written already: new content that repeats other new content)."""

    src: int
    src_len: int
    length: int
    encoding: int
    patch: bytes
    sha256: bytes
    targets: tuple[tuple[int, int], ...] = ()

    @property
    def reference_len(self) -> int:
        return self.src_len + sum(n for _, n in self.targets)


Op = Copy | Zero | Literal | Blocks | Patch
_OP_CODES = {Copy: OP_COPY, Zero: OP_ZERO, Literal: OP_LITERAL, Blocks: OP_BLOCKS, Patch: OP_PATCH}


def op_name(op: Op) -> str:
    """"copy", "zero", "literal", "blocks" or "patch"."""
    return OP_NAMES[_OP_CODES[type(op)]]


@dataclass
class Header:
    kind: str  # "squashfs" or "generic"
    source_size: int
    source_sha256: str
    target_size: int
    target_sha256: str
    op_count: int
    codec: dict | None = None  # name, impl, impl_version, level, block_size, gzip_window, xz_dict_size, lz4_hc, lzo_algorithm
    sample_sha256: str | None = None  # sha256 of the sample compressed with the codec
    generator: str = ""
    stats: dict = field(default_factory=dict)
    ops_sha256: str | None = None  # sha256 of every encoded op and END: makes the header (the checkpoint id) name the whole delta
    version: int = VERSION  # the format version the delta needs (``format_version``); also in the preamble
    sealed: bool = field(default=False, compare=False)  # (read, not written) the header carried a header_sha256 and matched it

    def to_json(self) -> bytes:
        obj = {
            "format": self.version,
            "kind": self.kind,
            "source": {"size": self.source_size, "sha256": self.source_sha256},
            "target": {"size": self.target_size, "sha256": self.target_sha256},
            "op_count": self.op_count,
            "codec": self.codec,
            "sample_sha256": self.sample_sha256,
            "generator": self.generator,
            "stats": self.stats,
        }
        if self.ops_sha256 is not None:
            obj["ops_sha256"] = self.ops_sha256
        return seal_header(obj)

    @classmethod
    def from_json(cls, raw: bytes) -> "Header":
        try:
            obj = json.loads(raw, parse_constant=_reject_constant)
            if not isinstance(obj, dict):
                raise CorruptDeltaError("delta header is not a JSON object")
            sealed = HEADER_SHA256 in obj  # (checked before any field is believed; deltas made before it have none)
            if sealed and obj.pop(HEADER_SHA256) != _header_digest(obj):
                raise CorruptDeltaError(f"delta header is damaged: it does not hash to its {HEADER_SHA256}")
            unknown = sorted(set(obj) - UNSEALED_FIELDS)
            if not sealed and unknown:  # (a sealed header may carry fields a newer Edge added; the hash vouches)
                raise CorruptDeltaError(f"delta header is damaged: it has no {HEADER_SHA256} and a field "
                                        f"{unknown[0]!r} that Edge never wrote without one")
            if type(obj.get("format")) is not int or obj["format"] not in READABLE_VERSIONS:
                raise CorruptDeltaError(f"delta header format {obj.get('format')!r} is not supported (this Edge reads "
                                        f"{', '.join(map(str, sorted(READABLE_VERSIONS)))})")
            return cls(
                kind=_str(obj["kind"], "kind", ("squashfs", "generic")),
                source_size=_uint(obj["source"]["size"], "source.size"),
                source_sha256=_hex(obj["source"]["sha256"], "source.sha256"),
                target_size=_uint(obj["target"]["size"], "target.size"),
                target_sha256=_hex(obj["target"]["sha256"], "target.sha256"),
                op_count=_uint(obj["op_count"], "op_count"),
                codec=_codec(obj.get("codec")),
                sample_sha256=None if obj.get("sample_sha256") is None else _hex(obj["sample_sha256"], "sample_sha256"),
                generator=_text(obj.get("generator", ""), "generator"),
                stats=_dict(obj.get("stats") or {}, "stats"),
                ops_sha256=None if obj.get("ops_sha256") is None else _hex(obj["ops_sha256"], "ops_sha256"),
                version=obj["format"],
                sealed=sealed,
            )
        except CorruptDeltaError:
            raise
        except RecursionError:
            raise CorruptDeltaError("delta header is malformed: nested too deeply") from None
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
            raise CorruptDeltaError(f"delta header is malformed: {exc}") from None


def seal_header(obj: dict) -> bytes:
    """A header object as bytes, with its ``header_sha256`` (over the same object without it) added."""
    fields = {k: v for k, v in obj.items() if k != HEADER_SHA256}
    return _canonical({**fields, HEADER_SHA256: _header_digest(fields)})


def _header_digest(fields: dict) -> str:
    """The header_sha256 of a header's other fields: what the generator writes and the reader checks."""
    return hashlib.sha256(_canonical(fields)).hexdigest()


def _canonical(obj: dict) -> bytes:
    """The header's JSON as the generator writes it (and as the reader re-makes it to check its hash)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _reject_constant(name: str) -> float:
    raise CorruptDeltaError(f"delta header holds {name}, which is not a number")


def _dict(v: object, name: str) -> dict:
    if not isinstance(v, dict):
        raise CorruptDeltaError(f"delta header field {name} is not an object")
    return v


# what a squashfs delta's codec may say: the compressors Edge reads, squashfs' block sizes, known levels
CODEC_NAMES = ("zstd", "gzip", "xz", "lzma", "lz4", "lzo")
CODEC_LEVELS = {"zstd": (1, 22), "gzip": (1, 9), "xz": (0, 9), "lzma": (0, 9), "lz4": (1, 65537), "lzo": (0, 9)}
MIN_BLOCK_SIZE, MAX_BLOCK_SIZE = 4096, 1 << 20


def _block_size(v: object, name: str) -> int:
    n = _uint(v, name)
    if not MIN_BLOCK_SIZE <= n <= MAX_BLOCK_SIZE or n & (n - 1):
        raise CorruptDeltaError(f"delta header field {name}={n} is not a squashfs block size (a power of two, 4 KiB to 1 MiB)")
    return n


def _codec(v: object) -> dict | None:
    """The header's codec object with every field the applier uses checked (types and ranges)."""
    if v is None:
        return None
    c = dict(_dict(v, "codec"))
    if c.get("source_compressor") is not None:
        _str(c["source_compressor"], "codec.source_compressor", CODEC_NAMES)
        c["source_block_size"] = _block_size(c.get("source_block_size"), "codec.source_block_size")
    if c.get("name"):
        name = _str(c["name"], "codec.name", CODEC_NAMES)
        _text(c.get("impl"), "codec.impl")
        lo, hi = CODEC_LEVELS[name]
        level = _uint(c.get("level"), "codec.level")
        if not lo <= level <= hi:
            raise CorruptDeltaError(f"delta header field codec.level={level} is outside {name}'s levels {lo}..{hi}")
        c["block_size"] = _block_size(c.get("block_size"), "codec.block_size")
        window = _uint(c.get("gzip_window", 15), "codec.gzip_window")
        if not 8 <= window <= 15:
            raise CorruptDeltaError(f"delta header field codec.gzip_window={window} is outside 8..15")
        dict_size = _uint(c.get("xz_dict_size") or 0, "codec.xz_dict_size")
        if dict_size and dict_size != c["block_size"] and not 8192 <= dict_size <= c["block_size"]:
            # (mksquashfs: 8 KiB up to the block size, or the block size itself, which may be 4 KiB)
            raise CorruptDeltaError(f"delta header field codec.xz_dict_size={dict_size} is outside 8 KiB..the block size")
        strategies = _uint(c.get("gzip_strategies", 0), "codec.gzip_strategies")
        if strategies >> len(GZIP_STRATEGY_IDS):
            raise CorruptDeltaError(f"delta header field codec.gzip_strategies={strategies} has bits past the "
                                    f"{len(GZIP_STRATEGY_IDS)} gzip strategies")
        filters = _uint(c.get("xz_filters", 0), "codec.xz_filters")
        if filters >> len(XZ_BCJ_IDS):
            raise CorruptDeltaError(f"delta header field codec.xz_filters={filters} has bits past the "
                                    f"{len(XZ_BCJ_IDS)} xz BCJ filters")
        if not isinstance(c.get("lz4_hc", False), bool):
            raise CorruptDeltaError("delta header field codec.lz4_hc is not true or false")
        algorithm = _uint(c.get("lzo_algorithm", LZO1X_999), "codec.lzo_algorithm")
        if algorithm > LZO1X_999:
            raise CorruptDeltaError(f"delta header field codec.lzo_algorithm={algorithm} is not one of 0..4")
        if name == "lz4" and c.get("lz4_hc") and level > 12:
            raise CorruptDeltaError(f"delta header field codec.level={level} is outside lz4 HC's levels 1..12")
        if name == "lzo" and (level == 0) != (algorithm != LZO1X_999):
            raise CorruptDeltaError(f"delta header field codec.level={level} does not suit lzo algorithm {algorithm}")
    return c


def _uint(v: object, name: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise CorruptDeltaError(f"delta header field {name} is not a non-negative integer")
    return v


def _text(v: object, name: str) -> str:
    if not isinstance(v, str):
        raise CorruptDeltaError(f"delta header field {name} is not a string")
    return v


def _hex(v: object, name: str) -> str:
    if not isinstance(v, str) or len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
        raise CorruptDeltaError(f"delta header field {name} is not a sha256 hex digest")
    return v


def _str(v: object, name: str, allowed: tuple[str, ...]) -> str:
    if v not in allowed:
        raise CorruptDeltaError(f"delta header field {name}={v!r} is not one of {', '.join(allowed)}")
    return v  # type: ignore[return-value]


# ------------------------------------------------------------------ encoding
def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def format_version(ops: list[Op], codec: dict | None = None) -> int:
    """The oldest format version that holds the delta, so devices with an older Edge still take every
    delta that does not need what a newer version added: 4 when rebuilding its blocks needs what
    version 4 added (mksquashfs' per-block choices ``gzip_strategies``/``xz_filters``, legacy lzma
    blocks, BLOCKS ops that only store blocks and so carry no sample), an older Edge would rebuild
    those blocks differently or refuse the ops as corrupt; 3 when a patch refers to the target; else 2."""
    if codec and (codec.get("gzip_strategies") or codec.get("xz_filters") or codec.get("name") == "lzma"):
        return 4
    blocks = [op for op in ops if isinstance(op, Blocks)]
    if blocks and not any(BLOCK_COMPRESSED in op.flags for op in blocks):  # (then the delta has no sample)
        return 4
    return 3 if any(isinstance(op, Patch) and op.targets for op in ops) else 2


def encode_preamble(header: Header, sample: bytes | None) -> bytes:
    raw = header.to_json()
    sample = sample or b""
    return PREAMBLE.pack(MAGIC, header.version, len(raw)) + raw + struct.pack("<I", len(sample)) + sample


def pack_flags(flags: tuple[int, ...]) -> bytes:
    out = bytearray((len(flags) + 3) // 4)
    for i, f in enumerate(flags):
        out[i // 4] |= f << (2 * (i % 4))
    return bytes(out)


def unpack_flags(raw: bytes, count: int) -> tuple[int, ...]:
    return tuple((raw[i // 4] >> (2 * (i % 4))) & 3 for i in range(count))


def encode_op(op: Op) -> bytes:
    if isinstance(op, Copy):
        return bytes([OP_COPY]) + varint(op.src) + varint(op.length)
    if isinstance(op, Zero):
        return bytes([OP_ZERO]) + varint(op.length)
    if isinstance(op, Literal):
        return bytes([OP_LITERAL]) + varint(op.length) + bytes([op.encoding]) + varint(len(op.data)) + op.data
    if isinstance(op, Blocks):
        parts = [bytes([OP_BLOCKS, op.mode]), varint(len(op.sources))]
        for s in op.sources:
            if isinstance(s, SourceBlock):
                parts.append(varint(s.offset) + varint(s.word) + varint(s.plain))
            else:
                parts.append(varint(s.start) + varint(s.end))
        parts += [varint(op.content_len), varint(len(op.flags)), pack_flags(op.flags), bytes([op.encoding]),
                  varint(len(op.patch)), op.patch, varint(op.length), op.sha256]
        return b"".join(parts)
    if isinstance(op, Patch):
        if op.targets:
            refs = varint(len(op.targets)) + b"".join(varint(o) + varint(n) for o, n in op.targets)
            return (bytes([OP_PATCH_TARGET]) + varint(op.src) + varint(op.src_len) + refs + varint(op.length)
                    + bytes([op.encoding]) + varint(len(op.patch)) + op.patch + op.sha256)
        return (bytes([OP_PATCH]) + varint(op.src) + varint(op.src_len) + varint(op.length) + bytes([op.encoding])
                + varint(len(op.patch)) + op.patch + op.sha256)
    raise TypeError(op)


END = bytes([OP_END])


# ------------------------------------------------------------------ decoding
class DeltaReader:
    """Reads a delta front to back from any stream, tracking the byte position for checkpoints."""

    def __init__(self, stream: BinaryIO, name: str = "delta", hash_ops: bool = False) -> None:
        self.stream = stream
        self.name = name
        self.pos = 0
        self.version = VERSION  # set from the preamble: ops newer than the delta's version are refused
        self._hash_ops = hash_ops
        # with hash_ops, from the end of the preamble: the sha256 of the ops and END (the header's ops_sha256)
        self.ops_hash: hashlib._Hash | None = None
        self.op_index = 0  # the index of the next op op() reads (a resume sets it to the op it starts at)
        self._in_op = False

    def _where(self) -> str:
        """Where the reader is, for errors: the byte, and inside an op its index."""
        return f"op {self.op_index}, at byte {self.pos}" if self._in_op else f"at byte {self.pos}"

    def _err(self, what: str) -> CorruptDeltaError:
        return CorruptDeltaError(f"{self.name}: {what} ({self._where()})")

    def read_exact(self, n: int, what: str) -> bytes:
        chunks = []
        left = n
        while left:
            chunk = self.stream.read(min(left, 1 << 20))
            if not chunk:
                raise TruncatedDeltaError(f"{self.name}: truncated: {what} needs {n} bytes, the stream ended after "
                                          f"{n - left} ({self._where()})")
            chunks.append(chunk)
            if self.ops_hash is not None:
                self.ops_hash.update(chunk)
            left -= len(chunk)
        self.pos += n
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def varint(self, what: str) -> int:
        n = shift = 0
        while True:
            b = self.read_exact(1, what)[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
            shift += 7
            if shift > 63:
                raise self._err(f"{what}: varint is longer than 64 bits")

    def capped(self, what: str, cap: int) -> int:
        n = self.varint(what)
        if n > cap:
            raise self._err(f"{what} {n} exceeds the limit of {cap}")
        return n

    def preamble(self) -> tuple[Header, bytes, bytes]:
        """(header, raw header bytes, sample plain-stream bytes)."""
        raw = self.read_exact(PREAMBLE.size, "delta preamble")
        magic, version, hlen = PREAMBLE.unpack(raw)
        if magic != MAGIC:
            raise CorruptDeltaError(f"{self.name}: not an Edge delta (bad magic {magic[:8]!r})")
        readable = version in READABLE_VERSIONS
        unsupported = CorruptDeltaError(
            f"{self.name}: delta format version {version} is not supported (this Edge reads "
            f"{', '.join(map(str, sorted(READABLE_VERSIONS)))}); update Edge on this device")
        if hlen > MAX_HEADER:
            raise unsupported if not readable else self._err(f"header length {hlen} exceeds the limit of {MAX_HEADER}")
        header_raw = self.read_exact(hlen, "header")
        try:
            header = Header.from_json(header_raw)
        except CorruptDeltaError as exc:
            raise unsupported if not readable else CorruptDeltaError(f"{self.name}: {exc}") from None
        if header.version != version:
            if not readable and not header.sealed:  # (an old delta: which of the two is wrong?)
                raise unsupported
            raise self._err(f"the header says format {header.version}, the preamble {version}; the delta is damaged")
        self.version = version
        (slen,) = struct.unpack("<I", self.read_exact(4, "sample length"))
        if slen > MAX_SAMPLE:
            raise self._err(f"sample length {slen} exceeds the limit of {MAX_SAMPLE}")
        sample = self.read_exact(slen, "sample")
        if self._hash_ops:
            self.ops_hash = hashlib.sha256()
        return header, header_raw, sample

    def expect_end(self) -> None:
        """After END: the stream ends there too."""
        if self.stream.read(1):
            raise CorruptDeltaError(f"{self.name}: data after the end of the delta (at byte {self.pos})")

    def check_totals(self, header: Header, ops: int, length: int) -> None:
        """The ops read add up to the op count and target size the header promised."""
        if ops != header.op_count or length != header.target_size:
            raise CorruptDeltaError(f"{self.name}: the delta ended after {ops} of {header.op_count} ops "
                                    f"and {length} of {header.target_size} bytes")

    def op(self) -> Op | None:
        """The next op, or None at END. A damaged or cut op is named in the error by its index and byte."""
        self._in_op = True
        try:
            op = self._op()
        finally:
            self._in_op = False
        if op is not None:
            self.op_index += 1
        return op

    def _op(self) -> Op | None:
        kind = self.read_exact(1, "op type")[0]
        if kind == OP_END:
            return None
        if kind == OP_COPY:
            return Copy(self.varint("copy source"), self.varint("copy length"))
        if kind == OP_ZERO:
            return Zero(self.varint("zero length"))
        if kind == OP_LITERAL:
            length = self.capped("literal length", MAX_OP_CONTENT)
            enc = self.read_exact(1, "literal encoding")[0]
            if enc not in (ENC_RAW, ENC_ZSTD):
                raise self._err(f"literal encoding {enc} is unknown")
            size = self.capped("literal data length", MAX_PATCH)
            if enc == ENC_RAW and size != length:
                raise self._err(f"raw literal holds {size} bytes for {length} target bytes")
            return Literal(length, enc, self.read_exact(size, "literal data"))
        if kind == OP_BLOCKS:
            mode = self.read_exact(1, "blocks mode")[0]
            if mode not in (MODE_DATA, MODE_METADATA):
                raise self._err(f"blocks mode {mode} is unknown")
            count = self.capped("source extent count", MAX_OP_EXTENTS)
            sources: list[SourceBlock | SourceChain] = []
            for _ in range(count):
                if mode == MODE_DATA:
                    sources.append(SourceBlock(self.varint("source offset"), self.varint("source word"), self.varint("source plain size")))
                else:
                    sources.append(SourceChain(self.varint("source chain start"), self.varint("source chain end")))
            content_len = self.capped("content length", MAX_OP_CONTENT)
            nflags = self.capped("block count", MAX_OP_CONTENT // 4096 + 1)
            flags = unpack_flags(self.read_exact((nflags + 3) // 4, "block flags"), nflags)
            if BLOCK_UNUSED in flags:
                raise self._err(f"block flag {BLOCK_UNUSED} is unknown")
            if mode == MODE_METADATA and BLOCK_SPARSE in flags:
                raise self._err("a metadata block cannot be a hole")
            enc = self.read_exact(1, "patch encoding")[0]
            if enc not in PATCH_ENCODINGS:
                raise self._err(f"patch encoding {enc} is unknown")
            patch = self.read_exact(self.capped("patch length", MAX_PATCH), "patch")
            length = self.capped("target length", MAX_OP_CONTENT + MAX_OP_CONTENT // 4096 * 2 + 2)
            digest = self.read_exact(32, "op hash")
            return Blocks(mode, tuple(sources), content_len, flags, enc, patch, length, digest)
        if kind == OP_PATCH or (kind == OP_PATCH_TARGET and self.version >= 3):
            src = self.varint("patch source")
            src_len = self.capped("patch source length", MAX_OP_REFERENCE)
            targets: list[tuple[int, int]] = []
            if kind == OP_PATCH_TARGET:
                count = self.capped("patch target extent count", MAX_TARGET_EXTENTS)
                if count == 0:
                    raise self._err("a target-referencing patch names no target extent")
                reference = src_len
                for _ in range(count):
                    offset = self.varint("patch target extent offset")
                    n = self.capped("patch target extent length", MAX_OP_REFERENCE)
                    reference += n
                    if reference > MAX_OP_REFERENCE:
                        raise self._err(f"patch reference of {reference} bytes exceeds the limit of {MAX_OP_REFERENCE}")
                    targets.append((offset, n))
            length = self.capped("patch target length", MAX_OP_CONTENT)
            enc = self.read_exact(1, "patch encoding")[0]
            if enc not in PATCH_ENCODINGS:
                raise self._err(f"patch encoding {enc} is unknown")
            patch = self.read_exact(self.capped("patch length", MAX_PATCH), "patch")
            return Patch(src, src_len, length, enc, patch, self.read_exact(32, "op hash"), tuple(targets))
        raise self._err(f"unknown op type {kind}")


def header_id(header_raw: bytes) -> str:
    """Identity of a delta for checkpoints: the hash of its header."""
    return hashlib.sha256(header_raw).hexdigest()
