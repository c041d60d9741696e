"""Helpers for squashfs tests: rich sample trees on disk and tree comparisons."""

from __future__ import annotations

import functools
import os
import random

from edge.build.sample import write_file
from tests.conftest import IS_ROOT

CAP_NET_RAW = bytes.fromhex("0100000200200000000000000000000000000000")


def make_rich_tree(root: str, *, seed: int = 1, big: bool = False) -> None:
    """Every feature the engine must keep: all file types, owners, modes, xattrs, hard links, holes."""
    rnd = random.Random(seed)
    os.makedirs(root)

    write = functools.partial(write_file, root)

    write("empty", b"")
    write("small.txt", b"hello squashfs\n")
    write("exact-block", rnd.randbytes(128 * 1024))
    write("two-blocks-and-tail", b"abc" * 100_000)
    write("random.bin", rnd.randbytes(300_000), 0o600)
    write("dup/a", b"duplicate content\n" * 1000)
    write("dup/b", b"duplicate content\n" * 1000)
    write("setuid", b"#!/bin/sh\n", 0o4755)
    write("sticky/.keep", b"")
    os.chmod(os.path.join(root, "sticky"), 0o1777)
    write("deep/" + "/".join(f"d{i}" for i in range(30)) + "/leaf", b"deep\n")
    write("names/" + "x" * 255, b"long name\n")
    write("names/ünïcödé", b"utf-8 name\n")
    write("names/with space", b"space\n")
    os.symlink("small.txt", os.path.join(root, "link"))
    os.symlink("/absolute/target/that/does/not/exist", os.path.join(root, "dangling"))
    os.symlink("x" * 1000, os.path.join(root, "longlink"))
    os.link(os.path.join(root, "small.txt"), os.path.join(root, "dup/hardlink"))
    os.link(os.path.join(root, "small.txt"), os.path.join(root, "hardlink2"))
    os.mkfifo(os.path.join(root, "fifo"))
    with open(os.path.join(root, "sparse"), "wb") as fh:
        fh.truncate(3 * 128 * 1024 + 1000)
        fh.seek(128 * 1024 + 5)
        fh.write(b"island")
    for i in range(300):
        write(f"many/f{i:04d}", f"file {i}\n".encode() * rnd.randint(1, 50))
    os.setxattr(os.path.join(root, "small.txt"), "user.note", b"a user xattr")
    os.setxattr(os.path.join(root, "dup"), "user.dir", b"on a directory")
    if IS_ROOT:
        os.mknod(os.path.join(root, "null"), 0o666 | 0o020000, os.makedev(1, 3))
        os.mknod(os.path.join(root, "sda"), 0o660 | 0o060000, os.makedev(8, 0))
        os.mknod(os.path.join(root, "bigminor"), 0o600 | 0o020000, os.makedev(300, 70000))
        os.chown(os.path.join(root, "random.bin"), 1000, 1001)
        os.lchown(os.path.join(root, "link"), 33, 44)
        os.chown(os.path.join(root, "many"), 65534, 65534)
        os.setxattr(os.path.join(root, "setuid"), "security.capability", CAP_NET_RAW)
        os.setxattr(os.path.join(root, "random.bin"), "trusted.overlay.opaque", b"y")
        import socket

        s = socket.socket(socket.AF_UNIX)
        s.bind(os.path.join(root, "socket"))
        s.close()
    if big:
        for i in range(20):
            write(f"big/{i}", rnd.randbytes(200_000) + bytes(100_000))
    t = 1_600_000_000
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for i, name in enumerate(sorted(filenames + dirnames)):
            os.utime(os.path.join(dirpath, name), (t + i, t + i), follow_symlinks=False)
    os.utime(root, (t, t))
