"""Squashfs 4.0 reader with random access and a view of the physical layout.

The image is never loaded whole: metadata blocks are read on demand through
a small cache, file data block by block.  Every offset and size read from the
image is checked against the image before it is used, every decompression is
bounded, and directory walks refuse loops, so a truncated, corrupt or hostile
image only ever raises :class:`SquashfsError`.
"""

from __future__ import annotations

import os
import stat
import struct
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from . import format as fmt
from .compressors import Codec, CodecError, codec_for_image
from edge.errors import InputFileError

from .errors import SquashfsError

_CACHE_BLOCKS = 256
# layout() refuses images with more block pointers than this (2 TiB of 128 KiB blocks): a few
# bytes of compressed inode table can declare millions of sparse blocks.
MAX_LAYOUT_BLOCKS = 1 << 24
_MAX_XATTR_VALUE = 65536
_MAX_SYMLINK = 65535

_S_IFMT = {
    fmt.T_DIR: stat.S_IFDIR,
    fmt.T_FILE: stat.S_IFREG,
    fmt.T_SYMLINK: stat.S_IFLNK,
    fmt.T_BLKDEV: stat.S_IFBLK,
    fmt.T_CHRDEV: stat.S_IFCHR,
    fmt.T_FIFO: stat.S_IFIFO,
    fmt.T_SOCKET: stat.S_IFSOCK,
}


@dataclass(frozen=True, slots=True)
class Inode:
    """A decoded inode.  ``mode`` includes the file type bits (``stat.S_IFMT``)."""

    ref: int
    type: int
    mode: int
    uid: int
    gid: int
    mtime: int
    number: int
    nlink: int
    size: int  # file size, directory listing size + 3, symlink target length
    xattr: int = fmt.INVALID_XATTR
    # directories
    dir_block: int = 0
    dir_offset: int = 0
    parent: int = 0
    index_count: int = 0
    # regular files
    blocks_start: int = 0
    block_sizes: tuple[int, ...] = ()
    fragment: int = fmt.INVALID_FRAGMENT
    fragment_offset: int = 0
    sparse: int = 0
    # symlinks and devices
    target: str = ""
    rdev: int = 0

    @property
    def basic_type(self) -> int:
        return self.type - fmt.EXTENDED_OFFSET if self.type > fmt.T_SOCKET else self.type

    @property
    def is_dir(self) -> bool:
        return self.basic_type == fmt.T_DIR

    @property
    def is_file(self) -> bool:
        return self.basic_type == fmt.T_FILE

    @property
    def is_symlink(self) -> bool:
        return self.basic_type == fmt.T_SYMLINK

    @property
    def major_minor(self) -> tuple[int, int]:
        return fmt.decode_rdev(self.rdev)


@dataclass(frozen=True, slots=True)
class DirEntry:
    name: str
    inode_ref: int
    inode_number: int
    type: int


@dataclass(frozen=True, slots=True)
class BlockLocation:
    """One compressed unit in the image: where it is and how it is stored."""

    offset: int
    stored_size: int
    compressed: bool
    size: int = 0  # uncompressed size (data blocks); 0 for a sparse block


@dataclass(frozen=True, slots=True)
class FileLayout:
    path: str
    inode_number: int
    size: int
    blocks: tuple[BlockLocation, ...]  # sparse blocks have stored_size 0
    fragment: int | None
    fragment_offset: int
    fragment_size: int


@dataclass(frozen=True, slots=True)
class TableLayout:
    name: str
    start: int  # first byte of the table (its first metadata block)
    end: int  # one past its last byte (index included)
    metadata_blocks: tuple[BlockLocation, ...]
    index: int | None = None  # position of the u64 index of lookup tables


@dataclass
class ImageLayout:
    """Which bytes of the image hold what."""

    size: int  # bytes_used
    superblock: tuple[int, int]
    compressor_options: tuple[int, int] | None
    data: tuple[int, int]  # data and fragment blocks
    files: list[FileLayout] = field(default_factory=list)
    fragments: list[BlockLocation] = field(default_factory=list)
    tables: list[TableLayout] = field(default_factory=list)


class SquashfsImage:
    """Read access to one squashfs image (a path or a seekable binary file)."""

    def __init__(self, source: str | os.PathLike[str] | BinaryIO, name: str | None = None) -> None:
        if isinstance(source, (str, os.PathLike)):
            self.name = name or os.fspath(source)
            try:
                self._fh: BinaryIO = open(source, "rb")
            except OSError as exc:
                raise InputFileError(f"{self.name}: {exc.strerror}") from None
            self._owns = True
        else:
            self.name = name or getattr(source, "name", "image")
            self._fh = source
            self._owns = False
        try:
            self._fh.seek(0, os.SEEK_END)
            self.file_size = self._fh.tell()
            self.superblock = fmt.Superblock.unpack(self._pread(0, fmt.SUPERBLOCK_SIZE, "superblock", short_ok=True), self.name)
            self._check_superblock()
            self._cache: OrderedDict[int, tuple[bytes, int]] = OrderedDict()
            self.compressor_options: bytes | None = None
            if self.superblock.flags & fmt.FLAG_COMPRESSOR_OPTIONS:
                (word,) = fmt.U16.unpack(self._pread(fmt.SUPERBLOCK_SIZE, 2, "compressor options"))
                size = word & ~fmt.METADATA_UNCOMPRESSED
                if not word & fmt.METADATA_UNCOMPRESSED or not 0 < size <= 64:
                    raise self._err(f"compressor options at offset {fmt.SUPERBLOCK_SIZE} have a bad header {word:#06x}")
                self.compressor_options = self._pread(fmt.SUPERBLOCK_SIZE + 2, size, "compressor options")
            self.codec: Codec = codec_for_image(
                self.superblock.compression, self.superblock.block_size, self.compressor_options, self.name
            )
            self._ids: list[int] | None = None
            self._frag_cache: tuple[int, bytes] | None = None
            self._last_inode: Inode | None = None  # hard links listed together parse once
            self._table_bounds()
        except BaseException:
            self.close()  # a refused image does not leak the file this object opened
            raise

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if self._owns:
            self._fh.close()

    def __enter__(self) -> "SquashfsImage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------- checks
    def _err(self, message: str) -> SquashfsError:
        return SquashfsError(f"{self.name}: {message}")

    def _check_superblock(self) -> None:
        sb = self.superblock
        if (sb.version_major, sb.version_minor) != (fmt.VERSION_MAJOR, fmt.VERSION_MINOR):
            raise self._err(f"squashfs version {sb.version_major}.{sb.version_minor} is not supported (4.0 is)")
        if not fmt.MIN_BLOCK_LOG <= sb.block_log <= fmt.MAX_BLOCK_LOG or sb.block_size != 1 << sb.block_log:
            raise self._err(f"bad block size {sb.block_size} (log {sb.block_log}) in superblock")
        if sb.bytes_used > self.file_size:
            raise self._err(f"truncated: superblock says {sb.bytes_used} bytes, file has {self.file_size}")
        if sb.bytes_used < fmt.SUPERBLOCK_SIZE:
            raise self._err(f"superblock size field {sb.bytes_used} is smaller than the superblock")
        if sb.inode_count == 0:
            raise self._err("superblock says the image has no inodes")
        for label, value in (("inode table", sb.inode_table), ("directory table", sb.directory_table), ("id table", sb.id_table)):
            if not fmt.SUPERBLOCK_SIZE <= value < sb.bytes_used:
                raise self._err(f"{label} offset {value} lies outside the image (size {sb.bytes_used})")
        if sb.inode_table >= sb.directory_table:
            raise self._err(f"inode table ({sb.inode_table}) does not precede directory table ({sb.directory_table})")
        if sb.id_count == 0:
            raise self._err("superblock says the image has no uid/gid table entries")

    def _table_bounds(self) -> None:
        """Find where the directory table ends: at the first block of the next table."""
        sb = self.superblock
        ends = [sb.bytes_used]
        self._xattr_kv_start: int | None = None
        self._xattr_count = 0
        if sb.xattr_id_table != fmt.NO_TABLE:
            if not sb.directory_table < sb.xattr_id_table <= sb.bytes_used - fmt.XATTR_ID_TABLE.size:
                raise self._err(f"xattr id table offset {sb.xattr_id_table} lies outside the image")
            kv, count, _ = fmt.XATTR_ID_TABLE.unpack(self._pread(sb.xattr_id_table, fmt.XATTR_ID_TABLE.size, "xattr id table"))
            if not sb.directory_table <= kv <= sb.xattr_id_table:
                raise self._err(f"xattr table offset {kv} lies outside the image")
            self._xattr_kv_start, self._xattr_count = kv, count
            self._xattr_index = self._read_index(sb.xattr_id_table + fmt.XATTR_ID_TABLE.size, count, fmt.XATTR_ID.size, "xattr id")
            ends.append(kv)
        self._id_index = self._read_index(sb.id_table, sb.id_count, 4, "id")
        ends.extend(self._id_index[:1])
        self._export_index: list[int] = []
        if sb.export_table != fmt.NO_TABLE:
            self._export_index = self._read_index(sb.export_table, sb.inode_count, 8, "export")
            ends.extend(self._export_index[:1])
        self._fragment_index: list[int] = []
        if sb.fragment_count:
            self._fragment_index = self._read_index(sb.fragment_table, sb.fragment_count, fmt.FRAGMENT_ENTRY.size, "fragment")
            ends.extend(self._fragment_index[:1])
        self._directory_end = min(ends)
        if self._directory_end < sb.directory_table:
            raise self._err(f"directory table ({sb.directory_table}) starts after the next table ({self._directory_end})")

    def _read_index(self, start: int, count: int, entry_size: int, label: str) -> list[int]:
        blocks = -(-count * entry_size // fmt.METADATA_SIZE)
        if start + blocks * 8 > self.superblock.bytes_used or start < fmt.SUPERBLOCK_SIZE:
            raise self._err(f"{label} table index at {start} ({blocks} entries) lies outside the image")
        raw = self._pread(start, blocks * 8, f"{label} table index")
        index = list(struct.unpack(f"<{blocks}Q", raw))
        for pos in index:
            if not fmt.SUPERBLOCK_SIZE <= pos < start:
                raise self._err(f"{label} table block pointer {pos} lies outside the table (before {start})")
        return index

    # ------------------------------------------------------------ raw reads
    def _pread(self, offset: int, size: int, what: str, short_ok: bool = False) -> bytes:
        if offset < 0 or size < 0 or offset + size > self.file_size:
            if short_ok and offset == 0:
                size = min(size, self.file_size)
            else:
                raise self._err(f"{what} at offset {offset} (+{size}) lies outside the image (size {self.file_size})")
        self._fh.seek(offset)
        data = self._fh.read(size)
        if len(data) != size:
            raise self._err(f"short read of {what} at offset {offset}")
        return data

    def _read_metadata_block(self, pos: int, what: str) -> tuple[bytes, int]:
        """(uncompressed bytes, position of the next block) of the metadata block at ``pos``."""
        hit = self._cache.get(pos)
        if hit is not None:
            self._cache.move_to_end(pos)
            return hit
        if pos + 2 > self.superblock.bytes_used:
            raise self._err(f"{what}: metadata block at offset {pos} lies outside the image")
        (word,) = fmt.U16.unpack(self._pread(pos, 2, what))
        size = word & ~fmt.METADATA_UNCOMPRESSED
        if size == 0 or size > fmt.METADATA_SIZE:
            raise self._err(f"{what}: metadata block at offset {pos} has bad size {size}")
        if pos + 2 + size > self.superblock.bytes_used:
            raise self._err(f"{what}: metadata block at offset {pos} (+{size}) runs past the end of the image")
        raw = self._pread(pos + 2, size, what)
        if word & fmt.METADATA_UNCOMPRESSED:
            data = raw
        else:
            try:
                data = self.codec.decompress(raw, fmt.METADATA_SIZE)
            except CodecError as exc:
                raise self._err(f"{what}: metadata block at offset {pos}: {exc}") from None
        result = (data, pos + 2 + size)
        self._cache[pos] = result
        if len(self._cache) > _CACHE_BLOCKS:
            self._cache.popitem(last=False)
        return result

    def _stream(self, table: int, block: int, offset: int, what: str, limit: int | None = None) -> "_MetaStream":
        return _MetaStream(self, table + block, offset, what, limit)

    # --------------------------------------------------------------- tables
    def _table_entry(self, index: list[int], n: int, entry_size: int, what: str) -> bytes:
        per_block = fmt.METADATA_SIZE // entry_size
        block = index[n // per_block]
        data, _ = self._read_metadata_block(block, what)
        off = (n % per_block) * entry_size
        if off + entry_size > len(data):
            raise self._err(f"{what} entry {n} lies past the end of its metadata block at {block}")
        return data[off : off + entry_size]

    def id(self, index: int) -> int:
        if not 0 <= index < self.superblock.id_count:
            raise self._err(f"uid/gid index {index} is out of range (the id table has {self.superblock.id_count})")
        return fmt.U32.unpack(self._table_entry(self._id_index, index, 4, "id table"))[0]

    def fragment_entry(self, index: int) -> tuple[int, int]:
        """(start offset, size word) of fragment block ``index``."""
        if not 0 <= index < self.superblock.fragment_count:
            raise self._err(f"fragment index {index} is out of range (the image has {self.superblock.fragment_count})")
        start, word, _ = fmt.FRAGMENT_ENTRY.unpack(self._table_entry(self._fragment_index, index, 16, "fragment table"))
        return start, word

    # --------------------------------------------------------------- inodes
    @property
    def root_ref(self) -> int:
        return self.superblock.root_inode

    @property
    def root(self) -> Inode:
        return self.inode(self.superblock.root_inode)

    def inode(self, ref: int) -> Inode:
        last = self._last_inode
        if last is not None and last.ref == ref:
            return last
        self._last_inode = self._parse_inode(ref)
        return self._last_inode

    def _parse_inode(self, ref: int) -> Inode:
        block, offset = fmt.split_ref(ref)
        if offset >= fmt.METADATA_SIZE:
            raise self._err(f"inode reference {ref:#x} has offset {offset} past a metadata block")
        s = self._stream(self.superblock.inode_table, block, offset, f"inode {ref:#x}", self.superblock.directory_table)
        itype, perm, uid_i, gid_i, mtime, number = fmt.INODE_HEADER.unpack(s.read(fmt.INODE_HEADER.size))
        if not 1 <= itype <= fmt.T_LSOCKET:
            raise self._err(f"inode {ref:#x} has unknown type {itype}")
        if not 1 <= number <= self.superblock.inode_count:
            raise self._err(f"inode {ref:#x} has number {number}, outside 1..{self.superblock.inode_count}")
        basic = itype - fmt.EXTENDED_OFFSET if itype > fmt.T_SOCKET else itype
        common = dict(
            ref=ref,
            type=itype,
            mode=_S_IFMT[basic] | (perm & 0o7777),
            uid=self.id(uid_i),
            gid=self.id(gid_i),
            mtime=mtime,
            number=number,
        )
        if itype == fmt.T_DIR:
            start, nlink, size, off, parent = fmt.DIR_INODE.unpack(s.read(fmt.DIR_INODE.size))
            return Inode(nlink=nlink, size=size, dir_block=start, dir_offset=off, parent=parent, **common)
        if itype == fmt.T_LDIR:
            nlink, size, start, parent, icount, off, xattr = fmt.LDIR_INODE.unpack(s.read(fmt.LDIR_INODE.size))
            return Inode(nlink=nlink, size=size, dir_block=start, dir_offset=off, parent=parent, index_count=icount, xattr=xattr, **common)
        if itype in (fmt.T_FILE, fmt.T_LFILE):
            if itype == fmt.T_FILE:
                start, frag, foff, size = fmt.FILE_INODE.unpack(s.read(fmt.FILE_INODE.size))
                nlink, sparse, xattr = 1, 0, fmt.INVALID_XATTR
            else:
                start, size, sparse, nlink, frag, foff, xattr = fmt.LFILE_INODE.unpack(s.read(fmt.LFILE_INODE.size))
            bs = self.superblock.block_size
            count = size // bs if frag != fmt.INVALID_FRAGMENT else -(-size // bs)
            # Each metadata block holds at most 8 KiB and takes at least 3 bytes of the table.
            capacity = (self.superblock.directory_table - self.superblock.inode_table) // 3 * fmt.METADATA_SIZE
            if count * 4 > capacity:
                raise self._err(f"inode {number}: file size {size} needs {count} block pointers, more than the inode table can hold")
            sizes = struct.unpack(f"<{count}I", s.read(count * 4)) if count else ()
            return Inode(
                nlink=nlink, size=size, blocks_start=start, block_sizes=sizes, fragment=frag,
                fragment_offset=foff, sparse=sparse, xattr=xattr, **common,
            )
        if itype in (fmt.T_SYMLINK, fmt.T_LSYMLINK):
            nlink, tsize = fmt.SYMLINK_INODE.unpack(s.read(fmt.SYMLINK_INODE.size))
            if tsize > _MAX_SYMLINK:
                raise self._err(f"inode {number}: symlink target length {tsize} is absurd")
            target = s.read(tsize).decode("utf-8", "surrogateescape")
            xattr = fmt.U32.unpack(s.read(4))[0] if itype == fmt.T_LSYMLINK else fmt.INVALID_XATTR
            return Inode(nlink=nlink, size=tsize, target=target, xattr=xattr, **common)
        if basic in (fmt.T_BLKDEV, fmt.T_CHRDEV):
            if itype > fmt.T_SOCKET:
                nlink, rdev, xattr = fmt.LDEV_INODE.unpack(s.read(fmt.LDEV_INODE.size))
            else:
                (nlink, rdev), xattr = fmt.DEV_INODE.unpack(s.read(fmt.DEV_INODE.size)), fmt.INVALID_XATTR
            return Inode(nlink=nlink, size=0, rdev=rdev, xattr=xattr, **common)
        if itype > fmt.T_SOCKET:
            nlink, xattr = fmt.LIPC_INODE.unpack(s.read(fmt.LIPC_INODE.size))
        else:
            (nlink,), xattr = fmt.IPC_INODE.unpack(s.read(fmt.IPC_INODE.size)), fmt.INVALID_XATTR
        return Inode(nlink=nlink, size=0, xattr=xattr, **common)

    # ---------------------------------------------------------- directories
    def listdir(self, inode: Inode) -> list[DirEntry]:
        if not inode.is_dir:
            raise self._err(f"inode {inode.number} is not a directory")
        if inode.size < 3:
            raise self._err(f"directory inode {inode.number} has impossible size {inode.size}")
        remaining = inode.size - 3
        if inode.dir_offset >= fmt.METADATA_SIZE:
            raise self._err(f"directory inode {inode.number} has listing offset {inode.dir_offset} past a metadata block")
        s = self._stream(self.superblock.directory_table, inode.dir_block, inode.dir_offset, f"directory inode {inode.number}", self._directory_end)
        entries: list[DirEntry] = []
        while remaining > 0:
            if remaining < fmt.DIR_HEADER.size:
                raise self._err(f"directory inode {inode.number}: listing ends inside a header")
            count, start, base = fmt.DIR_HEADER.unpack(s.read(fmt.DIR_HEADER.size))
            remaining -= fmt.DIR_HEADER.size
            if count >= fmt.DIR_HEADER_MAX_ENTRIES:
                raise self._err(f"directory inode {inode.number}: header claims {count + 1} entries (at most 256)")
            for _ in range(count + 1):
                if remaining < fmt.DIR_ENTRY.size:
                    raise self._err(f"directory inode {inode.number}: listing ends inside an entry")
                offset, delta, etype, nsize = fmt.DIR_ENTRY.unpack(s.read(fmt.DIR_ENTRY.size))
                remaining -= fmt.DIR_ENTRY.size + nsize + 1
                if remaining < 0:
                    raise self._err(f"directory inode {inode.number}: entry name runs past the listing")
                raw = s.read(nsize + 1)
                if b"/" in raw or b"\0" in raw or raw in (b".", b".."):
                    raise self._err(f"directory inode {inode.number}: invalid entry name {raw[:64]!r}")
                if not 1 <= etype <= fmt.T_SOCKET:
                    raise self._err(f"directory inode {inode.number}: entry {raw[:64]!r} has unknown type {etype}")
                if offset >= fmt.METADATA_SIZE:
                    raise self._err(f"directory inode {inode.number}: entry {raw[:64]!r} has inode offset {offset}")
                entries.append(DirEntry(raw.decode("utf-8", "surrogateescape"), fmt.inode_ref(start, offset), base + delta, etype))
        return entries

    def lookup(self, path: str) -> Inode:
        node = self.root
        for part in [p for p in path.split("/") if p and p != "."]:
            if not node.is_dir:
                raise self._err(f"{path}: {part!r} is inside a non-directory")
            for entry in self.listdir(node):
                if entry.name == part:
                    node = self.inode(entry.inode_ref)
                    break
            else:
                raise self._err(f"{path}: no such file in the image")
        return node

    def walk(self) -> Iterator[tuple[str, Inode]]:
        """Every (path, inode) in directory order, pre-order; the root is ''.

        Refuses directory loops and directories reachable by two paths.
        """
        root = self.root
        if not root.is_dir:
            raise self._err("the root inode is not a directory")
        seen_dirs = {root.ref}
        yield "", root
        # entries, not inodes, wait on the stack: a directory of hard links to one huge sparse
        # file holds one parsed inode at a time, not one per name
        stack: list[tuple[str, DirEntry]] = []

        def push(path: str, inode: Inode) -> None:
            entries = self.listdir(inode)
            stack.extend((f"{path}/{e.name}" if path else e.name, e) for e in reversed(entries))

        push("", root)
        while stack:
            path, entry = stack.pop()
            inode = self.inode(entry.inode_ref)
            if inode.basic_type != entry.type:
                raise self._err(f"{path}: directory entry type {entry.type} does not match inode type {inode.type}")
            if inode.is_dir:
                if inode.ref in seen_dirs:
                    raise self._err(f"{path}: directory loop (inode {inode.number} reached twice)")
                seen_dirs.add(inode.ref)
            yield path, inode
            if inode.is_dir:
                push(path, inode)

    # --------------------------------------------------------------- content
    def iter_file(self, inode: Inode) -> Iterator[bytes]:
        """A regular file's content block by block (holes come back as zeros)."""
        if not inode.is_file:
            raise self._err(f"inode {inode.number} is not a regular file")
        bs = self.superblock.block_size
        remaining = inode.size
        pos = inode.blocks_start
        for i, word in enumerate(inode.block_sizes):
            want = min(bs, remaining)
            stored = word & fmt.DATA_SIZE_MASK
            if stored == 0:
                yield bytes(want)
            else:
                yield self._data_block(pos, word, want, f"inode {inode.number} block {i}")
                pos += stored
            remaining -= want
        if remaining > 0:
            if inode.fragment == fmt.INVALID_FRAGMENT:
                raise self._err(f"inode {inode.number}: {remaining} bytes of file size are not covered by blocks")
            block = self._fragment_block(inode.fragment)
            end = inode.fragment_offset + remaining
            if end > len(block):
                raise self._err(f"inode {inode.number}: fragment {inode.fragment} range {inode.fragment_offset}+{remaining} exceeds the fragment ({len(block)} bytes)")
            yield block[inode.fragment_offset : end]

    def read_file(self, inode: Inode) -> bytes:
        return b"".join(self.iter_file(inode))

    def _data_block(self, pos: int, word: int, want: int, what: str) -> bytes:
        stored = word & fmt.DATA_SIZE_MASK
        if stored > self.superblock.block_size:
            raise self._err(f"{what}: stored size {stored} exceeds the block size")
        if pos < fmt.SUPERBLOCK_SIZE or pos + stored > self.superblock.bytes_used:
            raise self._err(f"{what}: data at offset {pos} (+{stored}) lies outside the image")
        raw = self._pread(pos, stored, what)
        if word & fmt.DATA_UNCOMPRESSED:
            data = raw
        else:
            try:
                data = self.codec.decompress(raw, self.superblock.block_size)
            except CodecError as exc:
                raise self._err(f"{what} at offset {pos}: {exc}") from None
        if want >= 0 and len(data) != want:
            raise self._err(f"{what} at offset {pos}: holds {len(data)} bytes, expected {want}")
        return data

    def _fragment_block(self, index: int) -> bytes:
        if self._frag_cache is not None and self._frag_cache[0] == index:
            return self._frag_cache[1]
        start, word = self.fragment_entry(index)
        data = self._data_block(start, word, -1, f"fragment {index}")
        self._frag_cache = (index, data)
        return data

    def readlink(self, inode: Inode) -> str:
        if not inode.is_symlink:
            raise self._err(f"inode {inode.number} is not a symlink")
        return inode.target

    def xattrs(self, inode: Inode) -> list[tuple[str, bytes]]:
        if inode.xattr == fmt.INVALID_XATTR:
            return []
        if self._xattr_kv_start is None or not 0 <= inode.xattr < self._xattr_count:
            raise self._err(f"inode {inode.number}: xattr index {inode.xattr} is out of range")
        ref, count, _ = fmt.XATTR_ID.unpack(self._table_entry(self._xattr_index, inode.xattr, fmt.XATTR_ID.size, "xattr id table"))
        block, offset = fmt.split_ref(ref)
        xend = self._xattr_index[0] if self._xattr_index else self.superblock.xattr_id_table
        s = self._stream(self._xattr_kv_start, block, offset, f"xattrs of inode {inode.number}", xend)
        out = []
        for _ in range(min(count, 65536)):
            xtype, nsize = fmt.XATTR_KEY.unpack(s.read(fmt.XATTR_KEY.size))
            name = s.read(nsize)
            prefix = fmt.XATTR_PREFIXES.get(xtype & ~fmt.XATTR_VALUE_OOL)
            if prefix is None:
                raise self._err(f"inode {inode.number}: unknown xattr type {xtype}")
            (vsize,) = fmt.U32.unpack(s.read(4))
            if xtype & fmt.XATTR_VALUE_OOL:
                if vsize != 8:
                    raise self._err(f"inode {inode.number}: out-of-line xattr reference has size {vsize}")
                (vref,) = fmt.U64.unpack(s.read(8))
                vb, vo = fmt.split_ref(vref)
                vs = self._stream(self._xattr_kv_start, vb, vo, f"xattr value of inode {inode.number}", xend)
                (vsize,) = fmt.U32.unpack(vs.read(4))
                if vsize > _MAX_XATTR_VALUE:
                    raise self._err(f"inode {inode.number}: xattr value size {vsize} is absurd")
                value = vs.read(vsize)
            else:
                if vsize > _MAX_XATTR_VALUE:
                    raise self._err(f"inode {inode.number}: xattr value size {vsize} is absurd")
                value = s.read(vsize)
            out.append((prefix + name.decode("utf-8", "surrogateescape"), value))
        return out

    # ---------------------------------------------------------------- layout
    def layout(self) -> ImageLayout:
        """Where every data block, fragment block, metadata block and table is."""
        sb = self.superblock
        opts = None
        data_start = fmt.SUPERBLOCK_SIZE
        if self.compressor_options is not None:
            opts = (fmt.SUPERBLOCK_SIZE, 2 + len(self.compressor_options))
            data_start += opts[1]
        lay = ImageLayout(
            size=sb.bytes_used, superblock=(0, fmt.SUPERBLOCK_SIZE), compressor_options=opts,
            data=(data_start, sb.inode_table),
        )
        bs = sb.block_size
        data_bytes = sb.inode_table - data_start
        if sb.fragment_count > data_bytes:
            raise self._err(f"the fragment table lists {sb.fragment_count} fragment blocks; the data area holds {data_bytes} bytes")
        seen_files: set[int] = set()
        total = 0
        for path, inode in self.walk():
            if not inode.is_file or inode.ref in seen_files:
                continue
            seen_files.add(inode.ref)
            total += len(inode.block_sizes)
            if total > MAX_LAYOUT_BLOCKS:
                raise self._err(f"{path}: the image has more than {MAX_LAYOUT_BLOCKS} block pointers ({total * bs} bytes of file data declared so far)")
            blocks, remaining = self._block_locations(inode)
            frag = inode.fragment if inode.fragment != fmt.INVALID_FRAGMENT else None
            lay.files.append(FileLayout(path, inode.number, inode.size, blocks, frag, inode.fragment_offset, remaining if frag is not None else 0))
        for i in range(sb.fragment_count):
            start, word = self.fragment_entry(i)
            stored = word & fmt.DATA_SIZE_MASK
            lay.fragments.append(BlockLocation(start, stored, not word & fmt.DATA_UNCOMPRESSED))
        lay.tables.append(self._chain("inode table", sb.inode_table, sb.directory_table))
        lay.tables.append(self._chain("directory table", sb.directory_table, self._directory_end))
        if self._fragment_index:
            lay.tables.append(self._lookup_table("fragment table", self._fragment_index, sb.fragment_table, sb.fragment_count * 16))
        if self._export_index:
            lay.tables.append(self._lookup_table("export table", self._export_index, sb.export_table, sb.inode_count * 8))
        lay.tables.append(self._lookup_table("id table", self._id_index, sb.id_table, sb.id_count * 4))
        if self._xattr_kv_start is not None:
            first_id = self._xattr_index[0] if self._xattr_index else sb.xattr_id_table
            lay.tables.append(self._chain("xattr table", self._xattr_kv_start, first_id))
            t = self._lookup_table("xattr id table", self._xattr_index, sb.xattr_id_table + fmt.XATTR_ID_TABLE.size, self._xattr_count * 16)
            lay.tables.append(TableLayout(t.name, t.start if self._xattr_index else sb.xattr_id_table, t.end, t.metadata_blocks, sb.xattr_id_table))
        return lay

    def _block_locations(self, inode: Inode) -> tuple[tuple[BlockLocation, ...], int]:
        """Where each block of a file is, and the bytes left for its fragment. A run of holes shares
        one object (they share an offset): a file may declare millions of them."""
        bs = self.superblock.block_size
        remaining = inode.size

        def locations() -> Iterator[BlockLocation]:
            nonlocal remaining
            pos = inode.blocks_start
            hole: BlockLocation | None = None
            for word in inode.block_sizes:
                stored = word & fmt.DATA_SIZE_MASK
                want = min(bs, remaining)
                remaining -= want
                if not stored:
                    if hole is None or hole.offset != pos:
                        hole = BlockLocation(pos, 0, False, 0)
                    yield hole
                    continue
                yield BlockLocation(pos, stored, not word & fmt.DATA_UNCOMPRESSED, want)
                pos += stored

        blocks = tuple(locations())  # built in place: no list of millions beside it
        return blocks, remaining

    def _chain(self, name: str, start: int, end: int) -> TableLayout:
        blocks = []
        pos = start
        while pos < end:
            data, nxt = self._read_metadata_block(pos, name)
            blocks.append(BlockLocation(pos, nxt - pos - 2, not fmt.U16.unpack(self._pread(pos, 2, name))[0] & fmt.METADATA_UNCOMPRESSED, len(data)))
            pos = nxt
        if pos != end:
            raise self._err(f"{name}: metadata blocks run past its end at {end}")
        return TableLayout(name, start, end, tuple(blocks))

    def _lookup_table(self, name: str, index: list[int], index_pos: int, raw_size: int) -> TableLayout:
        blocks = []
        for pos in index:
            data, nxt = self._read_metadata_block(pos, name)
            blocks.append(BlockLocation(pos, nxt - pos - 2, not fmt.U16.unpack(self._pread(pos, 2, name))[0] & fmt.METADATA_UNCOMPRESSED, len(data)))
        start = index[0] if index else index_pos
        return TableLayout(name, start, index_pos + len(index) * 8, tuple(blocks), index_pos)


class _MetaStream:
    """Sequential reads across chained metadata blocks, bounded by a table end."""

    def __init__(self, image: SquashfsImage, pos: int, offset: int, what: str, limit: int | None) -> None:
        self.img = image
        self.what = what
        self.limit = limit if limit is not None else image.superblock.bytes_used
        self.pos = pos
        self.data = b""
        self.next = pos  # the first block is loaded on the first read (an empty listing reads nothing)
        self.off = offset
        self._started = False

    def _load(self, pos: int) -> tuple[bytes, int]:
        if pos >= self.limit:
            raise self.img._err(f"{self.what}: runs past the end of its table (offset {pos})")
        return self.img._read_metadata_block(pos, self.what)

    def read(self, n: int) -> bytes:
        if not self._started:
            self._started = True
            self.data, self.next = self._load(self.pos)
            if self.off > len(self.data):
                raise self.img._err(f"{self.what}: offset {self.off} lies past the end of the metadata block at {self.pos}")
        if self.off + n <= len(self.data):
            out = self.data[self.off : self.off + n]
            self.off += n
            return out
        parts = []
        while n > 0:
            if self.off >= len(self.data):
                self.pos = self.next
                self.data, self.next = self._load(self.pos)
                self.off = 0
            take = min(n, len(self.data) - self.off)
            parts.append(self.data[self.off : self.off + take])
            self.off += take
            n -= take
        return b"".join(parts)


def mode_string(mode: int) -> str:
    """``ls -l`` style mode string, as unsquashfs prints it."""
    return stat.filemode(mode)
