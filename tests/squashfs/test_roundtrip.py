"""Write a tree, read it back with our own reader: everything survives."""

from __future__ import annotations

import os
import stat

import pytest

from edge.squashfs import BytesContent, Entry, Kind, SquashfsImage, Tree, WriterOptions, walk_directory, write_image
from edge.treediff import snapshot
from tests.squashfs.helpers import CAP_NET_RAW, make_rich_tree


def image_snapshot(img: SquashfsImage) -> dict[str, tuple]:
    out = {}
    groups: dict[int, str] = {}
    import hashlib

    for path, inode in img.walk():
        if inode.is_file:
            digest = hashlib.sha256(img.read_file(inode)).hexdigest()
        elif inode.is_symlink:
            digest = inode.target
        elif stat.S_ISCHR(inode.mode) or stat.S_ISBLK(inode.mode):
            major, minor = inode.major_minor
            digest = f"{major}:{minor}"
        else:
            digest = ""
        group = groups.setdefault(inode.number, path) if not inode.is_dir and inode.nlink > 1 else ""
        out[path] = (
            {stat.S_IFDIR: "dir", stat.S_IFREG: "file", stat.S_IFLNK: "symlink", stat.S_IFCHR: "char",
             stat.S_IFBLK: "block", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket"}[stat.S_IFMT(inode.mode)],
            stat.S_IMODE(inode.mode) if not inode.is_symlink else 0o777,
            inode.uid,
            inode.gid,
            inode.mtime if not inode.is_symlink else None,
            inode.size if inode.is_file or inode.is_symlink else 0,
            digest,
            tuple(sorted(img.xattrs(inode))),
            group,
        )
    return out


def disk_as_tuples(root: str) -> dict[str, tuple]:
    return {p: tuple(n.__dict__.values()) for p, n in snapshot(root).items()}


@pytest.mark.parametrize("comp", ["zstd", "xz", "gzip"])
@pytest.mark.parametrize("fragments", [True, False])
def test_rich_tree_roundtrip(tmp_path, comp, fragments):
    src = str(tmp_path / "src")
    make_rich_tree(src)
    image = tmp_path / "out.sqfs"
    result = write_image(Tree.from_entries(walk_directory(src)), image, WriterOptions(compressor=comp, level=None if comp != "zstd" else 3, fragments=fragments))
    assert result.duplicates >= 1
    assert os.path.getsize(image) % 4096 == 0
    with SquashfsImage(image) as img:
        got = image_snapshot(img)
    assert got == disk_as_tuples(src)


def test_in_memory_entries_roundtrip(tmp_path):
    entries = [
        Entry("", Kind.DIR, mode=0o755, mtime=5),
        Entry("etc/passwd", Kind.FILE, mode=0o644, uid=0, gid=0, mtime=7, content=BytesContent(b"root:x:0:0::/root:/bin/sh\n")),
        Entry("usr/bin/ping", Kind.FILE, mode=0o755, mtime=9, content=BytesContent(b"\x7fELF..."),
              xattrs=(("security.capability", CAP_NET_RAW),)),
        Entry("usr/bin/ping6", Kind.HARDLINK, target="usr/bin/ping"),
        Entry("dev/console", Kind.CHAR, mode=0o600, major=5, minor=1),
        Entry("dev/loop0", Kind.BLOCK, mode=0o660, gid=6, major=7, minor=0),
        Entry("run/sock", Kind.SOCKET, mode=0o777),
        Entry("sbin", Kind.SYMLINK, mode=0o777, target="usr/bin"),
    ]
    image = tmp_path / "mem.sqfs"
    write_image(Tree.from_entries(entries), image)
    with SquashfsImage(image) as img:
        assert img.read_file(img.lookup("etc/passwd")) == b"root:x:0:0::/root:/bin/sh\n"
        ping = img.lookup("usr/bin/ping")
        assert img.lookup("usr/bin/ping6").number == ping.number
        assert ping.nlink == 2
        assert img.xattrs(ping) == [("security.capability", CAP_NET_RAW)]
        assert img.lookup("dev/console").major_minor == (5, 1)
        assert stat.S_ISBLK(img.lookup("dev/loop0").mode)
        assert img.lookup("dev/loop0").gid == 6
        assert stat.S_ISSOCK(img.lookup("run/sock").mode)
        assert img.lookup("sbin").target == "usr/bin"
        # implicit parent directories get 0755 root:root
        usr = img.lookup("usr")
        assert usr.is_dir and stat.S_IMODE(usr.mode) == 0o755 and usr.uid == 0


def test_sparse_blocks_are_stored_as_holes(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "holes", "wb") as fh:
        fh.truncate(10 * 128 * 1024)
        fh.seek(5 * 128 * 1024)
        fh.write(b"x" * 100)
    image = tmp_path / "s.sqfs"
    result = write_image(Tree.from_entries(walk_directory(src)), image)
    assert result.sparse_blocks == 9
    assert os.path.getsize(image) < 8192
    with SquashfsImage(image) as img:
        inode = img.lookup("holes")
        data = img.read_file(inode)
        assert len(data) == 10 * 128 * 1024
        assert data[5 * 128 * 1024 : 5 * 128 * 1024 + 100] == b"x" * 100
        assert data.count(0) == len(data) - 100
        assert inode.sparse == 9 * 128 * 1024
