"""A directory on disk as a source of tree entries (owners, devices, xattrs, hard links, holes)."""

from __future__ import annotations

import os
import stat
from collections.abc import Collection, Iterator

from .errors import SquashfsError
from .tree import Entry, FileContent, Kind

XATTR_NAMESPACES = ("user.", "trusted.", "security.")


def read_xattrs(path: str) -> tuple[tuple[str, bytes], ...]:
    """The xattrs squashfs can store (user., trusted., security.) of ``path``, sorted by name."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    out = []
    for name in sorted(names):
        if not name.startswith(XATTR_NAMESPACES):
            continue  # e.g. system.posix_acl_*: squashfs has no way to store it
        try:
            out.append((name, os.getxattr(path, name, follow_symlinks=False)))
        except OSError:
            continue
    return tuple(out)


def file_ids(*paths: str) -> set[tuple[int, int]]:
    """(st_dev, st_ino) of each of ``paths`` that exists, symlinks followed: what ``walk_directory``
    takes as ``exclude``."""
    ids = set()
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        ids.add((st.st_dev, st.st_ino))
    return ids


def walk_directory(root: str | os.PathLike[str], *, xattrs: bool = True,
                   exclude: Collection[tuple[int, int]] = ()) -> Iterator[Entry]:
    """Every object under ``root`` as an :class:`Entry`, the root itself first.

    The second and later names of a multiply-linked inode become
    :attr:`Kind.HARDLINK` entries pointing at the first name met in
    byte-sorted order, so the result does not depend on readdir order.
    Files whose (st_dev, st_ino) is in ``exclude`` are left out: the image
    being written, when it lies inside ``root`` (as mksquashfs does).
    """
    top = os.fspath(root)
    try:
        st = os.stat(top)
    except OSError as exc:
        raise SquashfsError(f"{top}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise SquashfsError(f"{top}: not a directory")
    seen: dict[tuple[int, int], str] = {}
    stack = [("", top)]
    while stack:
        rel, full = stack.pop()
        st = os.lstat(full)
        if rel and (st.st_dev, st.st_ino) in exclude:
            continue
        entry = _entry_for(rel, full, st, seen, xattrs)
        yield entry
        if entry.kind is Kind.DIR:
            try:
                names = sorted(os.listdir(full), key=lambda n: os.fsencode(n))
            except OSError as exc:
                raise SquashfsError(f"{full}: cannot list directory: {exc.strerror}") from None
            for name in reversed(names):
                stack.append((f"{rel}/{name}" if rel else name, os.path.join(full, name)))


def _entry_for(rel: str, full: str, st: os.stat_result, seen: dict[tuple[int, int], str], want_xattrs: bool) -> Entry:
    mode = stat.S_IMODE(st.st_mode)
    common = dict(mode=mode, uid=st.st_uid, gid=st.st_gid, mtime=int(st.st_mtime))
    fmt = stat.S_IFMT(st.st_mode)
    if fmt != stat.S_IFDIR and st.st_nlink > 1:
        key = (st.st_dev, st.st_ino)
        first = seen.get(key)
        if first is not None:
            return Entry(rel, Kind.HARDLINK, target=first, **common)
        seen[key] = rel
    xattrs = read_xattrs(full) if want_xattrs else ()
    if fmt == stat.S_IFDIR:
        return Entry(rel, Kind.DIR, xattrs=xattrs, **common)
    if fmt == stat.S_IFREG:
        return Entry(rel, Kind.FILE, xattrs=xattrs, content=FileContent(full, st.st_size), **common)
    if fmt == stat.S_IFLNK:
        return Entry(rel, Kind.SYMLINK, xattrs=xattrs, target=os.readlink(full), **common)
    if fmt in (stat.S_IFCHR, stat.S_IFBLK):
        kind = Kind.CHAR if fmt == stat.S_IFCHR else Kind.BLOCK
        return Entry(rel, kind, xattrs=xattrs, major=os.major(st.st_rdev), minor=os.minor(st.st_rdev), **common)
    if fmt == stat.S_IFIFO:
        return Entry(rel, Kind.FIFO, xattrs=xattrs, **common)
    if fmt == stat.S_IFSOCK:
        return Entry(rel, Kind.SOCKET, xattrs=xattrs, **common)
    raise SquashfsError(f"{full}: unsupported file type {fmt:#o}")
