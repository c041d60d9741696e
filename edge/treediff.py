"""Compare two directory trees the way an image round trip must preserve them.

Used by the tests, the demo and ``python -m edge.treediff A B``: type, mode,
owner, mtime, content, link target, device numbers, xattrs and hard-link
structure of every path.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Node:
    type: str
    mode: int
    uid: int
    gid: int
    mtime: int | None
    size: int
    digest: str  # content hash, link target or device numbers
    xattrs: tuple[tuple[str, bytes], ...]
    link_group: str  # first path of the hard-link group ('' if single)


def snapshot(root: str, *, mtimes: bool = True, dir_mtimes: bool = True, owners: bool = True, xattrs: bool = True) -> dict[str, Node]:
    """Every path below ``root`` ('' for the root) with what a round trip must keep."""
    out: dict[str, Node] = {}
    groups: dict[tuple[int, int], str] = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        full = os.path.join(root, rel) if rel else root
        st = os.lstat(full)
        fmt = stat.S_IFMT(st.st_mode)
        kind = {stat.S_IFDIR: "dir", stat.S_IFREG: "file", stat.S_IFLNK: "symlink", stat.S_IFCHR: "char",
                stat.S_IFBLK: "block", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket"}[fmt]
        if kind == "file":
            h = hashlib.sha256()
            with open(full, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            digest = h.hexdigest()
        elif kind == "symlink":
            digest = os.readlink(full)
        elif kind in ("char", "block"):
            digest = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
        else:
            digest = ""
        group = ""
        if kind != "dir" and st.st_nlink > 1:
            group = groups.setdefault((st.st_dev, st.st_ino), rel)
        xa: tuple[tuple[str, bytes], ...] = ()
        if xattrs:
            try:
                names = sorted(n for n in os.listxattr(full, follow_symlinks=False) if not n.startswith("system."))
                xa = tuple((n, os.getxattr(full, n, follow_symlinks=False)) for n in names)
            except OSError:
                xa = ()
        keep_mtime = mtimes and kind != "symlink" and (dir_mtimes or kind != "dir")
        out[rel] = Node(
            kind,
            stat.S_IMODE(st.st_mode) if kind != "symlink" else 0o777,
            st.st_uid if owners else 0,
            st.st_gid if owners else 0,
            int(st.st_mtime) if keep_mtime else None,
            st.st_size if kind in ("file", "symlink") else 0,
            digest,
            xa,
            group,
        )
        if kind == "dir":
            for name in sorted(os.listdir(full), reverse=True):
                stack.append(f"{rel}/{name}" if rel else name)
    return out


def differences(a: dict[str, Node], b: dict[str, Node]) -> list[str]:
    """Human-readable differences between two snapshots (empty when equal)."""
    diffs = []
    for path in sorted(set(a) | set(b)):
        if path not in a:
            diffs.append(f"/{path}: only in second")
        elif path not in b:
            diffs.append(f"/{path}: only in first")
        elif a[path] != b[path]:
            x, y = a[path], b[path]
            fields = [f for f in Node.__dataclass_fields__ if getattr(x, f) != getattr(y, f)]
            diffs.append(f"/{path}: " + ", ".join(f"{f} {getattr(x, f)!r} != {getattr(y, f)!r}" for f in fields))
    return diffs


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m edge.treediff DIR_A DIR_B", file=sys.stderr)
        return 2
    diffs = differences(snapshot(args[0]), snapshot(args[1]))
    for line in diffs:
        print(line)
    if not diffs:
        print(f"{args[0]} and {args[1]} are identical (types, modes, owners, mtimes, content, links, devices, xattrs)")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
