"""Squashfs 4.0 writer: a :class:`~edge.squashfs.tree.Tree` in, a reproducible image out.

Layout, in file order (the same as mksquashfs):

    superblock | compressor options | data blocks and fragment blocks
    | inode table | directory table | fragment table | export table
    | id table | xattr tables | padding to 4 KiB

Reproducibility: the tree is walked in byte-sorted order, inode numbers and
table contents depend only on the tree, compression jobs run on a thread pool
but their results are written strictly in submission order, and the
superblock time is ``mtime`` (or the newest entry time) rather than "now".
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO

from edge.fsutil import atomic_output
from edge.sizes import parse_binary_size

from . import format as fmt
from .compressors import Codec, make_codec
from .errors import SquashfsError
from .metadata import MetadataWriter, pack_table
from .tree import Entry, Kind, Node, Tree

Progress = Callable[[int, int], None]

_BASIC_TYPE = {
    Kind.DIR: fmt.T_DIR,
    Kind.FILE: fmt.T_FILE,
    Kind.SYMLINK: fmt.T_SYMLINK,
    Kind.BLOCK: fmt.T_BLKDEV,
    Kind.CHAR: fmt.T_CHRDEV,
    Kind.FIFO: fmt.T_FIFO,
    Kind.SOCKET: fmt.T_SOCKET,
}
_XATTR_TYPES = {"user.": fmt.XATTR_USER, "trusted.": fmt.XATTR_TRUSTED, "security.": fmt.XATTR_SECURITY}
_U32_MAX = 0xFFFFFFFF


@dataclass(frozen=True)
class WriterOptions:
    """How to write an image.  Defaults match ``mksquashfs -comp zstd``."""

    compressor: str = "zstd"
    level: int | None = None
    impl: str = ""  # compression library; "" = the default for the compressor (see compressors.default_impl)
    block_size: int = 128 * 1024
    fragments: bool = True
    always_fragments: bool = False  # also pack the tails of files larger than a block
    dedup: bool = True
    mtime: int | None = None  # clamp every timestamp to this (SOURCE_DATE_EPOCH)
    exportable: bool = True
    xattrs: bool = True
    workers: int = 0  # 0: one per CPU
    pad: bool = True
    compress_metadata: bool = True  # False: like mksquashfs -noI -noId -noX (for inspection and tests)

    def validate(self) -> None:
        bs = self.block_size
        if bs & (bs - 1) or not (1 << fmt.MIN_BLOCK_LOG) <= bs <= (1 << fmt.MAX_BLOCK_LOG):
            raise SquashfsError(f"block size {bs} must be a power of two between 4 KiB and 1 MiB")
        if self.mtime is not None and not 0 <= self.mtime <= _U32_MAX:
            raise SquashfsError(f"mtime {self.mtime} does not fit squashfs' 32-bit timestamps")


@dataclass
class WriteResult:
    bytes_used: int
    image_size: int
    inode_count: int
    files: int = 0
    directories: int = 0
    symlinks: int = 0
    devices: int = 0
    data_bytes: int = 0  # uncompressed bytes of unique file content
    duplicates: int = 0
    fragments: int = 0
    sparse_blocks: int = 0
    skipped_xattrs: list[str] = field(default_factory=list)


def parse_block_size(text: str) -> int:
    """'128K', '1M', '2G', '65536' -> bytes (binary units; callers check the range)."""
    try:
        return parse_binary_size(text)
    except ValueError:
        raise SquashfsError(f"block size {text!r} is not a size (e.g. 128K, 1M, 65536)") from None


@dataclass(slots=True)
class _FileData:
    start: int = 0
    sizes: list[int] = field(default_factory=list)
    frag_index: int = fmt.INVALID_FRAGMENT
    frag_offset: int = 0
    sparse: int = 0


@dataclass(slots=True)
class _Inode:
    number: int
    ref: int = 0
    basic_type: int = 0


def write_image(
    tree: Tree,
    output: str | os.PathLike[str] | BinaryIO,
    options: WriterOptions = WriterOptions(),
    progress: Progress | None = None,
) -> WriteResult:
    """Write ``tree`` as a squashfs image.

    A path is written through a temporary file in the same directory and
    renamed into place only when complete, so a failed build never leaves a
    partial image behind.  A file object must be writable and seekable and
    positioned at 0.
    """
    options.validate()
    if isinstance(output, (str, os.PathLike)):
        with atomic_output(output, prefix=".edge-sqfs-") as fh:
            return _Writer(tree, fh, options, progress).run()
    return _Writer(tree, output, options, progress).run()


class _Writer:
    def __init__(self, tree: Tree, out: BinaryIO, options: WriterOptions, progress: Progress | None) -> None:
        self.tree = tree
        self.out = out
        self.opt = options
        self.bs = options.block_size
        self.codec: Codec = make_codec(options.compressor, options.block_size, options.level, options.impl)
        self.progress = progress
        self.pos = 0
        self.result = WriteResult(0, 0, 0)
        self.primary: dict[int, Node] = {}  # id(node) of a name -> node holding the inode
        self.nlink: dict[int, int] = {}
        self.file_data: dict[int, _FileData] = {}
        self.fragment_entries: list[list[int]] = []
        self.zero = bytes(self.bs)

    # ------------------------------------------------------------------ driver
    def run(self) -> WriteResult:
        self._resolve_links()
        self._emit(bytes(fmt.SUPERBLOCK_SIZE))
        options = self.codec.options()
        if options is not None:
            self._emit(fmt.U16.pack(len(options) | fmt.METADATA_UNCOMPRESSED) + options)
        self._write_data()
        sb = self._write_metadata(options is not None)
        self.out.seek(0)
        self.out.write(sb.pack())
        self.out.seek(self.pos)
        self.result.bytes_used = self.pos
        if self.opt.pad and self.pos % fmt.PAD_TO:
            pad = fmt.PAD_TO - self.pos % fmt.PAD_TO
            self.out.write(bytes(pad))
            self.pos += pad
        self.result.image_size = self.pos
        return self.result

    def _emit(self, data: bytes) -> None:
        self.out.write(data)
        self.pos += len(data)

    # ------------------------------------------------------------ hard links
    def _resolve_links(self) -> None:
        """Map every name to the node whose entry defines the inode; count names per inode."""
        for path, node in self.tree.walk():
            target = node
            hops = 0
            while target.entry.kind is Kind.HARDLINK:
                hops += 1
                nxt = self.tree.get(target.entry.target)
                if nxt is None or hops > 64:
                    raise SquashfsError(f"hard link {path!r} points to {target.entry.target!r}, which is not in the tree")
                target = nxt
            if target.entry.kind is Kind.DIR and node is not target:
                raise SquashfsError(f"hard link {path!r} points to directory {target.entry.path!r}")
            self.primary[id(node)] = target
            self.nlink[id(target)] = self.nlink.get(id(target), 0) + 1

    # ------------------------------------------------------------------- data
    def _write_data(self) -> None:
        files: list[Node] = []
        seen: set[int] = set()
        for _, node in self.tree.walk():
            if node.entry.kind in (Kind.FILE, Kind.HARDLINK):
                target = self.primary[id(node)]
                if target.entry.kind is Kind.FILE and id(target) not in seen:
                    seen.add(id(target))
                    files.append(target)
        digests = self._duplicate_digests(files) if self.opt.dedup else {}
        total = sum(f.entry.size for f in files)
        done = 0
        by_digest: dict[bytes, _FileData] = {}
        workers = self.opt.workers or os.cpu_count() or 1
        pipeline = _Pipeline(self, workers)
        frag = bytearray()
        try:
            for node in files:
                entry = node.entry
                digest = digests.get(id(node))
                if digest is not None and digest in by_digest:
                    self.file_data[id(node)] = by_digest[digest]
                    self.result.duplicates += 1
                    done += entry.size
                    continue
                data = _FileData()
                self.file_data[id(node)] = data
                if digest is not None:
                    by_digest[digest] = data
                self.result.data_bytes += entry.size
                size = entry.size
                use_frag = self.opt.fragments and size % self.bs != 0 and (size < self.bs or self.opt.always_fragments)
                full_blocks = size // self.bs if use_frag else -(-size // self.bs)
                pipeline.mark_start(data)
                got = 0
                assert entry.content is not None
                for i, block in enumerate(entry.content.iter_blocks(self.bs)):
                    n = len(block) if block is not None else min(self.bs, size - got)
                    got += n
                    if i < full_blocks:
                        if block is None or block == self.zero[:n]:
                            data.sizes.append(0)
                            data.sparse += n
                            self.result.sparse_blocks += 1
                        else:
                            pipeline.submit_block(data, block)
                    else:  # the tail, packed into a fragment block
                        tail = block if block is not None else bytes(n)
                        if len(frag) + len(tail) > self.bs:
                            pipeline.submit_fragment(bytes(frag))
                            frag.clear()
                        data.frag_index = len(self.fragment_entries)
                        data.frag_offset = len(frag)
                        frag += tail
                    done += n
                    if self.progress is not None:
                        self.progress(done, total)
                if got != size:
                    raise SquashfsError(f"{entry.path}: content has {got} bytes, expected {size}")
            if frag:
                pipeline.submit_fragment(bytes(frag))
            pipeline.drain()
        finally:
            pipeline.close()
        self.result.fragments = len(self.fragment_entries)

    def _duplicate_digests(self, files: list[Node]) -> dict[int, bytes]:
        """SHA-256 of every file that shares its size with another one (the only dedup candidates)."""
        by_size: dict[int, int] = {}
        for node in files:
            by_size[node.entry.size] = by_size.get(node.entry.size, 0) + 1
        digests: dict[int, bytes] = {}
        for node in files:
            size = node.entry.size
            if size == 0 or by_size[size] < 2:
                continue
            assert node.entry.content is not None
            digests[id(node)] = node.entry.content.sha256()
        return digests

    def write_block(self, data: bytes, packed: bytes) -> int:
        """Write one data or fragment block (compressed when that saved space); return its size word."""
        if len(packed) < len(data):
            self._emit(packed)
            return len(packed)
        self._emit(data)
        return len(data) | fmt.DATA_UNCOMPRESSED

    # --------------------------------------------------------------- metadata
    def _write_metadata(self, has_options: bool) -> fmt.Superblock:
        inodes = self._number_inodes()
        inode_count = len(inodes)
        ids: dict[int, int] = {}
        xattr_sets: dict[tuple[tuple[str, bytes], ...], int] = {}
        xattr_list: list[tuple[tuple[int, bytes, bytes], ...]] = []
        mtime_clamp = self.opt.mtime
        newest = 0

        def id_index(value: int) -> int:
            idx = ids.get(value)
            if idx is None:
                idx = ids[value] = len(ids)
                if idx > 0xFFFF:
                    raise SquashfsError("more than 65536 distinct uids/gids")
            return idx

        def xattr_index(entry: Entry) -> int:
            if not self.opt.xattrs or not entry.xattrs:
                return fmt.INVALID_XATTR
            items = []
            for name, value in entry.xattrs:
                for prefix, xtype in _XATTR_TYPES.items():
                    if name.startswith(prefix) and len(name) > len(prefix):
                        items.append((xtype, name[len(prefix):].encode("utf-8", "surrogateescape"), value))
                        break
                else:
                    self.result.skipped_xattrs.append(f"{entry.path or '/'}: {name}")
            if not items:
                return fmt.INVALID_XATTR
            key = tuple((f"{t}:{n!r}", v) for t, n, v in items)
            idx = xattr_sets.get(key)
            if idx is None:
                idx = xattr_sets[key] = len(xattr_list)
                xattr_list.append(tuple(items))
            return idx

        iw = MetadataWriter(self.codec, self.opt.compress_metadata)
        dw = MetadataWriter(self.codec, self.opt.compress_metadata)
        export = [0] * inode_count

        def header(entry: Entry, itype: int, number: int) -> bytes:
            nonlocal newest
            mtime = min(max(entry.mtime, 0), _U32_MAX)
            if mtime_clamp is not None:
                mtime = min(mtime, mtime_clamp)
            newest = max(newest, mtime)
            return fmt.INODE_HEADER.pack(itype, entry.mode, id_index(entry.uid), id_index(entry.gid), mtime, number)

        def write_inode(node: Node, parent_number: int, listing: tuple[int, int, int, list] | None = None) -> None:
            info = inodes[id(node)]
            entry = node.entry
            kind = entry.kind
            xattr = xattr_index(entry)
            nlink = self.nlink.get(id(node), 1)
            block, offset = iw.ref()
            info.ref = fmt.inode_ref(block, offset)
            info.basic_type = _BASIC_TYPE[kind]
            export[info.number - 1] = info.ref
            if kind is Kind.DIR:
                assert listing is not None
                start, off, size, index = listing
                subdirs = sum(1 for c in node.children.values() if c.entry.kind is Kind.DIR) if node.children else 0
                nlink = 2 + subdirs
                if size + 3 > 0xFFFF or index or xattr != fmt.INVALID_XATTR:
                    body = fmt.LDIR_INODE.pack(nlink, size + 3, start, parent_number, len(index), off, xattr)
                    body += b"".join(fmt.DIR_INDEX.pack(i, s, len(n) - 1) + n for i, s, n in index)
                    iw.write(header(entry, fmt.T_LDIR, info.number) + body)
                else:
                    iw.write(header(entry, fmt.T_DIR, info.number) + fmt.DIR_INODE.pack(start, nlink, size + 3, off, parent_number))
                self.result.directories += 1
            elif kind is Kind.FILE:
                data = self.file_data[id(node)]
                size = entry.size
                sizes = b"".join(fmt.U32.pack(s) for s in data.sizes)
                if size > _U32_MAX or data.start > _U32_MAX or nlink > 1 or xattr != fmt.INVALID_XATTR or data.sparse:
                    body = fmt.LFILE_INODE.pack(data.start, size, data.sparse, nlink, data.frag_index, data.frag_offset, xattr)
                    iw.write(header(entry, fmt.T_LFILE, info.number) + body + sizes)
                else:
                    body = fmt.FILE_INODE.pack(data.start, data.frag_index, data.frag_offset, size)
                    iw.write(header(entry, fmt.T_FILE, info.number) + body + sizes)
                self.result.files += 1
            elif kind is Kind.SYMLINK:
                target = entry.target.encode("utf-8", "surrogateescape")
                body = fmt.SYMLINK_INODE.pack(nlink, len(target)) + target
                if xattr != fmt.INVALID_XATTR:
                    iw.write(header(entry, fmt.T_LSYMLINK, info.number) + body + fmt.U32.pack(xattr))
                else:
                    iw.write(header(entry, fmt.T_SYMLINK, info.number) + body)
                self.result.symlinks += 1
            elif kind in (Kind.CHAR, Kind.BLOCK):
                basic = _BASIC_TYPE[kind]
                rdev = fmt.encode_rdev(entry.major, entry.minor)
                if xattr != fmt.INVALID_XATTR:
                    iw.write(header(entry, basic + fmt.EXTENDED_OFFSET, info.number) + fmt.LDEV_INODE.pack(nlink, rdev, xattr))
                else:
                    iw.write(header(entry, basic, info.number) + fmt.DEV_INODE.pack(nlink, rdev))
                self.result.devices += 1
            else:  # fifo, socket
                basic = _BASIC_TYPE[kind]
                if xattr != fmt.INVALID_XATTR:
                    iw.write(header(entry, basic + fmt.EXTENDED_OFFSET, info.number) + fmt.LIPC_INODE.pack(nlink, xattr))
                else:
                    iw.write(header(entry, basic, info.number) + fmt.IPC_INODE.pack(nlink))

        def write_listing(node: Node) -> tuple[int, int, int, list]:
            children = []
            for name, child in node.sorted_children():
                info = inodes[id(self.primary[id(child)])]
                children.append((name.encode("utf-8", "surrogateescape"), info))
            start, off = dw.ref()
            begin = dw.uncompressed_pos
            last_block = start
            index: list[tuple[int, int, bytes]] = []
            i = 0
            while i < len(children):
                base = children[i][1]
                block = base.ref >> 16
                j = i
                while (
                    j < len(children)
                    and j - i < fmt.DIR_HEADER_MAX_ENTRIES
                    and children[j][1].ref >> 16 == block
                    and -32768 <= children[j][1].number - base.number <= 32767
                ):
                    j += 1
                hblock, _ = dw.ref()
                if hblock != last_block:
                    index.append((dw.uncompressed_pos - begin, hblock, children[i][0]))
                    last_block = hblock
                parts = [fmt.DIR_HEADER.pack(j - i - 1, block, base.number)]
                for name, info in children[i:j]:
                    parts.append(fmt.DIR_ENTRY.pack(info.ref & 0xFFFF, info.number - base.number, info.basic_type, len(name) - 1) + name)
                dw.write(b"".join(parts))
                i = j
            return start, off, dw.uncompressed_pos - begin, index

        # Same post-order as _number_inodes: children (subtrees first), then the directory.
        root = self.tree.root
        written: set[int] = set()
        stack: list[tuple[Node, int, list[tuple[str, Node]], int]] = [(root, inode_count + 1, root.sorted_children(), 0)]
        while stack:
            node, parent_number, children, i = stack.pop()
            if i < len(children):
                stack.append((node, parent_number, children, i + 1))
                child = children[i][1]
                if child.entry.kind is Kind.DIR:
                    stack.append((child, inodes[id(node)].number, child.sorted_children(), 0))
                else:
                    target = self.primary[id(child)]
                    if id(target) not in written:
                        written.add(id(target))
                        write_inode(target, 0)
                continue
            listing = write_listing(node)
            write_inode(node, parent_number, listing)

        root_ref = inodes[id(root)].ref
        inode_bytes = iw.finish()
        dir_bytes = dw.finish()

        inode_table = self.pos
        self._emit(inode_bytes)
        directory_table = self.pos
        self._emit(dir_bytes)

        fragment_table = self.pos
        if self.fragment_entries:
            raw = b"".join(fmt.FRAGMENT_ENTRY.pack(s, w, 0) for s, w in self.fragment_entries)
            blocks, index = pack_table(self.codec, raw, self.pos, self.opt.compress_metadata)
            self._emit(blocks)
            fragment_table = self.pos
            self._emit(index)

        export_table = fmt.NO_TABLE
        if self.opt.exportable:
            blocks, index = pack_table(self.codec, b"".join(fmt.U64.pack(r) for r in export), self.pos, self.opt.compress_metadata)
            self._emit(blocks)
            export_table = self.pos
            self._emit(index)

        blocks, index = pack_table(self.codec, b"".join(fmt.U32.pack(v) for v in ids), self.pos, self.opt.compress_metadata)
        self._emit(blocks)
        id_table = self.pos
        self._emit(index)

        xattr_table = fmt.NO_TABLE
        if xattr_list:
            xattr_table = self._write_xattrs(xattr_list)

        flags = 0
        if not self.opt.fragments:
            flags |= fmt.FLAG_NO_FRAGMENTS
        if self.opt.always_fragments:
            flags |= fmt.FLAG_ALWAYS_FRAGMENTS
        if self.opt.dedup:
            flags |= fmt.FLAG_DUPLICATES
        if self.opt.exportable:
            flags |= fmt.FLAG_EXPORTABLE
        if not self.opt.xattrs:
            flags |= fmt.FLAG_NO_XATTRS
        if has_options:
            flags |= fmt.FLAG_COMPRESSOR_OPTIONS
        if not self.opt.compress_metadata:
            flags |= fmt.FLAG_UNCOMPRESSED_INODES | fmt.FLAG_UNCOMPRESSED_IDS | fmt.FLAG_UNCOMPRESSED_XATTRS
        self.result.inode_count = inode_count
        return fmt.Superblock(
            inode_count=inode_count,
            mkfs_time=self.opt.mtime if self.opt.mtime is not None else newest,
            block_size=self.bs,
            fragment_count=len(self.fragment_entries),
            compression=self.codec.id,
            block_log=self.bs.bit_length() - 1,
            flags=flags,
            id_count=len(ids),
            version_major=fmt.VERSION_MAJOR,
            version_minor=fmt.VERSION_MINOR,
            root_inode=root_ref,
            bytes_used=self.pos,
            id_table=id_table,
            xattr_id_table=xattr_table,
            inode_table=inode_table,
            directory_table=directory_table,
            fragment_table=fragment_table,
            export_table=export_table,
        )

    def _number_inodes(self) -> dict[int, _Inode]:
        """Inode numbers 1..N in post-order: a directory's non-directory children
        as they come, each subdirectory after its own contents, the root last."""
        inodes: dict[int, _Inode] = {}
        counter = 0
        stack: list[tuple[Node, list[tuple[str, Node]], int]] = [(self.tree.root, self.tree.root.sorted_children(), 0)]
        while stack:
            node, children, i = stack.pop()
            if i < len(children):
                stack.append((node, children, i + 1))
                child = children[i][1]
                if child.entry.kind is Kind.DIR:
                    stack.append((child, child.sorted_children(), 0))
                else:
                    target = self.primary[id(child)]
                    if id(target) not in inodes:
                        counter += 1
                        inodes[id(target)] = _Inode(counter)
                continue
            counter += 1
            inodes[id(node)] = _Inode(counter)
        return inodes

    def _write_xattrs(self, xattr_list: list[tuple[tuple[int, bytes, bytes], ...]]) -> int:
        kv = MetadataWriter(self.codec, self.opt.compress_metadata)
        ids = bytearray()
        for items in xattr_list:
            block, offset = kv.ref()
            size = 0
            for xtype, name, value in items:
                rec = fmt.XATTR_KEY.pack(xtype, len(name)) + name + fmt.U32.pack(len(value)) + value
                size += len(rec)
                kv.write(rec)
            ids += fmt.XATTR_ID.pack(fmt.inode_ref(block, offset), len(items), size)
        kv_start = self.pos
        self._emit(kv.finish())
        blocks, index = pack_table(self.codec, bytes(ids), self.pos, self.opt.compress_metadata)
        self._emit(blocks)
        table = self.pos
        self._emit(fmt.XATTR_ID_TABLE.pack(kv_start, len(xattr_list), 0) + index)
        return table


class _Pipeline:
    """Compresses blocks on a thread pool and writes them strictly in submission order."""

    def __init__(self, writer: _Writer, workers: int) -> None:
        self.w = writer
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="edge-sqfs") if workers > 1 else None
        self.limit = max(4, workers * 4)
        self.queue: deque[tuple[str, object, bytes | None, Future[bytes] | bytes | None]] = deque()

    def _compress(self, data: bytes) -> Future[bytes] | bytes:
        if self.pool is None:
            return self.w.codec.compress(data)
        return self.pool.submit(self.w.codec.compress, data)

    def _push(self, item: tuple[str, object, bytes | None, Future[bytes] | bytes | None]) -> None:
        self.queue.append(item)
        while len(self.queue) > self.limit:
            self._pop()

    def mark_start(self, data: _FileData) -> None:
        self._push(("start", data, None, None))

    def submit_block(self, data: _FileData, block: bytes) -> None:
        data.sizes.append(-1)  # placeholder, filled in when the block is written
        self._push(("block", (data, len(data.sizes) - 1), block, self._compress(block)))

    def submit_fragment(self, block: bytes) -> None:
        self.w.fragment_entries.append([0, 0])
        self._push(("frag", self.w.fragment_entries[-1], block, self._compress(block)))

    def _pop(self) -> None:
        kind, target, block, job = self.queue.popleft()
        if kind == "start":
            assert isinstance(target, _FileData)
            target.start = self.w.pos
            return
        assert block is not None and job is not None
        packed = job.result() if isinstance(job, Future) else job
        word_pos = self.w.pos
        word = self.w.write_block(block, packed)
        if kind == "block":
            assert isinstance(target, tuple)
            file_data, index = target
            file_data.sizes[index] = word
        else:
            assert isinstance(target, list)
            target[0] = word_pos
            target[1] = word

    def drain(self) -> None:
        while self.queue:
            self._pop()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
