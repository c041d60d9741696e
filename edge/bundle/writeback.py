"""Sequential file output that keeps the kernel writing back behind the writer.

Without help, Linux starts writing dirty pages of a large file only when a
threshold is reached (10% of RAM by default) or at ``fsync``.  Extracting an
image then costs hash time *plus* the full disk write at the final fsync.
``sync_file_range`` lets the writer start writeback of each window as soon as
it is written and wait for a window two behind, so the disk works while the
next chunks are hashed, dirty memory stays bounded (about three windows), and
the final ``fsync`` has little left to do.  Where ``sync_file_range`` is not
available the writer still works; it just does not overlap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections import deque
from collections.abc import Callable

WINDOW = 16 * 1024 * 1024
_WAIT_BEFORE, _WRITE, _WAIT_AFTER = 1, 2, 4  # SYNC_FILE_RANGE_* from <linux/fs.h>


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        func = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


_sync_file_range = _load_sync_file_range()


class WritebackWriter:
    """Write to ``fd`` front to back; ``write`` takes any bytes-like object."""

    def __init__(self, fd: int, window: int = WINDOW) -> None:
        self.fd = fd
        self.window = window
        self.position = 0
        self._initiated = 0  # writeback started for bytes before this offset
        self._pending: deque[tuple[int, int]] = deque()
        self._enabled = _sync_file_range is not None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
            self.position += n
        if self._enabled and self.position - self._initiated >= self.window:
            self._writeback()

    def _writeback(self) -> None:
        start, length = self._initiated, self.position - self._initiated
        if not self._call(start, length, _WRITE):
            return
        self._initiated = self.position
        self._pending.append((start, length))
        if len(self._pending) > 2:  # wait for the window two behind: bounded dirty memory, steady disk
            old_start, old_length = self._pending.popleft()
            self._call(old_start, old_length, _WAIT_BEFORE | _WRITE | _WAIT_AFTER)

    def _call(self, start: int, length: int, flags: int) -> bool:
        assert _sync_file_range is not None
        if _sync_file_range(self.fd, start, length, flags) != 0:
            self._enabled = False  # e.g. a filesystem or pipe that does not support it: fall back silently
            return False
        return True
