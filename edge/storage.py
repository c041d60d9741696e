"""Whether two paths name the same storage, under any name.

A delta is written over the inactive slot while the active one is read; if the
two are the same bytes under different names — another device node for one
device, a loop device and its backing file, two loop devices over one file, a
device-mapper device and the partition under it, a whole disk and one of its
partitions, a block device and a file on a filesystem it holds — writing one
destroys the other. ``overlap`` answers from ``stat`` and ``/sys/dev/block``.
"""

from __future__ import annotations

import os
import stat

Id = tuple[str, int, int]


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def _dev_of(name: str) -> tuple[int, int] | None:
    text = _read(f"/sys/class/block/{name}/dev")
    if not text or ":" not in text:
        return None
    major, minor = text.split(":", 1)
    return int(major), int(minor)


def _block(major: int, minor: int, direct: set[Id], parents: set[Id], depth: int = 0) -> None:
    """Add the block device and everything under it to ``direct``; disks holding its partitions to ``parents``."""
    key = ("blk", major, minor)
    if key in direct or depth > 16:
        return
    direct.add(key)
    sysdir = f"/sys/dev/block/{major}:{minor}"
    backing = _read(f"{sysdir}/loop/backing_file")
    if backing:
        try:
            st = os.stat(backing)
            direct.add(("file", st.st_dev, st.st_ino))
            if stat.S_ISBLK(st.st_mode):
                _block(os.major(st.st_rdev), os.minor(st.st_rdev), direct, parents, depth + 1)
        except OSError:
            pass
    try:
        slaves = os.listdir(f"{sysdir}/slaves")
    except OSError:
        slaves = []
    for name in slaves:
        dev = _dev_of(name)
        if dev is not None:
            _block(*dev, direct, parents, depth + 1)
    if os.path.exists(f"{sysdir}/partition"):
        disk = _dev_of(os.path.basename(os.path.dirname(os.path.realpath(sysdir))))
        if disk is not None:
            parents.add(("blk", *disk))


def identities(path: str) -> tuple[set[Id], set[Id]]:
    """(what writing ``path`` writes, what holds it): storage ids of the path itself and of what lies
    under it; and of the devices that contain it (a partition's disk, a file's filesystem device)."""
    st = os.stat(path)
    direct: set[Id] = set()
    containers: set[Id] = set()
    if stat.S_ISBLK(st.st_mode):
        _block(os.major(st.st_rdev), os.minor(st.st_rdev), direct, containers)
    else:
        direct.add(("file", st.st_dev, st.st_ino))
        if os.major(st.st_dev):  # a filesystem on a block device (not tmpfs, overlay, ...)
            _block(os.major(st.st_dev), os.minor(st.st_dev), containers, containers)
    return direct, containers


def overlap(a: str, b: str) -> bool:
    """True when writing one of the paths may change the other's bytes."""
    da, ca = identities(a)
    db, cb = identities(b)
    return bool(da & db or ca & db or da & cb)
