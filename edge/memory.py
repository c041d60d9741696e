"""Keep a process's resident memory close to what it actually holds.

The delta applier allocates and frees buffers of a few MiB per op (references,
patch streams, rebuilt content) on several threads.  glibc serves such sizes
from mmap at first, but raises its mmap threshold after the first large free,
so later buffers come from per-thread heaps whose freed pages stay resident:
peak RSS then tracks the heaps' high-water marks, not the live buffers (on the
bookworm -> trixie pair 62-64 MiB against 59 MiB with the threshold fixed).
Fixing the threshold at 1 MiB keeps every large buffer on its own mapping,
returned to the kernel when freed.  Elsewhere (musl, other platforms) this is a
no-op: those allocators do not grow a threshold.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3  # from glibc's <malloc.h>
LARGE = 1 << 20

_done = False


def return_large_buffers_promptly() -> bool:
    """Ask glibc to serve allocations of ``LARGE`` bytes and more from mmap; True when it took effect."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _done = mallopt(M_MMAP_THRESHOLD, LARGE) == 1
    return _done
