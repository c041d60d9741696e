"""Block codecs for squashfs: zstd (default), xz and gzip, plus lz4, lzo and legacy lzma for reading.

Every codec compresses one block at a time, releases the GIL while doing so
(zstandard, zlib and lzma all do), and keeps one compression context per
thread so a thread pool can use it.  Decompression is always bounded: a block
never inflates past the limit the caller gives (the block size), whatever its
headers claim.
"""

from __future__ import annotations

import lzma
import struct
import threading
import zlib
from dataclasses import dataclass, field

import zstandard

from . import format as fmt
from .errors import SquashfsError
from . import native
from .native import LZO1X_999, LZO_ALGORITHMS


class CodecError(Exception):
    """A compressed block is corrupt or inflates past its limit (callers add the offset)."""


ZSTD_DEFAULT_LEVEL = 15  # mksquashfs' default
GZIP_DEFAULT_LEVEL = 9
XZ_DEFAULT_LEVEL = 6
GZIP_DEFAULT_WINDOW = 15
_XZ_MEMLIMIT = 256 << 20

_GZIP_OPTIONS = struct.Struct("<IHH")
_XZ_OPTIONS = struct.Struct("<II")
_ZSTD_OPTIONS = struct.Struct("<I")
_LZ4_OPTIONS_V1 = struct.Struct("<ii")  # version (1: LZ4_LEGACY), flags (1: LZ4_HC)
_LZ4_OPTIONS_V2 = struct.Struct("<iii")  # ... flags | 2 (LZ4_NON_DEFAULT), acceleration or HC level
_LZO_OPTIONS = struct.Struct("<ii")  # algorithm, compression level (lzo1x_999 only)
LZ4_LEGACY, LZ4_HC, LZ4_NON_DEFAULT = 1, 1, 2
LZ4_ACC_DEFAULT, LZ4_HC_DEFAULT = 1, 12  # mksquashfs: LZ4_compress_default / LZ4_compress_HC at LZ4HC_CLEVEL_MAX
LZO_DEFAULT_LEVEL = 8
# mksquashfs -Xstrategy (gzip: default, filtered, huffman_only, run_length_encoded, fixed) and -Xbcj
# (xz: x86, powerpc, ia64, arm, armthumb, sparc): bit i of the options' bitmask selects entry i; data
# blocks are compressed with each selected one in turn and the smallest result is kept
GZIP_STRATEGY_IDS = (zlib.Z_DEFAULT_STRATEGY, zlib.Z_FILTERED, zlib.Z_HUFFMAN_ONLY, zlib.Z_RLE, zlib.Z_FIXED)
XZ_BCJ_IDS = (lzma.FILTER_X86, lzma.FILTER_POWERPC, lzma.FILTER_IA64, lzma.FILTER_ARM, lzma.FILTER_ARMTHUMB,
              lzma.FILTER_SPARC)
LZMA_PRESET = 5  # mksquashfs' legacy lzma (lzma_xz_wrapper.c): preset 5, dictionary = block size


@dataclass
class Codec:
    """One compressor with fixed parameters, shared by all threads of a build.

    ``impl`` picks the library that compresses, because byte-exact
    recompression (deltas) needs the same one on both sides: ``zstandard``
    (python-zstandard's bundled zstd) or ``libzstd`` (the system library, what
    mksquashfs uses); ``liblzma`` (the one-shot buffer encoder mksquashfs uses)
    or ``python-lzma``; ``zlib``.
    """

    name: str
    level: int
    block_size: int
    gzip_window: int = GZIP_DEFAULT_WINDOW
    xz_dict_size: int = 0
    impl: str = ""
    lz4_hc: bool = False  # lz4: LZ4_compress_HC at ``level``; otherwise LZ4_compress_fast, ``level`` = acceleration
    lzo_algorithm: int = LZO1X_999  # lzo: squashfs' algorithm number (0..3 lzo1x_1*, 4 lzo1x_999 at ``level``)
    gzip_strategies: int = 0  # gzip: bitmask over GZIP_STRATEGY_IDS (0: zlib's default strategy only)
    xz_filters: int = 0  # xz: bitmask over XZ_BCJ_IDS tried besides LZMA2 alone
    _local: threading.local = field(default_factory=threading.local, repr=False, compare=False)
    _native: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.impl:
            self.impl = default_impl(self.name)

    @property
    def id(self) -> int:
        return {"gzip": fmt.COMP_GZIP, "xz": fmt.COMP_XZ, "zstd": fmt.COMP_ZSTD, "lzma": fmt.COMP_LZMA,
                "lz4": fmt.COMP_LZ4, "lzo": fmt.COMP_LZO}[self.name]

    @property
    def label(self) -> str:
        """The compressor and its settings for messages: 'zstd level 19', 'lz4 HC level 12', 'lzo (lzo1x_1_15)'."""
        return describe(self.name, self.level, self.lz4_hc, self.lzo_algorithm)

    @property
    def impl_version(self) -> str:
        """Name and version of the library that compresses, e.g. 'libzstd 1.5.4'."""
        if self.impl == "zstandard":
            return f"zstandard {zstandard.__version__} (zstd {zstandard.ZSTD_VERSION[0]}.{zstandard.ZSTD_VERSION[1]}.{zstandard.ZSTD_VERSION[2]})"
        if self.impl == "libzstd":
            return f"libzstd {native.libzstd_version()}"
        if self.impl == "liblzma":
            return f"liblzma {native.liblzma_version()}"
        if self.impl == "python-lzma":
            return f"python-lzma (liblzma {native.liblzma_version()})"
        if self.impl == "liblz4":
            return f"liblz4 {native.liblz4_version()}"
        if self.impl == "liblzo2":
            return f"liblzo2 {native.liblzo2_version()}"
        return f"zlib {zlib.ZLIB_RUNTIME_VERSION}"

    def for_metadata(self) -> "Codec":
        """The codec for 8 KiB metadata blocks.  mksquashfs gives xz a dictionary of the
        metadata block size there (its metadata compressor is set up for 8 KiB blocks), and
        limits lz4 and lzo output to the metadata block size."""
        if self.name not in ("xz", "lz4", "lzo", "lzma") and not (self.name == "gzip" and self.gzip_strategies):
            return self
        meta = getattr(self, "_meta", None)
        if meta is None:
            if self.name == "xz":  # (-Xbcj applies to data blocks only)
                meta = self._replace(xz_dict_size=fmt.METADATA_SIZE, xz_filters=0)
            elif self.name == "gzip":  # (-Xstrategy applies to data blocks only)
                meta = self._replace(gzip_strategies=0)
            else:
                meta = self._replace(block_size=fmt.METADATA_SIZE)
            object.__setattr__(self, "_meta", meta)
        return meta

    def with_impl(self, impl: str, level: int | None = None) -> "Codec":
        return self._replace(impl=impl, level=self.level if level is None else level)

    def _replace(self, **changes: object) -> "Codec":
        fields = dict(name=self.name, level=self.level, block_size=self.block_size, gzip_window=self.gzip_window,
                      xz_dict_size=self.xz_dict_size, impl=self.impl, lz4_hc=self.lz4_hc,
                      lzo_algorithm=self.lzo_algorithm, gzip_strategies=self.gzip_strategies,
                      xz_filters=self.xz_filters)
        fields.update(changes)
        return Codec(**fields)  # type: ignore[arg-type]

    # ----------------------------------------------------------------- compress
    def compress(self, data: bytes) -> bytes:
        impl = self.impl
        if impl == "zstandard":
            cctx = getattr(self._local, "cctx", None)
            if cctx is None:
                cctx = self._local.cctx = zstandard.ZstdCompressor(level=self.level)
            return cctx.compress(data)
        if impl == "zlib":
            if not self.gzip_strategies:
                return zlib.compress(data, self.level, self.gzip_window)
            outs = []
            for strategy in _selected(self.gzip_strategies, GZIP_STRATEGY_IDS, "gzip strategy"):
                c = zlib.compressobj(self.level, zlib.DEFLATED, self.gzip_window, 8, strategy)
                outs.append(c.compress(data) + c.flush())
            return min(outs, key=len)  # (min keeps the first of equal lengths, as mksquashfs does)
        if impl in ("libzstd", "liblzma"):
            if self._native is None:
                if impl == "libzstd":
                    self._native = native.SystemZstd(self.level)
                else:
                    self._native = native.SystemXz(self.level, self.xz_dict_size or self.block_size,
                                                   _selected(self.xz_filters, XZ_BCJ_IDS, "xz BCJ filter"))
            return self._native.compress(data)  # type: ignore[attr-defined]
        if impl == "python-lzma" and self.name == "lzma":
            # lzma_alone_encoder writes "size unknown" in the header; mksquashfs then fills in the size
            filters = [{"id": lzma.FILTER_LZMA1, "preset": LZMA_PRESET, "dict_size": self.block_size}]
            out = bytearray(lzma.compress(data, format=lzma.FORMAT_ALONE, filters=filters))
            out[5:13] = len(data).to_bytes(8, "little")
            return bytes(out)
        if impl == "python-lzma":
            lzma2 = {"id": lzma.FILTER_LZMA2, "preset": self.level, "dict_size": self.xz_dict_size or self.block_size}
            chains = [[lzma2]] + [[{"id": bcj}, lzma2] for bcj in _selected(self.xz_filters, XZ_BCJ_IDS, "xz BCJ filter")]
            return min((lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, filters=chain)
                        for chain in chains), key=len)
        if impl in ("liblz4", "liblzo2"):
            if self._native is None:
                self._native = (native.SystemLz4(self.lz4_hc, self.level) if impl == "liblz4"
                                else native.SystemLzo(self.lzo_algorithm, self.level))
            # mksquashfs gives both the block size as the output limit; a block that does not fit is
            # stored as it is, which a result as long as the input tells every caller
            packed = self._native.compress(data, self.block_size)  # type: ignore[attr-defined]
            return packed if packed else bytes(data)
        raise SquashfsError(f"compressor {self.name} ({impl}) can only be read, not written")

    def drop_thread_context(self) -> None:
        """Free the calling thread's cached compressor context (zstd with 1 MiB blocks keeps 17 MiB
        in one); the next compress on this thread makes a new one."""
        self._local.__dict__.pop("cctx", None)
        lib = self._native
        if lib is not None and hasattr(lib, "drop_thread_context"):
            lib.drop_thread_context()

    def options(self) -> bytes | None:
        """The compressor-options payload mksquashfs would store, or None for defaults."""
        if self.name == "zstd" and self.level != ZSTD_DEFAULT_LEVEL:
            return _ZSTD_OPTIONS.pack(self.level)
        if self.name == "gzip" and (self.level != GZIP_DEFAULT_LEVEL or self.gzip_window != GZIP_DEFAULT_WINDOW
                                    or self.gzip_strategies):
            return _GZIP_OPTIONS.pack(self.level, self.gzip_window, self.gzip_strategies)
        if self.name == "xz" and (self.xz_dict_size not in (0, self.block_size) or self.xz_filters):
            return _XZ_OPTIONS.pack(self.xz_dict_size or self.block_size, self.xz_filters)
        if self.name == "lz4":  # always stored (the kernel refuses lz4 images without them)
            if self.level == (LZ4_HC_DEFAULT if self.lz4_hc else LZ4_ACC_DEFAULT):
                return _LZ4_OPTIONS_V1.pack(LZ4_LEGACY, LZ4_HC if self.lz4_hc else 0)
            return _LZ4_OPTIONS_V2.pack(LZ4_LEGACY, (LZ4_HC if self.lz4_hc else 0) | LZ4_NON_DEFAULT, self.level)
        if self.name == "lzo" and (self.lzo_algorithm, self.level) != (LZO1X_999, LZO_DEFAULT_LEVEL):
            return _LZO_OPTIONS.pack(self.lzo_algorithm, self.level if self.lzo_algorithm == LZO1X_999 else 0)
        return None

    # --------------------------------------------------------------- decompress
    def decompress(self, data: bytes, limit: int) -> bytes:
        """Inflate one block; raise CodecError if it is corrupt or exceeds ``limit`` bytes."""
        try:
            if self.name == "zstd":
                return _zstd_decompress(self._dctx(), data, limit)
            if self.name == "gzip":
                d = zlib.decompressobj(15)
                out = d.decompress(data, limit)
                if d.unconsumed_tail:
                    raise CodecError(f"gzip block inflates past {limit} bytes")
                if not d.eof:
                    raise CodecError("gzip block is truncated")
                return out
            if self.name in ("xz", "lzma"):
                form = lzma.FORMAT_XZ if self.name == "xz" else lzma.FORMAT_ALONE
                d = lzma.LZMADecompressor(format=form, memlimit=_XZ_MEMLIMIT)
                out = d.decompress(data, max_length=limit)
                if not d.eof:
                    if not d.needs_input:
                        raise CodecError(f"{self.name} block inflates past {limit} bytes")
                    raise CodecError(f"{self.name} block is truncated")
                return out
            if self.name == "lz4":
                return native.lz4_decompress(data, limit)
            if self.name == "lzo":
                return native.lzo_decompress(data, limit)
        except CodecError:
            raise
        except native.NativeUnavailable as exc:
            raise CodecError(f"{self.name} blocks cannot be read here: {exc}") from None
        except (zlib.error, lzma.LZMAError, zstandard.ZstdError, ValueError, MemoryError) as exc:
            raise CodecError(f"corrupt {self.name} block: {exc}") from None
        raise CodecError(f"compressor {self.name} is not supported")

    def _dctx(self) -> zstandard.ZstdDecompressor:
        dctx = getattr(self._local, "dctx", None)
        if dctx is None:
            dctx = self._local.dctx = zstandard.ZstdDecompressor(max_window_size=1 << 27)
        return dctx


def _selected(mask: int, ids: tuple[int, ...], what: str) -> tuple[int, ...]:
    """The entries of ``ids`` whose bits are set in ``mask``, in table order."""
    if mask >> len(ids):
        raise SquashfsError(f"{what} bits {mask:#x} include ones mksquashfs 4.5 does not have; blocks cannot be rebuilt")
    return tuple(ident for bit, ident in enumerate(ids) if mask >> bit & 1)


def _zstd_decompress(dctx: zstandard.ZstdDecompressor, data: bytes, limit: int) -> bytes:
    size = zstandard.frame_content_size(data)
    if size > limit:
        raise CodecError(f"zstd block claims {size} bytes, more than the limit of {limit}")
    # With the content size in the header zstandard allocates exactly that;
    # without it, max_output_size bounds the output buffer.
    out = dctx.decompress(data, max_output_size=limit)
    if len(out) > limit:
        raise CodecError(f"zstd block inflates past {limit} bytes")
    return out


IMPLS = {"zstd": ("zstandard", "libzstd"), "xz": ("liblzma", "python-lzma"), "gzip": ("zlib",), "lzma": ("python-lzma",),
         "lz4": ("liblz4",), "lzo": ("liblzo2",)}
READABLE = ("zstd", "gzip", "xz", "lzma", "lz4", "lzo")


def describe(name: str, level: int, lz4_hc: bool = False, lzo_algorithm: int = LZO1X_999) -> str:
    if name == "lz4":
        return f"lz4 HC level {level}" if lz4_hc else f"lz4 acceleration {level}"
    if name == "lzo":
        if lzo_algorithm == LZO1X_999:
            return f"lzo (lzo1x_999 level {level})"
        algo = LZO_ALGORITHMS[lzo_algorithm] if 0 <= lzo_algorithm < len(LZO_ALGORITHMS) else lzo_algorithm
        return f"lzo ({algo})"
    return f"{name} level {level}"


def default_impl(name: str) -> str:
    """python-zstandard for zstd (pinned with Edge, same on build host and device); for
    xz the system liblzma's one-shot encoder when it loads (identical to mksquashfs)."""
    if name == "xz":
        try:
            native.liblzma_version()
            return "liblzma"
        except native.NativeUnavailable:
            return "python-lzma"
    return {"zstd": "zstandard", "gzip": "zlib", "lzma": "python-lzma", "lz4": "liblz4", "lzo": "liblzo2"}[name]


# the implementations that are system libraries, each with a call that loads it (NativeUnavailable when missing)
_NATIVE_PROBES = {"libzstd": lambda: native.libzstd_version(), "liblzma": lambda: native.liblzma_version(),
                  "liblz4": lambda: native.liblz4_version(), "liblzo2": lambda: native.liblzo2_version()}


def available_impls(name: str) -> list[str]:
    """Implementations of compressor ``name`` that can run on this machine."""
    out = []
    for impl in IMPLS.get(name, ()):
        try:
            _NATIVE_PROBES.get(impl, lambda: None)()
        except native.NativeUnavailable:
            continue
        out.append(impl)
    return out


DEFAULT_LEVELS = {"zstd": ZSTD_DEFAULT_LEVEL, "gzip": GZIP_DEFAULT_LEVEL, "xz": XZ_DEFAULT_LEVEL,
                  "lz4": LZ4_ACC_DEFAULT, "lzo": LZO_DEFAULT_LEVEL}
LEVEL_RANGES = {"zstd": (1, 22), "gzip": (1, 9), "xz": (0, 9)}
WRITABLE = ("zstd", "xz", "gzip")


def make_codec(name: str, block_size: int, level: int | None = None, impl: str = "") -> Codec:
    """A codec for writing, with the level validated against the compressor's range."""
    if impl and impl not in IMPLS.get(name, ()):
        raise SquashfsError(f"{name} cannot be compressed with {impl!r}: choose one of {', '.join(IMPLS.get(name, ()))}")
    if name not in WRITABLE:
        raise SquashfsError(f"unknown compressor {name!r}: choose one of {', '.join(WRITABLE)}")
    if level is None:
        level = DEFAULT_LEVELS[name]
    lo, hi = LEVEL_RANGES[name]
    if not lo <= level <= hi:
        raise SquashfsError(f"{name} level {level} is out of range {lo}..{hi}")
    return Codec(name=name, level=level, block_size=block_size, impl=impl)


def codec_for_image(compression: int, block_size: int, options: bytes | None, image: str) -> Codec:
    """The codec an existing image uses, from its superblock id and compressor options."""
    name = fmt.COMPRESSOR_NAMES.get(compression)
    if name not in READABLE:
        raise SquashfsError(f"{image}: compressor {name or compression} is not supported ({', '.join(READABLE)} are)")
    if name in ("lz4", "lzo"):  # read only through the system library
        try:
            _NATIVE_PROBES[IMPLS[name][0]]()
        except native.NativeUnavailable as exc:
            package = "liblz4-1" if name == "lz4" else "liblzo2-2"
            raise SquashfsError(f"{image}: {name} images need the system library ({exc}; install {package})") from None
    codec = Codec(name=name, level=DEFAULT_LEVELS.get(name, 0), block_size=block_size)
    if options:
        try:
            if name == "zstd":
                (codec.level,) = _ZSTD_OPTIONS.unpack_from(options)
            elif name == "gzip":
                codec.level, codec.gzip_window, codec.gzip_strategies = _GZIP_OPTIONS.unpack_from(options)
                if codec.gzip_strategies == 1:  # "default" alone is how mksquashfs compresses without -Xstrategy
                    codec.gzip_strategies = 0
            elif name == "xz":
                codec.xz_dict_size, codec.xz_filters = _XZ_OPTIONS.unpack_from(options)
            elif name == "lz4":
                _lz4_options(codec, options, image)
            elif name == "lzo":
                _lzo_options(codec, options, image)
        except struct.error:
            raise SquashfsError(f"{image}: compressor options for {name} are truncated") from None
    return codec


def _lz4_options(codec: Codec, options: bytes, image: str) -> None:
    """mksquashfs' lz4 options: (version, flags) or, for a non-default level, (version, flags, level)."""
    version, flags = _LZ4_OPTIONS_V1.unpack_from(options)
    if version != LZ4_LEGACY:
        raise SquashfsError(f"{image}: lz4 compressor options name stream version {version}, not 1 (LZ4_LEGACY)")
    if len(options) >= _LZ4_OPTIONS_V2.size:
        _, _, data = _LZ4_OPTIONS_V2.unpack_from(options)
        if not flags & LZ4_NON_DEFAULT or flags & ~(LZ4_HC | LZ4_NON_DEFAULT):
            raise SquashfsError(f"{image}: lz4 compressor options carry unknown flags {flags:#x}")
        codec.lz4_hc = bool(flags & LZ4_HC)
        lo, hi = (1, 12) if codec.lz4_hc else (1, 65537)
        if not lo <= data <= hi:
            what = "compression level" if codec.lz4_hc else "acceleration"
            raise SquashfsError(f"{image}: lz4 {what} {data} in the compressor options is outside {lo}..{hi}")
        codec.level = data
        return
    if flags & ~LZ4_HC:
        raise SquashfsError(f"{image}: lz4 compressor options carry unknown flags {flags:#x}")
    codec.lz4_hc = bool(flags & LZ4_HC)
    codec.level = LZ4_HC_DEFAULT if codec.lz4_hc else LZ4_ACC_DEFAULT


def _lzo_options(codec: Codec, options: bytes, image: str) -> None:
    algorithm, level = _LZO_OPTIONS.unpack_from(options)
    if not 0 <= algorithm <= LZO1X_999:
        raise SquashfsError(f"{image}: lzo algorithm {algorithm} in the compressor options is not one of 0..4")
    if algorithm == LZO1X_999 and not 1 <= level <= 9:
        raise SquashfsError(f"{image}: lzo1x_999 compression level {level} in the compressor options is outside 1..9")
    if algorithm != LZO1X_999 and level != 0:
        raise SquashfsError(f"{image}: lzo compressor options give level {level} to an algorithm without levels")
    codec.lzo_algorithm, codec.level = algorithm, level
