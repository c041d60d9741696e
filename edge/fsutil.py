"""Durable file writes shared by every part of Edge.

Two patterns, each in one place:

- :func:`replace_file`: small files (device state, checkpoints, bootloader env
  files) replaced atomically: a temporary file in the same directory, fsync,
  rename over the old one, fsync of the directory. After a power cut the file
  is either the old or the new version, never a mix.
- :func:`atomic_output`: large outputs (images, bundles, deltas) written
  through a temporary file that is renamed into place only when complete, and
  removed if anything fails, so a failed run never leaves a partial output.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import BinaryIO


def fsync_dir(path: str | os.PathLike[str]) -> None:
    fd = os.open(os.fspath(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically and durably (raises OSError)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.edge-tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], mode: int = 0o644, prefix: str = ".edge-",
                  sync: bool = True) -> Iterator[BinaryIO]:
    """A file object whose content becomes ``path`` when the block ends without an exception
    (fsynced first unless ``sync`` is false)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
            os.fchmod(fh.fileno(), mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
