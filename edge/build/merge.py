"""The root filesystem being assembled: layers applied in order, with OCI whiteouts and hard links.

Semantics (OCI image-spec ``layer.md``):

* Within one layer, whiteouts are applied first, and only to what lower
  layers put there: ``DIR/.wh.NAME`` deletes ``DIR/NAME`` (and everything
  below it); ``DIR/.wh..wh..opq`` hides every lower child of ``DIR`` while the
  same layer's own entries stay.  Whiteout entries never appear in the image;
  other ``.wh..wh.*`` names (aufs bookkeeping) are ignored.
* An entry over an existing path: directory over directory replaces the
  attributes and keeps the children; anything else removes the old path
  (and its subtree) and recreates it.  A later entry in the same layer
  replaces an earlier one the same way.
* A hard link names a non-directory that exists when the link is applied,
  in this layer or a lower one.  The names then share one inode; replacing
  one name later (a new file at that path) does not change the others, just
  as unlink + create would not.
* A path whose parent is missing gets implicit ``0755 root:root`` parent
  directories; a non-directory in the way of a parent is replaced by one.
  Symlinks are never followed while applying: link text is kept as written.

Nothing here touches the host filesystem; file content stays a reference
(:class:`~edge.squashfs.tree.Content`) until the writer reads it.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import replace

from edge.squashfs.tree import IMPLICIT_DIR_MODE, Entry, Kind, Tree, name_key

from .errors import SourceError

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
MAX_SYMLINK_HOPS = 40  # like the kernel's limit


class _Inode:
    """A non-directory object.  Hard-linked names hold the same ``_Inode``; it is never mutated."""

    __slots__ = ("entry",)

    def __init__(self, entry: Entry) -> None:
        self.entry = entry


class _Dir:
    __slots__ = ("entry", "children")

    def __init__(self, entry: Entry, children: dict[str, "_Dir | _Inode"] | None = None) -> None:
        self.entry = entry
        self.children: dict[str, _Dir | _Inode] = {} if children is None else children


Node = _Dir | _Inode


def _implicit_dir(path: str, mtime: int = 0) -> Entry:
    return Entry(path, Kind.DIR, mode=IMPLICIT_DIR_MODE, mtime=mtime)


class RootfsTree:
    """A mutable file tree built from layers, then frozen into a squashfs :class:`Tree`."""

    def __init__(self, implicit_mtime: int = 0) -> None:
        self.root = _Dir(_implicit_dir(""))
        self.implicit_mtime = implicit_mtime  # the mtime of parent directories no entry defines

    # ------------------------------------------------------------ structure
    def copy(self, implicit_mtime: int | None = None) -> "RootfsTree":
        """An independent copy (directories copied, immutable inodes shared), for per-board branches."""
        out = RootfsTree(self.implicit_mtime if implicit_mtime is None else implicit_mtime)
        out.root = _Dir(self.root.entry)
        stack = [(self.root, out.root)]
        while stack:
            src, dst = stack.pop()
            for name, child in src.children.items():
                if isinstance(child, _Dir):
                    new = _Dir(child.entry)
                    dst.children[name] = new
                    stack.append((child, new))
                else:
                    dst.children[name] = child
        return out

    def lookup(self, path: str) -> Node | None:
        """The node at ``path`` (relative, normalised), following no symlinks."""
        node: Node = self.root
        if not path:
            return node
        for part in path.split("/"):
            if not isinstance(node, _Dir):
                return None
            child = node.children.get(part)
            if child is None:
                return None
            node = child
        return node

    def entry(self, path: str) -> Entry | None:
        node = self.lookup(path)
        return None if node is None else node.entry

    def walk(self) -> Iterator[tuple[str, Node]]:
        """Every (path, node), pre-order, children in byte order (the order squashfs stores them)."""
        stack: list[tuple[str, Node]] = [("", self.root)]
        while stack:
            path, node = stack.pop()
            yield path, node
            if isinstance(node, _Dir):
                prefix = path + "/" if path else ""
                for name in sorted(node.children, key=name_key, reverse=True):
                    stack.append((prefix + name, node.children[name]))

    def __len__(self) -> int:
        return sum(1 for _ in self.walk())

    # ------------------------------------------------------------ changes
    def add(self, entry: Entry, *, where: str = "") -> None:
        """Apply one entry with OCI "changeset over existing files" semantics (see the module docstring)."""
        path = entry.path
        if path == "":
            if entry.kind is not Kind.DIR:
                raise SourceError(f"{where or 'entry'}: the image root must be a directory, not a {entry.kind.value}")
            self.root.entry = entry
            return
        parent = self._parent(path)
        if entry.kind is Kind.HARDLINK:
            target = self.lookup(entry.target)
            if target is None:
                raise SourceError(f"{where or 'entry'}: hard link /{path} points to /{entry.target}, which does not exist "
                                  "in this or a lower layer")
            if isinstance(target, _Dir):
                raise SourceError(f"{where or 'entry'}: hard link /{path} points to directory /{entry.target}")
            parent.children[path.rsplit("/", 1)[-1]] = target
            return
        name = path.rsplit("/", 1)[-1]
        old = parent.children.get(name)
        if entry.kind is Kind.DIR:
            if isinstance(old, _Dir):
                old.entry = entry
            else:
                parent.children[name] = _Dir(entry)
        else:
            parent.children[name] = _Inode(entry)

    def _parent(self, path: str) -> _Dir:
        node = self.root
        parts = path.split("/")[:-1]
        for i, part in enumerate(parts):
            child = node.children.get(part)
            if not isinstance(child, _Dir):
                child = _Dir(_implicit_dir("/".join(parts[: i + 1]), self.implicit_mtime))
                node.children[part] = child
            node = child
        return node

    def remove(self, path: str) -> bool:
        """Delete ``path`` and everything below it (no symlink is followed); True if it existed."""
        if not path:
            raise SourceError("cannot remove the image root")
        parent_path, _, name = path.rpartition("/")
        parent = self.lookup(parent_path)
        if not isinstance(parent, _Dir):
            return False
        return parent.children.pop(name, None) is not None

    def clear_children(self, path: str) -> None:
        """Opaque whiteout: hide every child of directory ``path``."""
        node = self.lookup(path)
        if isinstance(node, _Dir):
            node.children.clear()

    def apply_layer(self, entries: Iterable[Entry], *, label: str) -> int:
        """Apply one layer changeset (whiteouts first, then entries in order); returns the entry count."""
        additions: list[Entry] = []
        count = 0
        for entry in entries:
            count += 1
            parent, _, base = entry.path.rpartition("/")
            if WHITEOUT_PREFIX in parent and any(p.startswith(WHITEOUT_PREFIX) for p in parent.split("/")):
                continue  # inside a whiteout-named directory (aufs .wh..wh.plnk/...): never part of the image
            if base == OPAQUE_MARKER:
                self.clear_children(parent)
            elif base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
                continue  # aufs metadata (.wh..wh.plnk and friends): never part of the image
            elif base.startswith(WHITEOUT_PREFIX):
                hidden = base[len(WHITEOUT_PREFIX):]
                if hidden in ("", ".", ".."):
                    raise SourceError(f"{label}: whiteout /{entry.path} names no file")
                self.remove(f"{parent}/{hidden}" if parent else hidden)
            else:
                additions.append(entry)
        for entry in additions:
            self.add(entry, where=label)
        return count

    def remove_glob(self, pattern: str) -> list[str]:
        """Delete every path matching ``pattern`` (see :func:`glob_regex`); returns the removed paths."""
        regex = glob_regex(pattern)
        matched = [path for path, _ in self.walk() if path and regex.fullmatch(path)]
        removed: list[str] = []
        for path in matched:  # pre-order: a removed directory's matched descendants follow it directly
            if removed and path.startswith(removed[-1] + "/"):
                continue
            if self.remove(path):
                removed.append(path)
        return removed

    # ------------------------------------------------------------ reading
    def resolve(self, path: str, *, follow_last: bool = True) -> tuple[str, Node] | None:
        """Follow symlinks *inside the tree* (absolute targets from the image root, '..' stops at the root).

        Returns the final path and node, or None when something is missing,
        not a directory, or the links loop.  The host filesystem is never read.
        """
        parts = deque(p for p in path.split("/") if p)
        dirs: list[tuple[str, _Dir]] = []  # the path walked so far
        current: _Dir = self.root
        hops = 0
        while parts:
            part = parts.popleft()
            if part == ".":
                continue
            if part == "..":
                if dirs:
                    dirs.pop()
                current = dirs[-1][1] if dirs else self.root
                continue
            child = current.children.get(part)
            if child is None:
                return None
            if isinstance(child, _Inode) and child.entry.kind is Kind.SYMLINK and (parts or follow_last):
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    return None
                target = child.entry.target
                if target.startswith("/"):
                    dirs, current = [], self.root
                parts.extendleft(reversed([p for p in target.split("/") if p]))
                continue
            if parts:
                if not isinstance(child, _Dir):
                    return None
                dirs.append((part, child))
                current = child
            else:
                return "/".join([name for name, _ in dirs] + [part]), child
        return "/".join(name for name, _ in dirs), current

    def to_tree(self) -> Tree:
        """The squashfs writer's tree: the first name (in byte order) of a shared inode holds it, the others link to it."""
        tree = Tree()
        first: dict[int, str] = {}
        for path, node in self.walk():
            if isinstance(node, _Dir):
                tree.add(replace(node.entry, path=path))
                continue
            holder = first.get(id(node))
            if holder is None:
                first[id(node)] = path
                tree.add(replace(node.entry, path=path))
            else:
                tree.add(Entry(path, Kind.HARDLINK, mode=node.entry.mode, uid=node.entry.uid, gid=node.entry.gid, target=holder))
        return tree


def glob_regex(pattern: str) -> re.Pattern[str]:
    """An image glob as a regex over relative paths.

    ``*`` and ``?`` stay within one path component, ``[...]`` is a character
    class (``[!...]`` negated), ``**`` crosses directories (``a/**`` is
    everything below ``a``; ``**/x`` is ``x`` at any depth).
    """
    text = pattern.strip("/")
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif text.startswith("**", i):
            out.append(".*")
            i += 2
        elif text[i] == "*":
            out.append("[^/]*")
            i += 1
        elif text[i] == "?":
            out.append("[^/]")
            i += 1
        elif text[i] == "[":
            j = i + 1
            if text[j : j + 1] == "!":
                j += 1
            if text[j : j + 1] == "]":
                j += 1
            close = text.find("]", j)
            if close < 0:
                out.append(re.escape("["))
                i += 1
                continue
            body = text[i + 1 : close]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = close + 1
        else:
            out.append(re.escape(text[i]))
            i += 1
    return re.compile("".join(out), re.DOTALL)
