"""Plan a delta between any two files (not squashfs, or not reproducible).

Aligned 4 KiB blocks of the target found anywhere in the source become copies,
all-zero blocks become zero fills, and everything else becomes byte-level
patches: zstd with a window of the source around the same position (shifted by
the offset of the last copy) as a raw-content dictionary, which finds moved and
edited content within the window the way xdelta3 does.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from .squashfs_plan import DraftCopy, DraftZero

BLOCK = 4096
MAX_CONTENT = 8 << 20
MAX_REFERENCE = 16 << 20


@dataclass
class DraftPatch:
    offset: int
    length: int
    src: int
    src_len: int


def _index(fd: int, size: int) -> dict[bytes, int]:
    index: dict[bytes, int] = {}
    pos = 0
    while pos + BLOCK <= size:
        chunk = os.pread(fd, min(1 << 22, size - pos) // BLOCK * BLOCK, pos)
        for i in range(0, len(chunk), BLOCK):
            index.setdefault(hashlib.blake2b(chunk[i : i + BLOCK], digest_size=16).digest(), pos + i)
        pos += len(chunk)
    return index


def plan(source_fd: int, source_size: int, target_fd: int, target_size: int) -> list:
    index = _index(source_fd, source_size)
    zero = bytes(BLOCK)
    drafts: list = []
    gap_start: int | None = None
    shift = 0

    def close_gap(end: int) -> None:
        nonlocal gap_start
        if gap_start is None:
            return
        pos = gap_start
        while pos < end:
            n = min(MAX_CONTENT, end - pos)
            pad = (MAX_REFERENCE - n) // 2
            lo = max(0, min(pos + shift - pad, source_size))
            hi = max(lo, min(source_size, pos + shift + n + pad))
            drafts.append(DraftPatch(pos, n, lo, hi - lo))
            pos += n
        gap_start = None

    pos = 0
    while pos < target_size:
        chunk = os.pread(target_fd, min(1 << 22, target_size - pos), pos)
        for i in range(0, len(chunk), BLOCK):
            block = chunk[i : i + BLOCK]
            off = pos + i
            src = index.get(hashlib.blake2b(block, digest_size=16).digest()) if len(block) == BLOCK else None
            if block == zero[: len(block)]:
                close_gap(off)
                last = drafts[-1] if drafts else None
                if isinstance(last, DraftZero) and last.offset + last.length == off:
                    last.length += len(block)
                else:
                    drafts.append(DraftZero(off, len(block)))
            elif src is not None:
                close_gap(off)
                shift = src - off
                last = drafts[-1] if drafts else None
                if isinstance(last, DraftCopy) and last.offset + last.length == off and last.src + last.length == src:
                    last.length += BLOCK
                else:
                    drafts.append(DraftCopy(off, BLOCK, src))
            elif gap_start is None:
                gap_start = off
        pos += len(chunk)
    close_gap(target_size)
    return drafts
