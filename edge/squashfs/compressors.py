"""Block codecs for squashfs: zstd (default), xz and gzip, plus legacy lzma for reading.

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
    _local: threading.local = field(default_factory=threading.local, repr=False, compare=False)
    _native: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.impl:
            self.impl = default_impl(self.name)

    @property
    def id(self) -> int:
        return {"gzip": fmt.COMP_GZIP, "xz": fmt.COMP_XZ, "zstd": fmt.COMP_ZSTD, "lzma": fmt.COMP_LZMA}[self.name]

    @property
    def impl_version(self) -> str:
        """Name and version of the library that compresses, e.g. 'libzstd 1.5.4'."""
        from . import native

        if self.impl == "zstandard":
            return f"zstandard {zstandard.__version__} (zstd {zstandard.ZSTD_VERSION[0]}.{zstandard.ZSTD_VERSION[1]}.{zstandard.ZSTD_VERSION[2]})"
        if self.impl == "libzstd":
            return f"libzstd {native.libzstd_version()}"
        if self.impl == "liblzma":
            return f"liblzma {native.liblzma_version()}"
        if self.impl == "python-lzma":
            return f"python-lzma (liblzma {native.liblzma_version()})"
        return f"zlib {zlib.ZLIB_RUNTIME_VERSION}"

    def for_metadata(self) -> "Codec":
        """The codec for 8 KiB metadata blocks.  mksquashfs gives xz a dictionary of the
        metadata block size there (its metadata compressor is set up for 8 KiB blocks)."""
        if self.name != "xz":
            return self
        meta = getattr(self, "_meta", None)
        if meta is None:
            meta = Codec(self.name, self.level, self.block_size, self.gzip_window, fmt.METADATA_SIZE, self.impl)
            object.__setattr__(self, "_meta", meta)
        return meta

    def with_impl(self, impl: str, level: int | None = None) -> "Codec":
        return Codec(self.name, self.level if level is None else level, self.block_size, self.gzip_window,
                     self.xz_dict_size, impl)

    # ----------------------------------------------------------------- compress
    def compress(self, data: bytes) -> bytes:
        impl = self.impl
        if impl == "zstandard":
            cctx = getattr(self._local, "cctx", None)
            if cctx is None:
                cctx = self._local.cctx = zstandard.ZstdCompressor(level=self.level)
            return cctx.compress(data)
        if impl == "zlib":
            return zlib.compress(data, self.level, self.gzip_window)
        if impl in ("libzstd", "liblzma"):
            if self._native is None:
                from . import native

                if impl == "libzstd":
                    self._native = native.SystemZstd(self.level)
                else:
                    self._native = native.SystemXz(self.level, self.xz_dict_size or self.block_size)
            return self._native.compress(data)  # type: ignore[attr-defined]
        if impl == "python-lzma":
            filters = [{"id": lzma.FILTER_LZMA2, "preset": self.level, "dict_size": self.xz_dict_size or self.block_size}]
            return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, filters=filters)
        raise SquashfsError(f"compressor {self.name} ({impl}) can only be read, not written")

    def drop_thread_context(self) -> None:
        """Free the calling thread's cached compressor context (zstd with 1 MiB blocks keeps 17 MiB
        in one); the next compress on this thread makes a new one."""
        self._local.__dict__.pop("cctx", None)
        native = self._native
        if native is not None and hasattr(native, "drop_thread_context"):
            native.drop_thread_context()

    def options(self) -> bytes | None:
        """The compressor-options payload mksquashfs would store, or None for defaults."""
        if self.name == "zstd" and self.level != ZSTD_DEFAULT_LEVEL:
            return _ZSTD_OPTIONS.pack(self.level)
        if self.name == "gzip" and (self.level != GZIP_DEFAULT_LEVEL or self.gzip_window != GZIP_DEFAULT_WINDOW):
            return _GZIP_OPTIONS.pack(self.level, self.gzip_window, 0)
        if self.name == "xz" and self.xz_dict_size not in (0, self.block_size):
            return _XZ_OPTIONS.pack(self.xz_dict_size, 0)
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
        except CodecError:
            raise
        except (zlib.error, lzma.LZMAError, zstandard.ZstdError, ValueError, MemoryError) as exc:
            raise CodecError(f"corrupt {self.name} block: {exc}") from None
        raise CodecError(f"compressor {self.name} is not supported")

    def _dctx(self) -> zstandard.ZstdDecompressor:
        dctx = getattr(self._local, "dctx", None)
        if dctx is None:
            dctx = self._local.dctx = zstandard.ZstdDecompressor(max_window_size=1 << 27)
        return dctx


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


IMPLS = {"zstd": ("zstandard", "libzstd"), "xz": ("liblzma", "python-lzma"), "gzip": ("zlib",), "lzma": ("python-lzma",)}


def default_impl(name: str) -> str:
    """python-zstandard for zstd (pinned with Edge, same on build host and device); for
    xz the system liblzma's one-shot encoder when it loads (identical to mksquashfs)."""
    if name == "xz":
        from . import native

        try:
            native.liblzma_version()
            return "liblzma"
        except native.NativeUnavailable:
            return "python-lzma"
    return {"zstd": "zstandard", "gzip": "zlib", "lzma": "python-lzma"}[name]


def available_impls(name: str) -> list[str]:
    """Implementations of compressor ``name`` that can run on this machine."""
    from . import native

    out = []
    for impl in IMPLS.get(name, ()):
        try:
            if impl == "libzstd":
                native.libzstd_version()
            elif impl in ("liblzma",):
                native.liblzma_version()
        except native.NativeUnavailable:
            continue
        out.append(impl)
    return out


DEFAULT_LEVELS = {"zstd": ZSTD_DEFAULT_LEVEL, "gzip": GZIP_DEFAULT_LEVEL, "xz": XZ_DEFAULT_LEVEL}
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
    if name not in ("zstd", "gzip", "xz", "lzma"):
        raise SquashfsError(f"{image}: compressor {name or compression} is not supported (zstd, xz, gzip, lzma are)")
    codec = Codec(name=name, level=DEFAULT_LEVELS.get(name, 0), block_size=block_size)
    if options:
        try:
            if name == "zstd":
                (codec.level,) = _ZSTD_OPTIONS.unpack_from(options)
            elif name == "gzip":
                codec.level, codec.gzip_window, _ = _GZIP_OPTIONS.unpack_from(options)
            elif name == "xz":
                codec.xz_dict_size, _ = _XZ_OPTIONS.unpack_from(options)
        except struct.error:
            raise SquashfsError(f"{image}: compressor options for {name} are truncated") from None
    return codec
