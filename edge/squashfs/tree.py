"""The abstract file tree the writer consumes: entries with metadata and content sources.

A source (a directory walker, a tarball, OCI layers) produces :class:`Entry`
objects in any order; :class:`Tree` collects them, normalises paths, creates
missing parent directories and lets later entries replace earlier ones.  The
writer then walks the tree in a canonical (byte-sorted) order, so the image
never depends on the order entries arrived in.
"""

from __future__ import annotations

import abc
import enum
import hashlib
import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import BinaryIO

from .errors import SquashfsError


class Kind(str, enum.Enum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    CHAR = "char"
    BLOCK = "block"
    FIFO = "fifo"
    SOCKET = "socket"


class Content(abc.ABC):
    """Where a regular file's bytes come from.  ``size`` must be exact."""

    size: int

    @abc.abstractmethod
    def open(self) -> BinaryIO:
        """A fresh reader positioned at the first byte of the content."""

    def iter_blocks(self, block_size: int) -> Iterator[bytes | None]:
        """The content in ``block_size`` pieces (the last may be short).

        ``None`` stands for a piece known to be all zeros (a hole) without
        reading it.  Sources that know their holes override this.
        """
        remaining = self.size
        with self.open() as fh:
            while remaining > 0:
                want = min(block_size, remaining)
                data = fh.read(want)
                if len(data) != want:
                    raise SquashfsError(f"{self!r}: content ended after {self.size - remaining + len(data)} of {self.size} bytes")
                remaining -= want
                yield data

    def sha256(self) -> bytes:
        """SHA-256 of the content, holes read as the zeros they stand for."""
        h = hashlib.sha256()
        left = self.size
        for block in self.iter_blocks(1 << 20):
            piece = block if block is not None else bytes(min(1 << 20, left))
            h.update(piece)
            left -= len(piece)
        return h.digest()


class BytesContent(Content):
    """Content held in memory (inline files, tests)."""

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.size = len(self.data)

    def open(self) -> BinaryIO:
        return io.BytesIO(self.data)

    def __repr__(self) -> str:
        return f"BytesContent({self.size} bytes)"


class FileContent(Content):
    """A file on disk; holes found with SEEK_DATA are never read."""

    def __init__(self, path: str | os.PathLike[str], size: int | None = None) -> None:
        self.path = os.fspath(path)
        self.size = os.lstat(self.path).st_size if size is None else size

    def open(self) -> BinaryIO:
        return open(self.path, "rb")

    def iter_blocks(self, block_size: int) -> Iterator[bytes | None]:
        size = self.size
        with open(self.path, "rb", buffering=0) as fh:
            fd = fh.fileno()
            pos = 0
            data_at: int | None = -1  # offset of the next known data, None if only a hole is left
            while pos < size:
                want = min(block_size, size - pos)
                if data_at is not None and data_at < pos:
                    data_at = _seek_data(fd, pos)
                    if data_at is None:  # only a hole is left, or the file now ends before pos
                        self._check_size(fd, size)
                if data_at is None or data_at >= pos + want:
                    yield None  # the whole piece lies in a hole
                else:
                    data = os.pread(fd, want, pos)
                    if len(data) != want:
                        raise SquashfsError(f"{self.path}: file shrank while being read (at byte {pos + len(data)} of {size})")
                    yield data
                pos += want
            self._check_size(fd, size)

    def _check_size(self, fd: int, size: int) -> None:
        """The file still has the size it was listed with: one cut or grown while it was packed would
        give an image whose content is neither the old nor the new file (a cut read as a hole)."""
        now = os.fstat(fd).st_size
        if now != size:
            raise SquashfsError(f"{self.path}: file changed size while being read ({size} bytes when listed, {now} "
                                f"now); the source must not change during the build")

    def __repr__(self) -> str:
        return f"FileContent({self.path!r})"


def _seek_data(fd: int, pos: int) -> int | None:
    """Offset of the next data at or after ``pos``, None if only a hole follows."""
    try:
        return os.lseek(fd, pos, os.SEEK_DATA)
    except OSError as exc:
        if exc.errno == 6:  # ENXIO: no data after pos
            return None
        return pos  # filesystem without SEEK_DATA support: treat as data


class SliceContent(Content):
    """``size`` bytes at ``offset`` of a seekable file (a tar member, a blob)."""

    def __init__(self, path: str | os.PathLike[str], offset: int, size: int) -> None:
        self.path = os.fspath(path)
        self.offset = offset
        self.size = size

    def open(self) -> BinaryIO:
        fh = open(self.path, "rb")
        fh.seek(self.offset)
        return _Limited(fh, self.size)

    def __repr__(self) -> str:
        return f"SliceContent({self.path!r}, offset={self.offset}, size={self.size})"


class _Limited(io.RawIOBase):
    def __init__(self, fh: BinaryIO, size: int) -> None:
        self._fh = fh
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        n = min(len(b), self._left)
        if n <= 0:
            return 0
        data = self._fh.read(n)
        b[: len(data)] = data
        self._left -= len(data)
        return len(data)

    def close(self) -> None:
        self._fh.close()
        super().close()


@dataclass(frozen=True, slots=True)
class Entry:
    """One filesystem object.  ``path`` is relative to the image root ("" is the root).

    ``mode`` holds the permission bits only (``0o7777``); the type is ``kind``.
    ``target`` is the link text of a symlink, or the path of the entry a hard
    link points to.  ``xattrs`` is a tuple of (name, value) pairs.
    """

    path: str
    kind: Kind
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    xattrs: tuple[tuple[str, bytes], ...] = ()
    content: Content | None = None
    target: str = ""
    major: int = 0
    minor: int = 0

    @property
    def size(self) -> int:
        return self.content.size if self.content is not None else 0


def normalize_path(path: str) -> str:
    """The canonical relative form of ``path``; refuses anything that leaves the root."""
    if "\0" in path:
        raise SquashfsError(f"path {path!r} contains a NUL byte")
    parts = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise SquashfsError(f"path {path!r} escapes the image root ('..')")
        if len(part.encode("utf-8", "surrogateescape")) > 256:
            raise SquashfsError(f"path {path!r}: name {part[:40]!r}... is longer than 256 bytes")
        parts.append(part)
    return "/".join(parts)


def name_key(name: str) -> bytes:
    """Sort key matching the byte order squashfs directories must be in."""
    return name.encode("utf-8", "surrogateescape")


@dataclass(slots=True)
class Node:
    entry: Entry
    children: dict[str, "Node"] | None = None  # only for directories
    implicit: bool = False

    def sorted_children(self) -> list[tuple[str, "Node"]]:
        assert self.children is not None
        return sorted(self.children.items(), key=lambda kv: name_key(kv[0]))


IMPLICIT_DIR_MODE = 0o755


@dataclass
class Tree:
    """An in-memory filesystem tree built from entries."""

    root: Node = field(default_factory=lambda: Node(Entry("", Kind.DIR, mode=IMPLICIT_DIR_MODE), {}, implicit=True))
    count: int = 1

    @classmethod
    def from_entries(cls, entries: Iterable[Entry]) -> "Tree":
        tree = cls()
        for entry in entries:
            tree.add(entry)
        return tree

    def add(self, entry: Entry) -> None:
        """Add ``entry``; an existing entry at the same path is replaced.

        Replacing a directory with a directory keeps its children (tar and OCI
        semantics); replacing it with anything else drops them.
        """
        path = normalize_path(entry.path)
        if path != entry.path:
            entry = replace(entry, path=path)
        _validate(entry)
        if path == "":
            if entry.kind is not Kind.DIR:
                raise SquashfsError(f"the image root must be a directory, not a {entry.kind.value}")
            self.root.entry = entry
            self.root.implicit = False
            return
        parent = self._parent_dir(path)
        name = path.rsplit("/", 1)[-1]
        assert parent.children is not None
        old = parent.children.get(name)
        if entry.kind is Kind.DIR:
            if old is not None and old.children is not None:
                old.entry = entry
                old.implicit = False
                return
            parent.children[name] = Node(entry, {})
        else:
            parent.children[name] = Node(entry)
        if old is None:
            self.count += 1
        else:
            self.count -= _subtree_size(old) - 1

    def _parent_dir(self, path: str) -> Node:
        node = self.root
        parts = path.split("/")[:-1]
        for i, part in enumerate(parts):
            assert node.children is not None
            child = node.children.get(part)
            if child is None or child.children is None:
                if child is not None:
                    self.count -= _subtree_size(child)
                child = Node(Entry("/".join(parts[: i + 1]), Kind.DIR, mode=IMPLICIT_DIR_MODE), {}, implicit=True)
                node.children[part] = child
                self.count += 1
            node = child
        return node

    def get(self, path: str) -> Node | None:
        path = normalize_path(path)
        node = self.root
        if path == "":
            return node
        for part in path.split("/"):
            if node.children is None:
                return None
            nxt = node.children.get(part)
            if nxt is None:
                return None
            node = nxt
        return node

    def remove(self, path: str) -> bool:
        """Remove ``path`` and everything below it; True if something was removed."""
        path = normalize_path(path)
        if path == "":
            raise SquashfsError("cannot remove the image root")
        parent = self.get(path.rsplit("/", 1)[0] if "/" in path else "")
        if parent is None or parent.children is None:
            return False
        node = parent.children.pop(path.rsplit("/", 1)[-1], None)
        if node is None:
            return False
        self.count -= _subtree_size(node)
        return True

    def walk(self) -> Iterator[tuple[str, Node]]:
        """Every node in canonical pre-order: a directory, then its children sorted by name bytes."""
        stack: list[tuple[str, Node]] = [("", self.root)]
        while stack:
            path, node = stack.pop()
            yield path, node
            if node.children:
                prefix = path + "/" if path else ""
                for name, child in reversed(node.sorted_children()):
                    stack.append((prefix + name, child))

    def __len__(self) -> int:
        return self.count


def _subtree_size(node: Node) -> int:
    if not node.children:
        return 1
    return 1 + sum(_subtree_size(c) for c in node.children.values())


def _validate(entry: Entry) -> None:
    where = f"entry {entry.path or '/'!r}"
    if not 0 <= entry.mode <= 0o7777:
        raise SquashfsError(f"{where}: mode {entry.mode:#o} is not a permission mask (0..0o7777)")
    for what, value in (("uid", entry.uid), ("gid", entry.gid)):
        if not 0 <= value <= 0xFFFFFFFF:
            raise SquashfsError(f"{where}: {what} {value} is out of range")
    if entry.kind is Kind.FILE:
        if entry.content is None:
            raise SquashfsError(f"{where}: a regular file needs content")
        if entry.content.size < 0:
            raise SquashfsError(f"{where}: negative size")
    elif entry.content is not None:
        raise SquashfsError(f"{where}: only regular files carry content")
    if entry.kind in (Kind.SYMLINK, Kind.HARDLINK):
        if not entry.target:
            raise SquashfsError(f"{where}: a {entry.kind.value} needs a target")
        if entry.kind is Kind.SYMLINK and len(entry.target.encode("utf-8", "surrogateescape")) > 65535:
            raise SquashfsError(f"{where}: symlink target is longer than 65535 bytes")
    if entry.kind in (Kind.CHAR, Kind.BLOCK):
        if not (0 <= entry.major < 4096 and 0 <= entry.minor < (1 << 20)):
            raise SquashfsError(f"{where}: device {entry.major}:{entry.minor} does not fit squashfs (major < 4096, minor < 2^20)")
    for name, value in entry.xattrs:
        if not isinstance(value, bytes):
            raise SquashfsError(f"{where}: xattr {name} value must be bytes")
