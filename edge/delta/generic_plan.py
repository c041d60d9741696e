"""Plan a delta between any two files (not squashfs, or not reproducible).

The source is indexed by 4 KiB blocks at aligned offsets: a strong hash of each
block, and a 16-byte fingerprint that starts at the block's first occurrence of
an anchor byte (a byte value about 1/256 of the source is made of). The target
is walked front to back. Where the target continues a match (or starts an
aligned one), one hash per 4 KiB block suffices; inside changed regions every
occurrence of the anchor byte (found at C speed with ``bytes.find``) is looked
up as a fingerprint, so a source block is found wherever it moved to, at any
byte offset, and each hit is confirmed by its strong hash. This is
content-defined anchoring in the manner of rsync's rolling checksum or casync's
chunker, at a cost of one dictionary lookup per ~256 bytes instead of one per
byte. Runs of zero blocks become zero fills (also found with ``bytes.find``).
What is left becomes byte-level patches: zstd with a window of the source
around the same position (shifted by the offset of the last copy) as a
raw-content dictionary, which finds edited content within the window the way
xdelta3 does.

New content often repeats other new content (a package's files listed again
in its dpkg file lists, a file shipped twice), which no window of the source
holds. So each patch's reference may also take extents of the *target* that
earlier patches wrote: the same anchored fingerprints, taken over the patched
stretches in target order, show which earlier stretches share content with
this one, and the part of each that does (plus a margin) is added, most shared
first, up to ``TARGET_WINDOW`` (format 3's ``OP_PATCH_TARGET``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from .format import MAX_OP_REFERENCE, MAX_TARGET_EXTENTS
from .squashfs_plan import DraftCopy, DraftZero

BLOCK = 4096
KEY = 16  # bytes of a block's fingerprint
MIN_DISTINCT = 6  # distinct byte values a fingerprint must hold
SCAN = 1 << 20  # bytes of target scanned per read in changed regions
SAMPLE = 16 << 10  # bytes per sample when choosing the anchor byte
SAMPLES = 16
MAX_CONTENT = 4 << 20  # target bytes per patch (format.MAX_OP_CONTENT)
MAX_REFERENCE = 8 << 20  # source bytes a patch may use as its dictionary (device memory; format.MAX_OP_REFERENCE)
MIN_PAD = 256 << 10  # source bytes each side of a patch's position it may refer to, at least
TARGET_WINDOW = 4 << 20  # earlier-written target bytes a patch may add to its reference
TARGET_MIN_HITS = 4  # fingerprints an earlier stretch must share with a patch to be referred to
TARGET_MARGIN = 64 << 10  # bytes taken each side of the shared fingerprints of an earlier stretch

_ZERO = bytes(BLOCK)


@dataclass
class DraftPatch:
    offset: int
    length: int
    src: int
    src_len: int
    targets: tuple[tuple[int, int], ...] = ()  # earlier target extents added to the reference


def _digest(block: bytes) -> bytes:
    return hashlib.blake2b(block, digest_size=16).digest()


@dataclass
class SourceIndex:
    anchor: bytes  # the anchor byte
    strong: dict[bytes, int]  # block digest -> first source offset holding it
    keys: dict[bytes, tuple[int, bytes, int]]  # fingerprint -> (source offset, digest, fingerprint offset in block)


def choose_anchor(fd: int, size: int) -> bytes:
    """The byte value whose share of the source (sampled evenly) is nearest 1/256 but
    not below it, so almost every block holds one, yet not so common that the target's
    changed regions need a lookup every few bytes."""
    counts = [0] * 256
    total = 0
    step = max(SAMPLE, size // SAMPLES)
    for pos in range(0, size, step):
        chunk = os.pread(fd, SAMPLE, pos)
        total += len(chunk)
        for value in range(256):
            counts[value] += chunk.count(value)
    if total == 0:
        return b"\x01"
    goal = total / 256
    return bytes([min(range(1, 256), key=lambda v: (counts[v] < goal, abs(counts[v] - goal), v))])


def index_source(fd: int, size: int) -> SourceIndex:
    anchor = choose_anchor(fd, size)
    index = SourceIndex(anchor, {}, {})
    pos = 0
    while pos + BLOCK <= size:
        chunk = os.pread(fd, min(1 << 22, size - pos) // BLOCK * BLOCK, pos)
        if not chunk:
            break
        for i in range(0, len(chunk), BLOCK):
            block = chunk[i : i + BLOCK]
            if block == _ZERO:
                continue
            digest = _digest(block)
            if digest in index.strong:
                continue
            index.strong[digest] = pos + i
            j = _next_fingerprint(block, anchor, 0)
            if j >= 0:
                index.keys.setdefault(block[j : j + KEY], (pos + i, digest, j))
        pos += len(chunk)
    return index


def _next_match(fd: int, size: int, start: int, index: SourceIndex) -> int:
    """The first offset >= start where a zero block or a block of the source begins in the
    target (at any byte offset), or the target's size when there is none."""
    get, anchor = index.keys.get, index.anchor
    while start + BLOCK <= size:
        # bytes [start, start + len(buf)) hold the block starts [start, stop) and their fingerprints
        buf = os.pread(fd, min(SCAN + 2 * BLOCK, size - start), start)
        stop = min(start + SCAN, size - BLOCK + 1)
        z = buf.find(_ZERO, 0, stop - start + BLOCK - 1)
        limit = stop - start if z < 0 else z
        # a fingerprint at p belongs to a block starting at p - j (j < BLOCK); the anchors
        # up to limit + BLOCK find every block that starts before limit
        end = min(limit + BLOCK, len(buf) - KEY + 1)
        p = buf.find(anchor, 0, end)
        while p >= 0:
            hit = get(buf[p : p + KEY])
            if hit is not None:
                s = p - hit[2]
                if 0 <= s < limit and s + BLOCK <= len(buf) and _digest(buf[s : s + BLOCK]) == hit[1]:
                    return start + s
            p = buf.find(anchor, p + 1, end)
        if z >= 0:
            return start + z
        start = stop
    return size


def plan(source_fd: int, source_size: int, target_fd: int, target_size: int) -> list:
    index = index_source(source_fd, source_size)
    drafts: list = []
    gap_start: int | None = None
    shift = 0

    def close_gap(end: int, next_shift: int | None = None) -> None:
        """Patches for the changed bytes [gap_start, end), each with the source around where
        its content was (between the shifts of the copies before and after the gap) as reference."""
        nonlocal gap_start
        if gap_start is None:
            return
        lo_shift, hi_shift = sorted((shift, shift if next_shift is None else next_shift))
        if hi_shift - lo_shift > MAX_REFERENCE // 2:  # unrelated neighbours: the content before the next copy
            lo_shift = hi_shift = shift if next_shift is None else next_shift
        pos = gap_start
        while pos < end:
            n = min(MAX_CONTENT, end - pos)
            pad = min(max(MIN_PAD, n), (MAX_REFERENCE - n - (hi_shift - lo_shift)) // 2)
            lo = max(0, min(pos + lo_shift - pad, source_size))
            hi = max(lo, min(source_size, pos + hi_shift + n + pad))
            drafts.append(DraftPatch(pos, n, lo, hi - lo))
            pos += n
        gap_start = None

    def add(draft: DraftCopy | DraftZero) -> None:
        last = drafts[-1] if drafts else None
        if isinstance(draft, DraftZero) and isinstance(last, DraftZero) and last.offset + last.length == draft.offset:
            last.length += draft.length
        elif (isinstance(draft, DraftCopy) and isinstance(last, DraftCopy) and last.offset + last.length == draft.offset
              and last.src + last.length == draft.src):
            last.length += draft.length
        else:
            drafts.append(draft)

    pos = 0
    buf, buf_at = b"", 0
    while pos < target_size:
        if not buf_at <= pos < buf_at + len(buf) - BLOCK + 1:
            buf, buf_at = os.pread(target_fd, min(1 << 22, target_size - pos), pos), pos
        block = buf[pos - buf_at : pos - buf_at + BLOCK]
        if block == _ZERO[: len(block)]:
            close_gap(pos)
            add(DraftZero(pos, len(block)))
            pos += len(block)
            continue
        src = index.strong.get(_digest(block)) if len(block) == BLOCK else None
        if src is not None:
            close_gap(pos, src - pos)
            shift = src - pos
            add(DraftCopy(pos, BLOCK, src))
            pos += BLOCK
            continue
        if gap_start is None:
            gap_start = pos
        pos = _next_match(target_fd, target_size, pos + 1, index)
    close_gap(target_size)
    _refer_to_target(drafts, target_fd, index.anchor)
    return drafts


def _next_fingerprint(data: bytes, anchor: bytes, start: int) -> int:
    """The first offset >= ``start`` where a fingerprint of ``data`` begins (an anchor byte followed by
    ``KEY`` bytes of at least ``MIN_DISTINCT`` values: runs of one or two byte values would match
    everywhere), or -1."""
    p = data.find(anchor, start)
    while 0 <= p <= len(data) - KEY:
        if len(set(data[p : p + KEY])) >= MIN_DISTINCT:
            return p
        p = data.find(anchor, p + 1)
    return -1


def _fingerprints(data: bytes, anchor: bytes) -> dict[bytes, int]:
    """Each distinct fingerprint of ``data`` (as the source index takes them) -> its first offset."""
    out: dict[bytes, int] = {}
    p = _next_fingerprint(data, anchor, 0)
    while p >= 0:
        out.setdefault(data[p : p + KEY], p)
        p = _next_fingerprint(data, anchor, p + 1)
    return out


def _refer_to_target(drafts: list, target_fd: int, anchor: bytes) -> None:
    """Give each patch the earlier patched target extents that share its content (module docstring)."""
    seen: dict[bytes, tuple[int, int]] = {}  # fingerprint -> (stretch number, target offset) where it first appeared
    stretches: list[DraftPatch] = []
    for draft in drafts:
        if not isinstance(draft, DraftPatch):
            continue
        keys = _fingerprints(os.pread(target_fd, draft.length, draft.offset), anchor)
        shared: dict[int, list[int]] = {}
        for key in keys:
            hit = seen.get(key)
            if hit is not None:
                shared.setdefault(hit[0], []).append(hit[1])
        room = min(TARGET_WINDOW, MAX_OP_REFERENCE - draft.src_len)
        extents = []
        for number, offsets in sorted(shared.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            if len(offsets) < TARGET_MIN_HITS or room <= 0 or len(extents) == MAX_TARGET_EXTENTS:
                break
            earlier = stretches[number]
            lo = max(earlier.offset, min(offsets) - TARGET_MARGIN)
            hi = min(earlier.offset + earlier.length, max(offsets) + KEY + TARGET_MARGIN, lo + room)
            extents.append((lo, hi - lo))
            room -= hi - lo
        draft.targets = tuple(sorted(extents))
        for key, p in keys.items():
            seen.setdefault(key, (len(stretches), draft.offset + p))
        stretches.append(draft)
