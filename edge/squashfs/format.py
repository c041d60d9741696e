"""Squashfs 4.0 on-disk constants and fixed-size structures (little endian).

Reference: the Linux kernel's ``fs/squashfs/squashfs_fs.h`` and
squashfs-tools.  Only what both the writer and the reader need lives here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import SquashfsError

MAGIC = 0x73717368  # "hsqs" read little endian
VERSION_MAJOR = 4
VERSION_MINOR = 0

SUPERBLOCK_SIZE = 96
METADATA_SIZE = 8192  # uncompressed size of a metadata block
METADATA_UNCOMPRESSED = 0x8000  # bit in the 2-byte metadata block header
DATA_UNCOMPRESSED = 1 << 24  # bit in a data/fragment block size word
DATA_SIZE_MASK = DATA_UNCOMPRESSED - 1
INVALID_FRAGMENT = 0xFFFFFFFF
INVALID_XATTR = 0xFFFFFFFF
NO_TABLE = 0xFFFFFFFFFFFFFFFF
MIN_BLOCK_LOG = 12  # 4 KiB
MAX_BLOCK_LOG = 20  # 1 MiB
DIR_HEADER_MAX_ENTRIES = 256
MAX_NAME = 256
PAD_TO = 4096

# superblock flags
FLAG_UNCOMPRESSED_INODES = 0x0001
FLAG_UNCOMPRESSED_DATA = 0x0002
FLAG_CHECK = 0x0004
FLAG_UNCOMPRESSED_FRAGMENTS = 0x0008
FLAG_NO_FRAGMENTS = 0x0010
FLAG_ALWAYS_FRAGMENTS = 0x0020
FLAG_DUPLICATES = 0x0040
FLAG_EXPORTABLE = 0x0080
FLAG_UNCOMPRESSED_XATTRS = 0x0100
FLAG_NO_XATTRS = 0x0200
FLAG_COMPRESSOR_OPTIONS = 0x0400
FLAG_UNCOMPRESSED_IDS = 0x0800

# compression ids
COMP_GZIP = 1
COMP_LZMA = 2
COMP_LZO = 3
COMP_XZ = 4
COMP_LZ4 = 5
COMP_ZSTD = 6
COMPRESSOR_NAMES = {
    COMP_GZIP: "gzip",
    COMP_LZMA: "lzma",
    COMP_LZO: "lzo",
    COMP_XZ: "xz",
    COMP_LZ4: "lz4",
    COMP_ZSTD: "zstd",
}

# inode types
T_DIR = 1
T_FILE = 2
T_SYMLINK = 3
T_BLKDEV = 4
T_CHRDEV = 5
T_FIFO = 6
T_SOCKET = 7
T_LDIR = 8
T_LFILE = 9
T_LSYMLINK = 10
T_LBLKDEV = 11
T_LCHRDEV = 12
T_LFIFO = 13
T_LSOCKET = 14
EXTENDED_OFFSET = 7  # extended type = basic type + 7

# xattr name prefixes (type field of an xattr key)
XATTR_USER = 0
XATTR_TRUSTED = 1
XATTR_SECURITY = 2
XATTR_VALUE_OOL = 0x100
XATTR_PREFIXES = {XATTR_USER: "user.", XATTR_TRUSTED: "trusted.", XATTR_SECURITY: "security."}

SUPERBLOCK = struct.Struct("<IIIIIHHHHHHQQQQQQQQ")
INODE_HEADER = struct.Struct("<HHHHII")  # type, mode, uid idx, gid idx, mtime, inode number
DIR_INODE = struct.Struct("<IIHHI")  # start block, nlink, file size, offset, parent
LDIR_INODE = struct.Struct("<IIIIHHI")  # nlink, file size, start, parent, index count, offset, xattr
DIR_INDEX = struct.Struct("<III")  # index, start, name size - 1
FILE_INODE = struct.Struct("<IIII")  # blocks start, fragment, fragment offset, file size
LFILE_INODE = struct.Struct("<QQQIIII")  # blocks start, size, sparse, nlink, frag, offset, xattr
SYMLINK_INODE = struct.Struct("<II")  # nlink, target size
DEV_INODE = struct.Struct("<II")  # nlink, rdev
LDEV_INODE = struct.Struct("<III")  # nlink, rdev, xattr
IPC_INODE = struct.Struct("<I")  # nlink
LIPC_INODE = struct.Struct("<II")  # nlink, xattr
DIR_HEADER = struct.Struct("<III")  # count - 1, start block, inode number
DIR_ENTRY = struct.Struct("<HhHH")  # offset, inode number delta, type, name size - 1
FRAGMENT_ENTRY = struct.Struct("<QII")  # start, size word, unused
XATTR_ID_TABLE = struct.Struct("<QII")  # kv table start, count, unused
XATTR_ID = struct.Struct("<QII")  # kv ref, count, size
XATTR_KEY = struct.Struct("<HH")  # type, name size
U16 = struct.Struct("<H")
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")


@dataclass(frozen=True, slots=True)
class Superblock:
    inode_count: int
    mkfs_time: int
    block_size: int
    fragment_count: int
    compression: int
    block_log: int
    flags: int
    id_count: int
    version_major: int
    version_minor: int
    root_inode: int
    bytes_used: int
    id_table: int
    xattr_id_table: int
    inode_table: int
    directory_table: int
    fragment_table: int
    export_table: int

    def pack(self) -> bytes:
        return SUPERBLOCK.pack(
            MAGIC,
            self.inode_count,
            self.mkfs_time,
            self.block_size,
            self.fragment_count,
            self.compression,
            self.block_log,
            self.flags,
            self.id_count,
            self.version_major,
            self.version_minor,
            self.root_inode,
            self.bytes_used,
            self.id_table,
            self.xattr_id_table,
            self.inode_table,
            self.directory_table,
            self.fragment_table,
            self.export_table,
        )

    @classmethod
    def unpack(cls, data: bytes, name: str = "image") -> "Superblock":
        if len(data) < 4 or U32.unpack_from(data)[0] != MAGIC:
            shown = data[:4].hex() or "empty file"
            raise SquashfsError(f"{name}: not a squashfs image (magic at offset 0 is {shown}, expected 68737173)")
        if len(data) < SUPERBLOCK_SIZE:
            raise SquashfsError(f"{name}: truncated superblock ({len(data)} of {SUPERBLOCK_SIZE} bytes)")
        _, *fields = SUPERBLOCK.unpack_from(data)
        return cls(*fields)

    @property
    def compressor_name(self) -> str:
        return COMPRESSOR_NAMES.get(self.compression, f"unknown({self.compression})")


def encode_rdev(major: int, minor: int) -> int:
    """Encode a device number the way the kernel's ``new_encode_dev`` does."""
    return (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)


def decode_rdev(rdev: int) -> tuple[int, int]:
    """Decode a device number the way the kernel's ``new_decode_dev`` does."""
    major = (rdev & 0xFFF00) >> 8
    minor = (rdev & 0xFF) | ((rdev >> 12) & 0xFFF00)
    return major, minor


def inode_ref(block: int, offset: int) -> int:
    return (block << 16) | offset


def split_ref(ref: int) -> tuple[int, int]:
    return ref >> 16, ref & 0xFFFF
