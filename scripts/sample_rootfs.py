#!/usr/bin/env python3
"""Generate a small sample root filesystem for the demo: every file type Edge handles.

Usage: sample_rootfs.py DEST [--version V]
Device nodes, owners and the capability xattr need root; without it they are left out.
"""

from __future__ import annotations

import argparse
import functools
import os
import random

from edge.build.sample import write_file


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dest")
    ap.add_argument("--version", default="1.0.0")
    args = ap.parse_args()
    root = args.dest
    os.makedirs(root, exist_ok=False)
    is_root = os.geteuid() == 0
    rnd = random.Random(42)

    write = functools.partial(write_file, root)

    for d in ("dev", "proc", "sys", "run", "tmp", "var/lib", "data", "home/user"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    write("etc/os-release", f'NAME="Edge Demo"\nID=edge-demo\nVERSION_ID="{args.version}"\n'.encode())
    write("etc/hostname", b"edge-demo\n")
    write("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n")
    write("etc/shadow", b"root:*:19000:0:99999:7:::\n", 0o640)
    # a compressible "library" and an incompressible "firmware blob"
    words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 9))) for _ in range(500)]
    text = b" ".join(rnd.choice(words) for _ in range(200_000))
    write("usr/lib/libdemo.so.1", text, 0o755)
    write("usr/lib/firmware/blob.bin", rnd.randbytes(300_000))
    write("usr/share/doc/demo/README", b"Edge demo image " + args.version.encode() + b"\n" * 3)
    write("usr/share/doc/demo/COPYING", b"Copyright Edge authors\n")
    write("usr/share/doc/other/COPYING", b"Copyright Edge authors\n")  # a duplicate file
    ping = write("usr/bin/ping", b"\x7fELF" + bytes(60), 0o755)
    os.symlink("../lib/libdemo.so.1", os.path.join(root, "usr/bin/libdemo-link"))
    os.symlink("usr/bin", os.path.join(root, "bin"))
    os.link(os.path.join(root, "usr/share/doc/demo/README"), os.path.join(root, "usr/share/doc/README.hardlink"))
    os.mkfifo(os.path.join(root, "run/initctl"))
    sparse = os.path.join(root, "var/lib/sparse.img")
    with open(sparse, "wb") as fh:
        fh.truncate(8 << 20)
        fh.seek(4 << 20)
        fh.write(b"data in the middle of a hole")
    if is_root:
        os.mknod(os.path.join(root, "dev/null"), 0o666 | 0o020000, os.makedev(1, 3))
        os.mknod(os.path.join(root, "dev/sda"), 0o660 | 0o060000, os.makedev(8, 0))
        os.chown(os.path.join(root, "home/user"), 1000, 1000)
        os.chown(os.path.join(root, "etc/shadow"), 0, 42)
        # file capability: cap_net_raw+ep, as setcap writes it (VFS_CAP_REVISION_2)
        os.setxattr(ping, "security.capability", bytes.fromhex("0100000200200000000000000000000000000000"))
    os.setxattr(os.path.join(root, "usr/lib/libdemo.so.1"), "user.origin", b"edge-demo")
    stamp = 1_700_000_000
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (stamp, stamp), follow_symlinks=False)
    os.utime(root, (stamp, stamp))


if __name__ == "__main__":
    main()
