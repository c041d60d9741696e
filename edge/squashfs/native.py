"""ctypes bindings to the system's libzstd and liblzma, for byte-exact recompression.

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


@functools.cache
def _libzstd() -> ctypes.CDLL:
    name = ctypes.util.find_library("zstd") or "libzstd.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise NativeUnavailable(f"system libzstd not found ({exc})") from None
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
    name = ctypes.util.find_library("lzma") or "liblzma.so.5"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise NativeUnavailable(f"system liblzma not found ({exc})") from None
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
    """liblzma's ``lzma_stream_buffer_encode`` with one LZMA2 filter and a CRC32 check, as mksquashfs does."""

    def __init__(self, preset: int, dict_size: int) -> None:
        self.preset = preset
        self.dict_size = dict_size
        self.lib = _liblzma()

    def compress(self, data: bytes) -> bytes:
        data = bytes(data)
        lib = self.lib
        # lzma_options_lzma is larger than we care to mirror: lzma_lzma_preset fills a
        # generous zeroed buffer, and dict_size is its first field.
        opts = ctypes.create_string_buffer(512)
        if lib.lzma_lzma_preset(opts, self.preset):
            raise RuntimeError(f"lzma preset {self.preset} is not supported")
        ctypes.c_uint32.from_buffer(opts, 0).value = self.dict_size
        filters = (_Filter * 2)((LZMA_FILTER_LZMA2, ctypes.addressof(opts)), (LZMA_VLI_UNKNOWN, None))
        cap = len(data) + len(data) // 3 + 1024
        out = ctypes.create_string_buffer(cap)
        pos = ctypes.c_size_t(0)
        ret = lib.lzma_stream_buffer_encode(filters, LZMA_CHECK_CRC32, None, data, len(data), out, ctypes.byref(pos), cap)
        if ret != LZMA_OK:
            raise RuntimeError(f"lzma_stream_buffer_encode failed ({ret})")
        return out.raw[: pos.value]
