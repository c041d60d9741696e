"""Whether two paths name the same storage, under any name.

A delta is written over the inactive slot while the active one is read; if the
two are the same bytes under different names — another device node for one
device, a loop device and its backing file (even one deleted since), two loop
devices over one file, partitions of two loop devices over one disk image, a
device-mapper device and the partition under it, a whole disk and one of its
partitions, a block device and a file on a filesystem it holds — writing one
destroys the other.

Every path is resolved to byte ranges of the storage at the bottom: a regular
file (by device and inode) or a disk that maps to nothing else. A partition is
a window of its disk, a loop device a window of its backing file (asked of the
kernel, so a deleted or renamed backing file still counts), a device-mapper or
md device all of its members (their tables are not parsed, so two volumes on
one partition count as overlapping). Two paths overlap when their ranges meet,
or when one is a file and the other holds the filesystem it lives on.
``mounted_in`` uses the same ranges to find a mounted filesystem stored in a
path about to be written, and ``busy_loop_over`` a loop device over it that
something holds (a mount in another namespace included).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
import struct

Id = tuple[str, int, int]
Extent = tuple[Id, int, int]  # storage, first byte, one past the last
END = 1 << 63
_ANY: Id = ("unknown", 0, 0)  # a loop device whose backing storage cannot be told: meets everything
_ANY_EXTENT: Extent = (_ANY, 0, END)
_LOOP_GET_STATUS64 = 0x4C05
# struct loop_info64: device, inode, rdevice, offset, sizelimit (u64); number, encrypt type, key size,
# flags (u32); file name, crypt name (64 bytes), key (32 bytes); init (2 x u64)
_LOOP_INFO64 = struct.Struct("<QQQQQIIII64s64s32sQQ")


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def _dev_of(name: str) -> tuple[int, int] | None:
    text = _read(f"/sys/class/block/{name}/dev")
    if not text or ":" not in text:
        return None
    major, minor = text.split(":", 1)
    return int(major), int(minor)


def _decode_dev(huge: int) -> tuple[int, int]:
    """The kernel's 32-bit device encoding (loop_info64) as (major, minor)."""
    return (huge & 0xFFF00) >> 8, (huge & 0xFF) | ((huge >> 12) & 0xFFF00)


def _node(major: int, minor: int) -> str | None:
    """A device node for ``major:minor``, to ask the kernel about it."""
    uevent = _read(f"/sys/dev/block/{major}:{minor}/uevent") or ""
    names = [line[len("DEVNAME="):] for line in uevent.splitlines() if line.startswith("DEVNAME=")]
    for path in (f"/dev/block/{major}:{minor}", *(f"/dev/{n}" for n in names)):
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISBLK(st.st_mode) and st.st_rdev == os.makedev(major, minor):
            return path
    return None


def _loop_backing(major: int, minor: int) -> tuple[int, int, int, int, int] | None:
    """(backing st_dev, st_ino, st_rdev, offset, size limit) of a bound loop device; None when the
    device is not a bound loop device. Raises LookupError when it is one but its backing is unknown."""
    sysdir = f"/sys/dev/block/{major}:{minor}/loop"
    if not os.path.isdir(sysdir):
        return None
    node = _node(major, minor)
    if node is not None:
        try:
            fd = os.open(node, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                raw = fcntl.ioctl(fd, _LOOP_GET_STATUS64, bytes(_LOOP_INFO64.size))
                dev, ino, rdev, offset, limit = _LOOP_INFO64.unpack(raw)[:5]
                return os.makedev(*_decode_dev(dev)), ino, os.makedev(*_decode_dev(rdev)) if rdev else 0, offset, limit
            except OSError:
                pass  # ENXIO: not bound to anything; or no permission: try sysfs below
            finally:
                os.close(fd)
    backing = _read(f"{sysdir}/backing_file")
    if not backing:
        return None
    try:
        st = os.stat(backing)
    except OSError:
        raise LookupError(backing) from None
    rdev = st.st_rdev if stat.S_ISBLK(st.st_mode) else 0
    return st.st_dev, st.st_ino, rdev, _int(_read(f"{sysdir}/offset")) or 0, _int(_read(f"{sysdir}/sizelimit")) or 0


def _window(base: list[Extent], start: int, length: int) -> list[Extent]:
    """Bytes [start, start + length) of what ``base`` stands for (kept whole when it is several pieces)."""
    if len(base) != 1:
        return base
    ident, lo, hi = base[0]
    if ident == _ANY:
        return base
    new_lo = lo + start
    return [(ident, new_lo, min(hi, new_lo + length) if length < END else hi)]


def _block(major: int, minor: int, containers: list[Extent], depth: int = 0) -> list[Extent]:
    """The bytes block device ``major:minor`` stands for; what holds a loop device's backing file goes to ``containers``."""
    sysdir = f"/sys/dev/block/{major}:{minor}"
    size = _int(_read(f"{sysdir}/size"))
    length = size * 512 if size is not None else END
    if depth > 16:
        return [(("blk", major, minor), 0, length)]
    if os.path.exists(f"{sysdir}/partition"):
        disk = _dev_of(os.path.basename(os.path.dirname(os.path.realpath(sysdir))))
        start = _int(_read(f"{sysdir}/start"))
        if disk is not None and start is not None:
            return _window(_block(*disk, containers, depth + 1), start * 512, length)
    try:
        loop = _loop_backing(major, minor)
    except LookupError:
        return [_ANY_EXTENT]
    if loop is not None:
        dev, ino, rdev, offset, limit = loop
        if rdev:
            base = _block(os.major(rdev), os.minor(rdev), containers, depth + 1)
        else:
            base = [(("file", dev, ino), 0, END)]
            if os.major(dev):
                containers.extend(_block(os.major(dev), os.minor(dev), containers, depth + 1))
        return _window(base, offset, length if size is not None else (limit or END))
    try:
        members = os.listdir(f"{sysdir}/slaves")
    except OSError:
        members = []
    out: list[Extent] = []
    for name in members:
        dev_ = _dev_of(name)
        if dev_ is not None:
            out.extend(_block(*dev_, containers, depth + 1))
    return out or [(("blk", major, minor), 0, length)]



def extents(path: str) -> tuple[list[Extent], list[Extent]]:
    """(what writing ``path`` writes, what holds it): byte ranges of bottom storage for the path itself;
    and for a file (or a loop device over one) the device holding its filesystem."""
    st = os.stat(path)
    containers: list[Extent] = []
    if stat.S_ISBLK(st.st_mode):
        direct = _block(os.major(st.st_rdev), os.minor(st.st_rdev), containers)
    else:
        direct = [(("file", st.st_dev, st.st_ino), 0, END)]
        if os.major(st.st_dev):  # a filesystem on a block device (not tmpfs, overlay, ...)
            containers = _block(os.major(st.st_dev), os.minor(st.st_dev), [])
    # an unknown loop backing under a filesystem would make every two files on it "overlap"
    return direct, _known(containers)


def _known(extents: list[Extent]) -> list[Extent]:
    """``extents`` without the unknown storage that meets everything (which would match any path)."""
    return [e for e in extents if e[0] != _ANY]


def _meet(a: list[Extent], b: list[Extent]) -> bool:
    for ia, lo_a, hi_a in a:
        for ib, lo_b, hi_b in b:
            if _ANY in (ia, ib) or (ia == ib and lo_a < hi_b and lo_b < hi_a):
                return True
    return False


def missing_device(path: str) -> bool:
    """A path under /dev that does not exist: a disk that is not there, never a file to create."""
    return os.path.abspath(path).startswith("/dev/") and not os.path.exists(path)


def overlap(a: str, b: str) -> bool:
    """True when writing one of the paths may change the other's bytes."""
    da, ca = extents(a)
    db, cb = extents(b)
    return _meet(da, db) or _meet(ca, db) or _meet(da, cb)


def _unescape(field: str) -> str:
    """A mountinfo path: space, tab, newline and backslash are written as octal escapes (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mounted_block_filesystems() -> list[tuple[int, int, str]]:
    """(major, minor, mount point) of every mounted filesystem that sits on a block device."""
    try:
        with open("/proc/self/mountinfo") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        fields = line.split(" ")
        if len(fields) < 5 or ":" not in fields[2]:
            continue
        major, _, minor = fields[2].partition(":")
        if major.isdigit() and minor.isdigit() and int(major) != 0:  # (major 0: tmpfs, proc, overlay, ...)
            out.append((int(major), int(minor), _unescape(fields[4])))
    return out


def mounted_in(path: str) -> str | None:
    """The mount point of a mounted filesystem stored in ``path`` (an existing block device or file):
    mounted from it, from one of its partitions, from a loop device over it, ... Writing ``path`` would
    destroy that filesystem, and the filesystem's own writes (its superblock at unmount) would change
    what was written. None when there is none (or none that can be told)."""
    direct = _known(extents(path)[0])
    for major, minor, mountpoint in _mounted_block_filesystems():
        held = _known(_block(major, minor, []))
        if _meet(held, direct):
            return mountpoint
    return None


def busy_loop_over(path: str) -> str | None:
    """A loop device (or a partition of one) over the storage of ``path``, other than ``path`` and its
    partitions, that is in use: an exclusive open of it fails with EBUSY, as it does while it is
    mounted in any mount namespace (which /proc/self/mountinfo does not show), swap, or under a
    device-mapper or RAID device. Writing ``path`` would change what that user reads. None when
    there is none."""
    direct = _known(extents(path)[0])
    own = os.stat(path).st_rdev
    try:
        names = sorted(os.listdir("/sys/block"))
    except OSError:
        return None
    for name in names:
        whole = _dev_of(name)
        if whole is None or not os.path.isdir(f"/sys/block/{name}/loop") or os.makedev(*whole) == own:
            continue  # (the target itself and its partitions: its own exclusive open tells)
        # A whole disk refuses an exclusive open while any one partition is held, so a loop device
        # with partitions is judged by the partitions over ``path`` (and by holders of the whole disk).
        try:
            parts = sorted(p for p in os.listdir(f"/sys/block/{name}") if p.startswith(name) and
                           os.path.exists(f"/sys/block/{name}/{p}/partition"))
        except OSError:
            continue
        if parts and _read_holders(name):
            parts = []  # (device-mapper or md on the whole disk: the whole disk is what is held)
        for part in parts or [name]:
            dev = _dev_of(part)
            if dev is None or os.makedev(*dev) == own:
                continue
            held = _known(_block(*dev, []))
            node = _node(*dev) if _meet(held, direct) else None
            if node is not None and _held(node):
                return node
    return None


def _read_holders(name: str) -> list[str]:
    try:
        return os.listdir(f"/sys/block/{name}/holders")
    except OSError:
        return []


def _held(node: str) -> bool:
    """Whether the kernel refuses an exclusive open of the block device ``node`` (EBUSY)."""
    try:
        fd = os.open(node, os.O_RDONLY | os.O_EXCL | os.O_CLOEXEC)
    except OSError as exc:
        return exc.errno == errno.EBUSY
    os.close(fd)
    return False


def directory_on(path: str, device: str) -> bool:
    """True when the directory ``path`` would be in (it, or the nearest directory above it that
    exists) is on a filesystem that writing ``device`` (an existing block device or file) overwrites:
    a file kept there, such as a checkpoint or the device state, would be destroyed by the write."""
    directory = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(directory):
        directory = os.path.dirname(directory)
    return overlap(directory, device)
