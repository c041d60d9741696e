"""Helpers for build tests: layer tarballs written by Python's tarfile, recipes, and image trees via unsquashfs."""

from __future__ import annotations

import io
import os
import tarfile
import textwrap

from edge.treediff import Node, snapshot
from tests.conftest import require_tool, run

EPOCH = 1_700_000_000


def tar_bytes(members: list[tuple[str, str, dict]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A tar archive from (name, type, options) with type file/dir/symlink/hardlink/char/fifo.

    Options: data (bytes), mode, uid, gid, mtime, target (link), major/minor, pax (dict of extra headers).
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, kind, opts in members:
            info = tarfile.TarInfo(name)
            info.mode = opts.get("mode", 0o755 if kind == "dir" else 0o644)
            info.uid = opts.get("uid", 0)
            info.gid = opts.get("gid", 0)
            info.mtime = opts.get("mtime", EPOCH)
            info.uname = info.gname = ""
            data = None
            if kind == "file":
                data = opts.get("data", b"")
                info.size = len(data)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, opts["target"]
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, opts["target"]
            elif kind == "char":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, opts.get("major", 1), opts.get("minor", 3)
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            else:
                raise ValueError(kind)
            if "pax" in opts:
                info.pax_headers = dict(opts["pax"])
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def write_recipe(path, body: str) -> str:
    with open(path, "w") as fh:
        fh.write(textwrap.dedent(body))
    return str(path)


def unsquash(image, dest) -> str:
    """Extract ``image`` with the real unsquashfs (owners and xattrs kept when root) and return ``dest``."""
    run(require_tool("unsquashfs"), "-q", "-n", "-d", str(dest), str(image))
    return str(dest)


def image_tree(image, dest, **kw) -> dict[str, Node]:
    """The snapshot (edge.treediff) of ``image`` as unsquashfs extracts it."""
    return snapshot(unsquash(image, dest), **kw)


def without(tree: dict[str, Node], *prefixes: str) -> dict[str, Node]:
    """``tree`` minus the given paths and everything below them."""
    return {p: n for p, n in tree.items() if not any(p == x or p.startswith(x + "/") for x in prefixes)}


def listing(path: str) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            out.append(os.path.relpath(os.path.join(dirpath, name), path))
    return sorted(out)


def drop_edge_info(tree: dict[str, Node], expected: dict[str, Node]) -> dict[str, Node]:
    """``tree`` without /usr/lib/edge/image.json and the parent directories Edge created for it."""
    out = without(tree, "usr/lib/edge")
    for parent in ("usr/lib", "usr"):
        if parent not in expected and parent in out and not any(p.startswith(parent + "/") for p in out):
            del out[parent]
    return out


BOARD_YAML = """\
name: {name}
description: a test board
arch: {arch}
compatible: test,{name}
kernel_cmdline: console=ttyS0,115200 ro
serial_console: {{device: ttyS0, baud: 115200}}
boot_control: {{mechanism: grub-env, partition: esp, file: EFI/BOOT/grubenv}}
partition_table: gpt
partitions:
  - {{name: esp, role: boot, fs: vfat, size: 64MiB}}
  - {{name: rootfs-a, role: rootfs, slot: A, size: 1GiB, root: PARTLABEL=rootfs-a}}
  - {{name: rootfs-b, role: rootfs, slot: B, size: 1GiB, root: PARTLABEL=rootfs-b}}
  - {{name: data, role: data, fs: ext4, size: 64MiB, grow: true}}
boot_files:
  - {{partition: esp, path: EFI/BOOT/cmdline-@EDGE_SLOT@.txt, src: boot/cmdline.txt, template: true}}
  - {{partition: esp, path: EFI/edge/@EDGE_SLOT@/vmlinuz, rootfs: /boot/vmlinuz, optional: true}}
"""


def make_board(base, name: str, arch: str) -> str:
    """A minimal board folder (no rootfs overlay) under ``base``; returns ``base``."""
    folder = os.path.join(str(base), name)
    os.makedirs(os.path.join(folder, "boot"), exist_ok=True)
    with open(os.path.join(folder, "board.yaml"), "w") as fh:
        fh.write(BOARD_YAML.format(name=name, arch=arch))
    with open(os.path.join(folder, "boot", "cmdline.txt"), "w") as fh:
        fh.write("root=@EDGE_ROOT@ @EDGE_KERNEL_CMDLINE@ edge.slot=@EDGE_SLOT@\n")
    return str(base)
