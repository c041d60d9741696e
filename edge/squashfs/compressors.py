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
    """One compressor with fixed parameters, shared by all threads of a build."""

    name: str
    level: int
    block_size: int
    gzip_window: int = GZIP_DEFAULT_WINDOW
    xz_dict_size: int = 0
    _local: threading.local = field(default_factory=threading.local, repr=False, compare=False)

    @property
    def id(self) -> int:
        return {"gzip": fmt.COMP_GZIP, "xz": fmt.COMP_XZ, "zstd": fmt.COMP_ZSTD, "lzma": fmt.COMP_LZMA}[self.name]

    # ----------------------------------------------------------------- compress
    def compress(self, data: bytes) -> bytes:
        if self.name == "zstd":
            cctx = getattr(self._local, "cctx", None)
            if cctx is None:
                cctx = self._local.cctx = zstandard.ZstdCompressor(level=self.level)
            return cctx.compress(data)
        if self.name == "gzip":
            return zlib.compress(data, self.level, self.gzip_window)
        if self.name == "xz":
            filters = [{"id": lzma.FILTER_LZMA2, "preset": self.level, "dict_size": self.xz_dict_size or self.block_size}]
            return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, filters=filters)
        raise SquashfsError(f"compressor {self.name} can only be read, not written")

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


DEFAULT_LEVELS = {"zstd": ZSTD_DEFAULT_LEVEL, "gzip": GZIP_DEFAULT_LEVEL, "xz": XZ_DEFAULT_LEVEL}
LEVEL_RANGES = {"zstd": (1, 22), "gzip": (1, 9), "xz": (0, 9)}
WRITABLE = ("zstd", "xz", "gzip")


def make_codec(name: str, block_size: int, level: int | None = None) -> Codec:
    """A codec for writing, with the level validated against the compressor's range."""
    if name not in WRITABLE:
        raise SquashfsError(f"unknown compressor {name!r}: choose one of {', '.join(WRITABLE)}")
    if level is None:
        level = DEFAULT_LEVELS[name]
    lo, hi = LEVEL_RANGES[name]
    if not lo <= level <= hi:
        raise SquashfsError(f"{name} level {level} is out of range {lo}..{hi}")
    return Codec(name=name, level=level, block_size=block_size)


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
