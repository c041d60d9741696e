"""File reads and durable writes shared by every part of Edge.

Each pattern in one place:

- :func:`read_bounded`: a configuration, key or metadata file read whole,
  at most ``limit`` + 1 bytes whatever its size, so a huge or hostile file never
  costs more memory than its format allows.
- :func:`sha256_prefix`: the sha256 of the first ``size`` bytes of a file or
  block device (optionally with held-back head bytes standing in for its start),
  read in 1 MiB pieces into one reused buffer.

- :func:`replace_file`: small files (device state, checkpoints, bootloader env
  files) replaced atomically: a temporary file in the same directory, fsync,
  rename over the old one, fsync of the directory. After a power cut the file
  is either the old or the new version, never a mix.
- :class:`HeldBackWriter`: an image written into a slot with its first bytes
  (the squashfs superblock) kept in memory and zeros on disk until the whole
  image verified, so a partial or wrong image never looks like an image.
- :func:`atomic_output`: large outputs (images, bundles, deltas) written
  through a temporary file that is renamed into place only when complete, and
  removed if anything fails, so a failed run never leaves a partial output.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from typing import BinaryIO

from edge.errors import UsageError


class FileTooLargeError(Exception):
    """A file holds more bytes than its kind may (see :func:`read_bounded`)."""


class ShortFileError(Exception):
    """A file or device ended before the bytes to be hashed (see :func:`sha256_prefix`)."""

    def __init__(self, pos: int) -> None:
        super().__init__(f"ends at byte {pos}")
        self.pos = pos


def read_bounded(path: str | os.PathLike[str], limit: int) -> bytes:
    """The whole of ``path``; FileTooLargeError when it holds more than ``limit`` bytes
    (only ``limit`` + 1 are ever read); OSError when it cannot be read."""
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise FileTooLargeError(f"{os.fspath(path)}: larger than {limit} bytes")
    return data


def sha256_prefix(fd: int, size: int, head: bytes = b"") -> str:
    """sha256 (hex) of ``head`` followed by bytes ``len(head)``..``size`` of ``fd``;
    ShortFileError when ``fd`` ends first."""
    h = hashlib.sha256(head)
    pos = len(head)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    while pos < size:
        n = os.preadv(fd, [view[: min(len(buf), size - pos)]], pos)
        if n <= 0:
            raise ShortFileError(pos)
        h.update(view[:n])
        pos += n
    return h.hexdigest()


def pread_into(fd: int, buf: memoryview, pos: int) -> None:
    """Fill ``buf`` with the bytes of ``fd`` at ``pos``; ShortFileError (at the byte where it ended)
    when ``fd`` ends first."""
    got = 0
    while got < len(buf):
        n = os.preadv(fd, [buf[got:]], pos + got)
        if n == 0:
            raise ShortFileError(pos + got)
        got += n


def pwrite_all(fd: int, data: bytes | memoryview, pos: int) -> None:
    """Write all of ``data`` at ``pos`` (pwrite may write less than asked)."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, pos)
        view, pos = view[n:], pos + n


HEAD_HELD_BACK = 4096  # bytes of an image kept off the disk until it verified (the squashfs superblock is 96)


class HeldBackWriter:
    """Writes an image to ``fd``, diverting its first ``len(head)`` bytes into ``head`` (zeros go to
    disk instead) until :meth:`seal` writes them, once the caller verified the whole image."""

    def __init__(self, fd: int, head: bytearray) -> None:
        self.fd = fd
        self.head = head

    def write(self, data: bytes | memoryview, pos: int) -> None:
        view = memoryview(data)
        if pos < len(self.head):
            n = min(len(view), len(self.head) - pos)
            self.head[pos : pos + n] = view[:n]
            pwrite_all(self.fd, bytes(n), pos)
            view, pos = view[n:], pos + n
        if view:
            pwrite_all(self.fd, view, pos)

    def read_into(self, pos: int, buf: memoryview) -> None:
        """Fill ``buf`` with the image's bytes at ``pos`` as written so far (held-back head included);
        ShortFileError when the target ends before them."""
        pread_into(self.fd, buf, pos)
        if pos < len(self.head):
            n = min(len(buf), len(self.head) - pos)
            buf[:n] = self.head[pos : pos + n]

    def sha256(self, size: int) -> str:
        """sha256 of the image as it will be: the held-back head, then the rest as written
        (ShortFileError when the target ends before ``size``)."""
        return sha256_prefix(self.fd, size, bytes(self.head))

    def seal(self) -> None:
        """Write the held-back head: only now does the target become a valid image."""
        pwrite_all(self.fd, bytes(self.head), 0)
        os.fsync(self.fd)


def saved_head(text: object, length: int) -> bytes | None:
    """A held-back head as a checkpoint saved it (hex), or None unless it is hex of ``length`` bytes
    (a damaged checkpoint: the caller then writes the image from the start)."""
    if not isinstance(text, str):
        return None
    try:
        head = bytes.fromhex(text)
    except ValueError:
        return None
    return head if len(head) == length else None


def remove_if_present(path: str | os.PathLike[str]) -> None:
    """Remove a file that may already be gone (a state or checkpoint file)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


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


def check_output_path(path: str | os.PathLike[str], inputs: Mapping[str, str | None] | None = None) -> None:
    """Refuse an output path that an atomic replace would mishandle: a device node, FIFO or
    directory (replacing a device node with a file is how /dev/null gets lost), a missing directory,
    or one of the command's ``inputs`` ({role: path}, e.g. {"OLD": old}) under any name or hard link:
    ``edge delta make OLD NEW -o OLD`` would replace the image it was made from with the delta."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"{path}: the directory {directory} does not exist")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{path} exists and is not a regular file; refusing to replace it")
    for role, other in (inputs or {}).items():
        try:
            same = other is not None and os.path.samestat(st, os.stat(other))
        except (OSError, ValueError):  # an input that is not a local file (a URL, "-") is not this file
            same = False
        if same:
            raise UsageError(f"{path} is {role} ({other}); writing the output there would destroy it: choose "
                             f"another output path (nothing was written)")


_OUT_OF_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], mode: int = 0o644, prefix: str = ".edge-",
                  sync: bool = True, exclusive: bool = False) -> Iterator[BinaryIO]:
    """A file object whose content becomes ``path`` when the block ends without an exception
    (fsynced first unless ``sync`` is false). The temporary file is mode 0600 until then.
    ``exclusive``: never replace an existing ``path`` (FileExistsError, also when another
    process created it meanwhile)."""
    path = os.fspath(path)
    check_output_path(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
            os.fchmod(fh.fileno(), mode)
        if exclusive:
            os.link(tmp, path)  # atomic, and fails if the file exists
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None and exc.errno in _OUT_OF_ROOM:
            exc.filename = path  # a write ran out of room: say where ("No space left on device" alone did not)
        raise
