"""Listing and extracting images: the filesystem-touching side of the reader."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import format as fmt
from .errors import SquashfsError
from .reader import Inode, SquashfsImage

_TOTALCHARS = 25  # unsquashfs' column arithmetic for "-ll" listings


def long_line(path: str, inode: Inode, root_name: str = "") -> str:
    """One line in the format of ``unsquashfs -lln`` (numeric owners, local time)."""
    user, group = str(inode.uid), str(inode.gid)
    out = f"{stat.filemode(inode.mode)} {user}/{group} "
    if inode.basic_type in (fmt.T_CHRDEV, fmt.T_BLKDEV):
        pad = _TOTALCHARS - len(user) - len(group) - 7
        # unsquashfs prints rdev >> 8 and rdev & 0xff of the on-disk encoding
        out += f"{' ':>{max(pad, 0)}}{inode.rdev >> 8:3d},{inode.rdev & 0xFF:3d} "
    else:
        pad = _TOTALCHARS - len(user) - len(group)
        size = inode.size if inode.basic_type in (fmt.T_FILE, fmt.T_DIR, fmt.T_SYMLINK) else 0
        out += f"{size:>{max(pad, 0)}d} "
    t = time.localtime(inode.mtime)
    name = f"{root_name}/{path}" if path else (root_name or "/")
    if not root_name and path:
        name = "/" + path
    out += f"{t.tm_year}-{t.tm_mon:02d}-{t.tm_mday:02d} {t.tm_hour:02d}:{t.tm_min:02d} {name}"
    if inode.is_symlink:
        out += f" -> {inode.target}"
    return out


@dataclass
class ExtractResult:
    files: int = 0
    directories: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    specials: int = 0
    bytes: int = 0
    warnings: list[str] = field(default_factory=list)


def extract(
    image: SquashfsImage,
    dest: str | os.PathLike[str],
    *,
    owners: bool | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ExtractResult:
    """Extract the whole image into ``dest`` (created if missing, must be empty).

    Owners, device nodes and trusted.* xattrs need root; without it they are
    skipped with a warning.  Holes are recreated as holes.
    """
    dest = os.fspath(dest)
    if owners is None:
        owners = os.geteuid() == 0
    os.makedirs(dest, exist_ok=True)
    if os.listdir(dest):
        raise SquashfsError(f"{dest}: destination is not empty")
    result = ExtractResult()
    links: dict[int, str] = {}
    dirs: list[tuple[str, Inode]] = []
    entries = list(image.walk())
    total = sum(i.size for _, i in entries if i.is_file)
    done = 0
    for path, inode in entries:
        target = os.path.join(dest, path) if path else dest
        if inode.is_dir:
            if path:
                os.mkdir(target, 0o700)
            dirs.append((target, inode))
            result.directories += 1
            continue
        if inode.nlink > 1 and inode.number in links:
            os.link(links[inode.number], target, follow_symlinks=False)
            result.hardlinks += 1
            continue
        links[inode.number] = target
        kind = inode.basic_type
        if kind == fmt.T_FILE:
            _write_file(image, inode, target)
            done += inode.size
            result.files += 1
            result.bytes += inode.size
            if progress is not None:
                progress(done, total)
        elif kind == fmt.T_SYMLINK:
            os.symlink(inode.target, target)
            result.symlinks += 1
        elif kind in (fmt.T_CHRDEV, fmt.T_BLKDEV):
            if not owners:
                result.warnings.append(f"/{path}: device node skipped (needs root)")
                continue
            major, minor = inode.major_minor
            os.mknod(target, inode.mode & ~0o7777 | 0o600, os.makedev(major, minor))
            result.specials += 1
        else:  # fifo or socket
            os.mknod(target, stat.S_IFMT(inode.mode) | 0o600)
            result.specials += 1
        _apply_metadata(image, inode, target, owners, result, path)
    for target, inode in reversed(dirs):
        _apply_metadata(image, inode, target, owners, result, os.path.relpath(target, dest))
    return result


def _write_file(image: SquashfsImage, inode: Inode, target: str) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        pos = 0
        for i, chunk in enumerate(image.iter_file(inode)):
            is_hole = i < len(inode.block_sizes) and inode.block_sizes[i] & fmt.DATA_SIZE_MASK == 0
            if not is_hole:
                os.pwrite(fd, chunk, pos)
            pos += len(chunk)
        os.ftruncate(fd, inode.size)
    finally:
        os.close(fd)


def _apply_metadata(image: SquashfsImage, inode: Inode, target: str, owners: bool, result: ExtractResult, path: str) -> None:
    # chown first: it clears setuid bits and security.capability, which come after.
    if owners:
        os.lchown(target, inode.uid, inode.gid)
    for name, value in image.xattrs(inode):
        try:
            os.setxattr(target, name, value, follow_symlinks=False)
        except OSError as exc:
            result.warnings.append(f"/{path}: xattr {name} not restored ({exc.strerror})")
    if not inode.is_symlink:
        os.chmod(target, inode.mode & 0o7777)
    os.utime(target, (inode.mtime, inode.mtime), follow_symlinks=False)
