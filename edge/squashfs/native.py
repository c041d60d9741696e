"""ctypes bindings to the system's libzstd, liblzma, liblz4 and liblzo2, for byte-exact recompression.

Squashfs-aware deltas rebuild compressed blocks on the device, so the device
must compress exactly like the tool that made the image.  mksquashfs calls the
system libraries: ``ZSTD_compressCCtx`` and liblzma's one-shot
``lzma_stream_buffer_encode`` (whose block headers carry sizes, unlike the
streaming encoder Python's :mod:`lzma` uses).  These bindings reproduce those
calls; ctypes releases the GIL during each call, so a thread pool can use them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading

LZMA_FILTER_LZMA2 = 0x21
LZMA_VLI_UNKNOWN = 0xFFFFFFFFFFFFFFFF
LZMA_CHECK_CRC32 = 1
LZMA_OK = 0
LZMA_BUF_ERROR = 10


class NativeUnavailable(Exception):
    """The system library is not installed (or lacks a symbol)."""


def _open_library(short: str, soname: str) -> ctypes.CDLL:
    """The system's lib``short`` (``soname`` when ldconfig does not know it), or NativeUnavailable."""
    try:
        return ctypes.CDLL(ctypes.util.find_library(short) or soname)
    except OSError as exc:
        raise NativeUnavailable(f"system lib{short} not found ({exc})") from None


@functools.cache
def _libzstd() -> ctypes.CDLL:
    lib = _open_library("zstd", "libzstd.so.1")
    lib.ZSTD_versionString.restype = ctypes.c_char_p
    lib.ZSTD_compressBound.restype = ctypes.c_size_t
    lib.ZSTD_compressBound.argtypes = [ctypes.c_size_t]
    lib.ZSTD_createCCtx.restype = ctypes.c_void_p
    lib.ZSTD_freeCCtx.restype = ctypes.c_size_t
    lib.ZSTD_freeCCtx.argtypes = [ctypes.c_void_p]
    lib.ZSTD_compressCCtx.restype = ctypes.c_size_t
    lib.ZSTD_compressCCtx.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p,
                                      ctypes.c_size_t, ctypes.c_int]
    lib.ZSTD_isError.restype = ctypes.c_uint
    lib.ZSTD_isError.argtypes = [ctypes.c_size_t]
    lib.ZSTD_getErrorName.restype = ctypes.c_char_p
    lib.ZSTD_getErrorName.argtypes = [ctypes.c_size_t]
    lib.ZSTD_createDCtx.restype = ctypes.c_void_p
    lib.ZSTD_freeDCtx.restype = ctypes.c_size_t
    lib.ZSTD_freeDCtx.argtypes = [ctypes.c_void_p]
    lib.ZSTD_DCtx_setParameter.restype = ctypes.c_size_t
    lib.ZSTD_DCtx_setParameter.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    lib.ZSTD_DCtx_refPrefix.restype = ctypes.c_size_t
    lib.ZSTD_DCtx_refPrefix.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    lib.ZSTD_decompressDCtx.restype = ctypes.c_size_t
    lib.ZSTD_decompressDCtx.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t]
    return lib


_ZSTD_D_WINDOW_LOG_MAX = 100  # ZSTD_d_windowLogMax


def zstd_decompress_with_prefix(frame: bytes | bytearray | memoryview, prefix: bytes | bytearray, limit: int,
                                window_log_max: int = 26) -> bytearray:
    """One zstd frame decompressed with ``prefix`` as its raw-content dictionary (ZSTD_DCtx_refPrefix),
    at most ``limit`` bytes. libzstd reads the prefix where it lies: python-zstandard's dictionary
    objects copy it, which doubles a 10 MiB reference. Raises ValueError with libzstd's reason."""
    lib = _libzstd()
    src = frame if isinstance(frame, bytes) else bytes(frame)  # (a patch: small beside the reference)
    out = bytearray(limit)
    dctx = lib.ZSTD_createDCtx()
    if not dctx:
        raise MemoryError("ZSTD_createDCtx failed")
    try:
        def check(ret: int) -> int:
            if lib.ZSTD_isError(ret):
                raise ValueError(lib.ZSTD_getErrorName(ret).decode())
            return ret

        check(lib.ZSTD_DCtx_setParameter(dctx, _ZSTD_D_WINDOW_LOG_MAX, window_log_max))
        # bytes are passed as a pointer to their own storage; a bytearray is exported in place
        c_prefix = prefix if isinstance(prefix, bytes) else (ctypes.c_char * len(prefix)).from_buffer(prefix)
        check(lib.ZSTD_DCtx_refPrefix(dctx, c_prefix, len(prefix)))
        c_out = (ctypes.c_char * limit).from_buffer(out) if limit else None
        n = check(lib.ZSTD_decompressDCtx(dctx, c_out, limit, src, len(src)))
        del c_prefix, c_out  # (release the exported buffers before resizing)
    finally:
        lib.ZSTD_freeDCtx(dctx)
    del out[n:]
    return out


@functools.cache
def _liblzma() -> ctypes.CDLL:
    lib = _open_library("lzma", "liblzma.so.5")
    lib.lzma_version_string.restype = ctypes.c_char_p
    lib.lzma_lzma_preset.restype = ctypes.c_ubyte
    lib.lzma_lzma_preset.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.lzma_stream_buffer_encode.restype = ctypes.c_int
    lib.lzma_stream_buffer_encode.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p,
                                              ctypes.c_size_t, ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                                              ctypes.c_size_t]
    return lib


def libzstd_version() -> str:
    return _libzstd().ZSTD_versionString().decode()


def liblzma_version() -> str:
    return _liblzma().lzma_version_string().decode()


class SystemZstd:
    """``ZSTD_compressCCtx`` from the system libzstd, one context per thread."""

    def __init__(self, level: int) -> None:
        self.level = level
        self.lib = _libzstd()
        self._local = threading.local()

    def compress(self, data: bytes) -> bytes:
        data = bytes(data)
        lib = self.lib
        cctx = getattr(self._local, "cctx", None)
        if cctx is None:
            cctx = self._local.cctx = lib.ZSTD_createCCtx()
        cap = lib.ZSTD_compressBound(len(data))
        out = ctypes.create_string_buffer(cap)
        n = lib.ZSTD_compressCCtx(cctx, out, cap, data, len(data), self.level)
        if lib.ZSTD_isError(n):
            raise RuntimeError("ZSTD_compressCCtx failed")
        return out.raw[:n]

    def drop_thread_context(self) -> None:
        cctx = self._local.__dict__.pop("cctx", None)
        if cctx is not None:
            self.lib.ZSTD_freeCCtx(cctx)


class _Filter(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint64), ("options", ctypes.c_void_p)]


class SystemXz:
    """liblzma's ``lzma_stream_buffer_encode`` with a CRC32 check, as mksquashfs does: LZMA2 alone
    and, for each BCJ filter given, that filter before LZMA2; the smallest result wins (the earliest
    on a tie), as mksquashfs' ``-Xbcj`` picks per block."""

    def __init__(self, preset: int, dict_size: int, bcj_ids: tuple[int, ...] = ()) -> None:
        self.preset = preset
        self.dict_size = dict_size
        self.bcj_ids = bcj_ids
        self.lib = _liblzma()

    def compress(self, data: bytes) -> bytes:
        data = bytes(data)
        return min((self._encode(data, bcj) for bcj in (None, *self.bcj_ids)), key=len)  # (first of equals)

    def _encode(self, data: bytes, bcj: int | None) -> bytes:
        lib = self.lib
        # lzma_options_lzma is larger than we care to mirror: lzma_lzma_preset fills a
        # generous zeroed buffer, and dict_size is its first field.
        opts = ctypes.create_string_buffer(512)
        if lib.lzma_lzma_preset(opts, self.preset):
            raise RuntimeError(f"lzma preset {self.preset} is not supported")
        ctypes.c_uint32.from_buffer(opts, 0).value = self.dict_size
        chain = [] if bcj is None else [(bcj, None)]
        chain += [(LZMA_FILTER_LZMA2, ctypes.addressof(opts)), (LZMA_VLI_UNKNOWN, None)]
        filters = (_Filter * len(chain))(*chain)
        cap = len(data) + len(data) // 3 + 1024
        out = ctypes.create_string_buffer(cap)
        pos = ctypes.c_size_t(0)
        ret = lib.lzma_stream_buffer_encode(filters, LZMA_CHECK_CRC32, None, data, len(data), out, ctypes.byref(pos), cap)
        if ret != LZMA_OK:
            raise RuntimeError(f"lzma_stream_buffer_encode failed ({ret})")
        return out.raw[: pos.value]


# ------------------------------------------------------------------ lz4, lzo
@functools.cache
def _liblz4() -> ctypes.CDLL:
    lib = _open_library("lz4", "liblz4.so.1")
    lib.LZ4_versionString.restype = ctypes.c_char_p
    lib.LZ4_compressBound.restype = ctypes.c_int
    lib.LZ4_compressBound.argtypes = [ctypes.c_int]
    lib.LZ4_compress_fast.restype = ctypes.c_int
    lib.LZ4_compress_fast.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.LZ4_compress_HC.restype = ctypes.c_int
    lib.LZ4_compress_HC.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.LZ4_decompress_safe.restype = ctypes.c_int
    lib.LZ4_decompress_safe.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    return lib


def liblz4_version() -> str:
    return _liblz4().LZ4_versionString().decode()


def lz4_decompress(data: bytes, limit: int) -> bytes:
    """One raw LZ4 block (no frame) inflated into at most ``limit`` bytes (``LZ4_decompress_safe``,
    which never reads or writes outside its buffers). Raises ValueError when it is corrupt or larger."""
    lib = _liblz4()
    data = bytes(data)
    out = ctypes.create_string_buffer(max(1, limit))
    n = lib.LZ4_decompress_safe(data, out, len(data), limit)
    if n < 0:
        raise ValueError(f"malformed, or inflates past {limit} bytes (decoding stopped at input byte {-n - 1})")
    return out.raw[:n]


class SystemLz4:
    """mksquashfs' lz4 calls: ``LZ4_compress_fast`` (acceleration) or, with -Xhc, ``LZ4_compress_HC``
    (compression level), with the output limited to ``max_out`` bytes. Returns b"" when the block
    does not fit, which squashfs stores uncompressed (as mksquashfs does when lz4 returns 0)."""

    def __init__(self, hc: bool, level: int) -> None:
        self.hc, self.level = hc, level
        self.lib = _liblz4()

    def compress(self, data: bytes, max_out: int) -> bytes:
        data = bytes(data)
        out = ctypes.create_string_buffer(max(1, max_out))
        fn = self.lib.LZ4_compress_HC if self.hc else self.lib.LZ4_compress_fast
        n = fn(data, out, len(data), max_out, self.level)
        if n < 0:
            raise RuntimeError(f"lz4 compression failed ({n})")
        return out.raw[:n]


LZO_E_OK = 0
LZO_VERSION = 0x20A0
LZO_ALGORITHMS = ("lzo1x_1", "lzo1x_1_11", "lzo1x_1_12", "lzo1x_1_15", "lzo1x_999")  # squashfs' numbering
LZO1X_999 = 4
_LZO_WORKSPACE = 512 << 10  # more than any lzo1x compressor's LZO1X_*_MEM_COMPRESS (lzo1x_999: 448 KiB)


@functools.cache
def _liblzo2() -> ctypes.CDLL:
    lib = _open_library("lzo2", "liblzo2.so.2")
    lib.lzo_version_string.restype = ctypes.c_char_p
    sizes = [ctypes.sizeof(ctypes.c_short), ctypes.sizeof(ctypes.c_int), ctypes.sizeof(ctypes.c_long), 4,
             ctypes.sizeof(ctypes.c_size_t), ctypes.sizeof(ctypes.c_void_p), ctypes.sizeof(ctypes.c_void_p),
             ctypes.sizeof(ctypes.c_void_p), 4 * ctypes.sizeof(ctypes.c_void_p) + 2 * ctypes.sizeof(ctypes.c_size_t)]
    lib.__lzo_init_v2.restype = ctypes.c_int
    if lib.__lzo_init_v2(ctypes.c_uint(LZO_VERSION), *[ctypes.c_int(s) for s in sizes]) != LZO_E_OK:
        raise NativeUnavailable("system liblzo2 does not match this platform (lzo_init failed)")
    args = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t), ctypes.c_void_p]
    for fn in LZO_ALGORITHMS[:LZO1X_999]:
        getattr(lib, fn + "_compress").argtypes = args
        getattr(lib, fn + "_compress").restype = ctypes.c_int
    lib.lzo1x_999_compress_level.argtypes = args + [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int]
    lib.lzo1x_999_compress_level.restype = ctypes.c_int
    lib.lzo1x_optimize.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                                   ctypes.c_void_p]
    lib.lzo1x_optimize.restype = ctypes.c_int
    lib.lzo1x_decompress_safe.argtypes = args
    lib.lzo1x_decompress_safe.restype = ctypes.c_int
    return lib


def liblzo2_version() -> str:
    return _liblzo2().lzo_version_string().decode()


def lzo_decompress(data: bytes, limit: int) -> bytes:
    """One lzo1x block inflated into at most ``limit`` bytes (``lzo1x_decompress_safe``).
    Raises ValueError when it is corrupt or larger."""
    lib = _liblzo2()
    data = bytes(data)
    out = ctypes.create_string_buffer(max(1, limit))
    n = ctypes.c_size_t(limit)
    ret = lib.lzo1x_decompress_safe(data, len(data), out, ctypes.byref(n), None)
    if ret != LZO_E_OK:
        reason = {-4: "input ends early", -5: f"it inflates past {limit} bytes", -6: "a match points before the start",
                  -8: "bytes follow its end"}.get(ret, f"error {ret}")
        raise ValueError(reason)
    return out.raw[: n.value]


class SystemLzo:
    """mksquashfs' lzo calls: one of the lzo1x compressors (lzo1x_999 at a compression level), then
    ``lzo1x_optimize`` on the result. Returns b"" when the block exceeds ``max_out`` bytes (stored
    uncompressed, as mksquashfs does). One workspace per thread."""

    def __init__(self, algorithm: int, level: int) -> None:
        if not 0 <= algorithm < len(LZO_ALGORITHMS):
            raise ValueError(f"unknown lzo algorithm {algorithm}")
        self.algorithm, self.level = algorithm, level
        self.lib = _liblzo2()
        self._local = threading.local()

    def compress(self, data: bytes, max_out: int) -> bytes:
        data = bytes(data)
        lib = self.lib
        work = getattr(self._local, "work", None)
        if work is None:
            work = self._local.work = ctypes.create_string_buffer(_LZO_WORKSPACE)
        out = ctypes.create_string_buffer(len(data) + len(data) // 16 + 64 + 3)
        n = ctypes.c_size_t(0)
        if self.algorithm == LZO1X_999:
            ret = lib.lzo1x_999_compress_level(data, len(data), out, ctypes.byref(n), work, None, 0, None, self.level)
        else:
            ret = getattr(lib, LZO_ALGORITHMS[self.algorithm] + "_compress")(data, len(data), out, ctypes.byref(n), work)
        if ret != LZO_E_OK:
            raise RuntimeError(f"{LZO_ALGORITHMS[self.algorithm]} compression failed ({ret})")
        if n.value > max_out:
            return b""
        scratch = ctypes.create_string_buffer(data, len(data))  # lzo1x_optimize decompresses into it
        orig = ctypes.c_size_t(len(data))
        ret = lib.lzo1x_optimize(out, n.value, scratch, ctypes.byref(orig), None)
        if ret != LZO_E_OK or orig.value != len(data):
            raise RuntimeError(f"lzo1x_optimize failed ({ret})")
        return out.raw[: n.value]

    def drop_thread_context(self) -> None:
        self._local.__dict__.pop("work", None)
