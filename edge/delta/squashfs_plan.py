"""Plan a delta between two squashfs images from their physical layouts.

The plan is a list of drafts covering the target image front to back:

- compressed blocks whose exact bytes exist in the source become copies (an
  unchanged file's blocks are identical wherever they moved);
- changed data blocks of a file become a *blocks* draft: its plain content
  patched against the plain content of the matching source file (matched by
  path, then by a path with version numbers masked, then by identical content),
  recompressed on the device;
- fragment blocks are patched against the source fragment blocks that held
  the same files' tails;
- each metadata table (inodes, directories, fragments, export, ids, xattrs) is
  patched as one plain stream against the source's table of the same name;
- the superblock and table indexes are literals.

Drafts name byte ranges only; reading, patching and verifying happens later
(``edge.delta.make``), in parallel.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field

from edge.squashfs import SquashfsError
from edge.squashfs import format as sqfmt
from edge.squashfs.compressors import CodecError
from edge.squashfs.reader import FileLayout, ImageLayout, SquashfsImage, TableLayout

from .format import MODE_DATA, MODE_METADATA, SourceBlock, SourceChain

MAX_CONTENT = 4 << 20  # plain bytes per blocks draft (device memory: content + reference + output)
MAX_REFERENCE = 8 << 20
MAX_FRAGMENT_SOURCES = 8
_DIGITS = re.compile(r"\d+")


@dataclass
class DraftCopy:
    offset: int
    length: int
    src: int


@dataclass
class DraftLiteral:
    offset: int
    length: int


@dataclass
class DraftZero:
    offset: int
    length: int


@dataclass
class DraftBlocks:
    offset: int
    length: int
    mode: int
    targets: list[SourceBlock] | SourceChain  # where the target's blocks are, in the target image
    sources: list[SourceBlock | SourceChain] = field(default_factory=list)
    label: str = ""


Draft = DraftCopy | DraftLiteral | DraftZero | DraftBlocks


def _word(stored: int, compressed: bool) -> int:
    return stored | (0 if compressed else sqfmt.DATA_UNCOMPRESSED)


def _masked(path: str) -> str:
    return _DIGITS.sub("#", path)


class _Source:
    """Everything the planner asks about the source image."""

    def __init__(self, img: SquashfsImage, layout: ImageLayout, fd: int) -> None:
        self.img = img
        self.layout = layout
        self.fd = fd
        self.by_path = {f.path: f for f in layout.files}
        self.by_mask: dict[str, list[FileLayout]] = defaultdict(list)
        for f in layout.files:
            self.by_mask[_masked(f.path)].append(f)
        self.by_size: dict[int, list[FileLayout]] = defaultdict(list)
        for f in layout.files:
            self.by_size[f.size].append(f)
        self.tables = {t.name: t for t in layout.tables}
        self.fragment_plain: dict[int, int] = {}
        self._content_digest: dict[str, bytes] = {}
        # every stored block of the source, by content: unchanged blocks are found wherever they moved
        self.blocks: dict[bytes, int] = {}
        spans = {(b.offset, b.stored_size) for f in layout.files for b in f.blocks if b.stored_size}
        spans |= {(b.offset, b.stored_size) for b in layout.fragments}
        for offset, size in sorted(spans):
            self.blocks.setdefault(_digest(os.pread(fd, size, offset)), offset)

    def match(self, f: FileLayout, target: "SquashfsImage") -> FileLayout | None:
        same = self.by_path.get(f.path)
        if same is not None:
            return same
        candidates = self.by_mask.get(_masked(f.path))
        if candidates:
            return min(candidates, key=lambda c: (abs(c.size - f.size), c.path))
        # renamed or moved: a source file with the same content
        if f.size and self.by_size.get(f.size):
            want = _plain_digest(target, f.path)
            for c in self.by_size[f.size]:
                if c.path not in self._content_digest:
                    self._content_digest[c.path] = _plain_digest(self.img, c.path)
                if self._content_digest[c.path] == want:
                    return c
        return None

    def fragment_block(self, index: int) -> SourceBlock:
        if not 0 <= index < len(self.layout.fragments):
            raise SquashfsError(f"a file names fragment {index}; the image has {len(self.layout.fragments)}")
        b = self.layout.fragments[index]
        plain = self.fragment_plain.get(index)
        if plain is None:
            raw = os.pread(self.fd, b.stored_size, b.offset)
            plain = len(raw) if not b.compressed else _plain_size(self.img, raw, self.img.superblock.block_size, b.offset)
            self.fragment_plain[index] = plain
        return SourceBlock(b.offset, _word(b.stored_size, b.compressed), plain)

    def file_extents(self, f: FileLayout, start: int, end: int) -> list[SourceBlock]:
        """Source blocks (plus the fragment holding the tail) of ``f`` overlapping plain range [start, end)."""
        bs = self.img.superblock.block_size
        out: list[SourceBlock] = []
        for i in range(max(0, start // bs), min(len(f.blocks), -(-end // bs))):
            b = f.blocks[i]
            size = min(bs, f.size - i * bs)
            if not b.stored_size or i * bs + size <= start:
                continue  # a hole adds only zeros to the reference
            out.append(SourceBlock(b.offset, _word(b.stored_size, b.compressed), size))
        tail_start = len(f.blocks) * bs
        if f.fragment is not None and tail_start < end and f.size > start:
            out.append(self.fragment_block(f.fragment))
        return out


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=20).digest()


def _plain_digest(img: SquashfsImage, path: str) -> bytes:
    h = hashlib.blake2b(digest_size=20)
    for chunk in img.iter_file(img.lookup(path)):
        h.update(chunk)
    return h.digest()


def plan(source: SquashfsImage, target: SquashfsImage, source_fd: int, target_fd: int, target_size: int) -> list[Draft]:
    """Drafts covering [0, target_size) of the target, in order, without gaps."""
    tl = target.layout()
    src = _Source(source, source.layout(), source_fd)
    bs = target.superblock.block_size
    drafts: list[Draft] = []

    # head: superblock and compressor options
    drafts.append(DraftLiteral(0, tl.data[0]))

    # data blocks, file by file
    seen_blocks: set[int] = set()
    stored_files = [f for f in tl.files if any(b.stored_size for b in f.blocks)]
    for f in sorted(stored_files, key=lambda f: (next(b.offset for b in f.blocks if b.stored_size), f.path)):
        first = next(b.offset for b in f.blocks if b.stored_size)
        if first in seen_blocks:
            continue  # a duplicate sharing another file's blocks
        seen_blocks.add(first)
        match: FileLayout | None | bool = False  # looked up lazily: most files are unchanged
        run: list[tuple[int, SourceBlock]] = []  # (block index, target block) of changed blocks

        def flush_run() -> None:
            nonlocal match, run
            if not run:
                return
            if match is False:
                match = src.match(f, target)
            for chunk in _chunks(run, MAX_CONTENT // bs or 1):
                first, last = chunk[0][0], chunk[-1][0]
                plain_start, plain_end = first * bs, min((last + 1) * bs, f.size)
                sources: list[SourceBlock | SourceChain] = []
                if match:
                    margin = max(0, (MAX_REFERENCE - (plain_end - plain_start)) // 2)
                    sources = list(src.file_extents(match, plain_start - margin, plain_end + margin))
                targets = [t for _, t in chunk]
                start = targets[0].offset
                end = max(t.offset + (t.word & sqfmt.DATA_SIZE_MASK) for t in targets)
                drafts.append(DraftBlocks(start, end - start, MODE_DATA, targets, sources, f"/{f.path}"))
            run = []

        for i, b in enumerate(f.blocks):
            if not b.stored_size:  # a hole has no bytes in the image: it ends a changed run
                flush_run()
                continue
            digest = _digest(os.pread(target_fd, b.stored_size, b.offset))
            src_off = src.blocks.get(digest)
            if src_off is not None:
                flush_run()
                drafts.append(DraftCopy(b.offset, b.stored_size, src_off))
            else:
                run.append((i, SourceBlock(b.offset, _word(b.stored_size, b.compressed), b.size)))
        flush_run()

    # fragment blocks
    tails: dict[int, list[FileLayout]] = defaultdict(list)
    for f in tl.files:
        if f.fragment is not None:
            tails[f.fragment].append(f)
    for index, b in enumerate(tl.fragments):
        raw = os.pread(target_fd, b.stored_size, b.offset)
        src_off = src.blocks.get(_digest(raw))
        if src_off is not None:
            drafts.append(DraftCopy(b.offset, b.stored_size, src_off))
            continue
        plain = len(raw) if not b.compressed else _plain_size(target, raw, bs, b.offset)
        wanted: list[int] = []
        for f in sorted(tails[index], key=lambda f: f.fragment_offset):
            m = src.match(f, target)  # (by path, masked path, then content: a renamed small file)
            if m is not None and m.fragment is not None and m.fragment not in wanted:
                wanted.append(m.fragment)
        sources = [src.fragment_block(i) for i in sorted(wanted[:MAX_FRAGMENT_SOURCES])]
        drafts.append(DraftBlocks(b.offset, b.stored_size, MODE_DATA, [SourceBlock(b.offset, _word(b.stored_size, b.compressed), plain)],
                                  list(sources), f"fragment {index}"))

    # metadata tables
    for t in tl.tables:
        _plan_table(t, src, target_fd, drafts)

    drafts.sort(key=lambda d: d.offset)
    return _fill_gaps(drafts, target_fd, target_size)


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _plan_table(t: TableLayout, src: _Source, target_fd: int, drafts: list[Draft]) -> None:
    meta_end = t.index if t.index is not None else t.end
    blocks_start = t.metadata_blocks[0].offset if t.metadata_blocks else meta_end
    if meta_end > blocks_start:
        s = src.tables.get(t.name)
        t_bytes = os.pread(target_fd, meta_end - blocks_start, blocks_start)
        s_start = s.metadata_blocks[0].offset if s is not None and s.metadata_blocks else None
        s_end = None
        if s is not None and s_start is not None:
            s_end = s.index if s.index is not None else s.end
            if os.pread(src.fd, s_end - s_start, s_start) == t_bytes:
                drafts.append(DraftCopy(blocks_start, meta_end - blocks_start, s_start))
                s_start = None  # done
                t_bytes = b""
        if t_bytes:
            # segments of whole metadata blocks, each against a proportional window of the source table
            segments: list[list] = [[]]
            plain = 0
            for b in t.metadata_blocks:
                if plain + b.size > MAX_CONTENT and segments[-1]:
                    segments.append([])
                    plain = 0
                segments[-1].append(b)
                plain += b.size
            sblocks = list(s.metadata_blocks) if s is not None and s_start is not None else []
            total_t = sum(b.size for b in t.metadata_blocks) or 1
            done = 0
            for seg in segments:
                seg_plain = sum(b.size for b in seg)
                sources: list[SourceBlock | SourceChain] = []
                if sblocks:
                    total_s = sum(b.size for b in sblocks)
                    centre = (done + seg_plain / 2) / total_t * total_s
                    lo, hi = centre - MAX_REFERENCE / 2, centre + MAX_REFERENCE / 2
                    pos = 0
                    chosen = []
                    for b in sblocks:
                        if pos + b.size > lo and pos < hi:
                            chosen.append(b)
                        pos += b.size
                    if chosen:
                        last = chosen[-1]
                        sources = [SourceChain(chosen[0].offset, last.offset + 2 + last.stored_size)]
                start = seg[0].offset
                end = seg[-1].offset + 2 + seg[-1].stored_size
                drafts.append(DraftBlocks(start, end - start, MODE_METADATA, SourceChain(start, end), sources, t.name))
                done += seg_plain
    if t.index is not None and t.end > meta_end:
        drafts.append(DraftLiteral(meta_end, t.end - meta_end))


def _plain_size(img: SquashfsImage, raw: bytes, limit: int, offset: int) -> int:
    try:
        return len(img.codec.decompress(raw, limit))
    except CodecError as exc:
        raise SquashfsError(f"{img.name}: fragment block at offset {offset} does not decompress ({exc})") from None


def _fill_gaps(drafts: list[Draft], target_fd: int, target_size: int) -> list[Draft]:
    out: list[Draft] = []
    pos = 0
    for d in drafts:
        if d.offset < pos:
            raise SquashfsError(f"the image's blocks or tables overlap at byte {d.offset} (covered up to {pos})")
        if d.offset > pos:
            out.append(_gap(pos, d.offset - pos, target_fd))
        out.append(d)
        pos = d.offset + d.length
    if pos < target_size:
        out.append(_gap(pos, target_size - pos, target_fd))
    return out


def _gap(offset: int, length: int, target_fd: int) -> Draft:
    data = os.pread(target_fd, length, offset) if length <= 1 << 20 else b"x"
    if data and data.count(0) == len(data):
        return DraftZero(offset, length)
    return DraftLiteral(offset, length)
