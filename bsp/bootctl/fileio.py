"""The only ways boot control writes files: atomic replace, and in-place rewrite of a few sectors.

Both end with the data on stable storage (fsync) before returning, so the
"one atomic write per operation" promise of docs/boot-control.md holds across
a power cut, not only across a crash of this process.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge.fsutil import FileTooLargeError, read_bounded, replace_file

from .errors import BootControlError

SECTOR = 512


def read_file(path: Path, what: str, limit: int = 1 << 20) -> bytes:
    """A whole (small) file; BootControlError naming ``what`` when missing or larger than ``limit``."""
    try:
        return read_bounded(path, limit)
    except FileTooLargeError:
        raise BootControlError(f"{path}: the {what} is larger than {limit} bytes") from None
    except OSError as exc:
        raise BootControlError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None


def replace_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file in the same directory, fsync, rename over ``path``, fsync the directory."""
    try:
        replace_file(path, data)
    except OSError as exc:
        raise BootControlError(f"{path}: cannot write: {exc.strerror or exc}") from None


def changed_sectors(old: bytes, new: bytes, sector: int = SECTOR) -> list[int]:
    """Indexes of the ``sector``-sized blocks in which ``old`` and ``new`` differ (same length)."""
    assert len(old) == len(new)
    return [i // sector for i in range(0, len(old), sector) if old[i:i + sector] != new[i:i + sector]]


def rewrite_in_place(path: Path, offset: int, old: bytes, new: bytes, *, require_single_sector: bool) -> None:
    """Overwrite the sectors of ``path`` at ``offset`` in which ``new`` differs from ``old``, then fsync.

    The file keeps its size and its blocks (what GRUB's ``save_env`` needs: it
    writes the sectors it found the file in).  With ``require_single_sector``
    the change must fall inside one 512-byte sector, the unit storage writes
    atomically; otherwise a power cut could leave half of it.
    """
    if len(old) != len(new):
        raise BootControlError(f"{path}: internal: in-place rewrite must keep the size ({len(old)} != {len(new)})")
    sectors = changed_sectors(old, new)
    if not sectors:
        return
    if require_single_sector and len(sectors) > 1:
        raise BootControlError(f"{path}: this change touches sectors {sectors} of the file; only a change inside one "
                               f"{SECTOR}-byte sector is atomic: keep the variables in the first sector")
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            for s in sectors:
                chunk = new[s * SECTOR:(s + 1) * SECTOR]
                if os.pwrite(fd, chunk, offset + s * SECTOR) != len(chunk):
                    raise BootControlError(f"{path}: short write at offset {offset + s * SECTOR}")
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise BootControlError(f"{path}: cannot write: {exc.strerror or exc}") from None


def write_at(path: Path, offset: int, data: bytes) -> None:
    """Write ``data`` at ``offset`` of an existing file or block device with one pwrite, then fsync."""
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            if os.pwrite(fd, data, offset) != len(data):
                raise BootControlError(f"{path}: short write at offset {offset}")
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise BootControlError(f"{path}: cannot write: {exc.strerror or exc}") from None


def read_at(path: Path, offset: int, size: int, what: str) -> bytes:
    """``size`` bytes at ``offset`` (negative: from the end) of a file or block device."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            end = os.lseek(fd, 0, os.SEEK_END)
            start = end + offset if offset < 0 else offset
            if start < 0 or start + size > end:
                raise BootControlError(f"{path}: the {what} at offset {offset} ({size} bytes) lies outside the "
                                       f"{end}-byte device")
            data = os.pread(fd, size, start)
        finally:
            os.close(fd)
    except OSError as exc:
        raise BootControlError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    if len(data) != size:
        raise BootControlError(f"{path}: short read of the {what} at offset {offset}")
    return data


def absolute_offset(path: Path, offset: int) -> int:
    """``offset`` resolved against the size of ``path`` when negative."""
    if offset >= 0:
        return offset
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            return os.lseek(fd, 0, os.SEEK_END) + offset
        finally:
            os.close(fd)
    except OSError as exc:
        raise BootControlError(f"{path}: {exc.strerror or exc}") from None


@contextmanager
def locked(lock_path: Path | None) -> Iterator[None]:
    """Hold an exclusive flock on ``lock_path`` (the file libubootenv's tools lock), if given."""
    if lock_path is None:
        yield
        return
    try:
        fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o666)
    except OSError as exc:
        raise BootControlError(f"{lock_path}: cannot open the lock file: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
