"""The target must not be the source under another name: refused before anything is written."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from edge.delta import DeltaError, apply_delta, make_delta
from edge.storage import overlap
from tests.delta.helpers import base_entries, edit, write


def _loop(path: str) -> str:
    return subprocess.run(["losetup", "--find", "--show", path], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def slot(tmp_path):
    """The old image in a file with a loop device over it (the active slot, under two names)."""
    old = write(base_entries(31, files=20), str(tmp_path / "old.sqfs"), compressor="zstd", level=19)
    new = write(edit(base_entries(31, files=20), 31), str(tmp_path / "new.sqfs"), compressor="zstd", level=19)
    make_delta(old, new, str(tmp_path / "d.delta"))
    backing = str(tmp_path / "slot-a.img")
    shutil.copyfile(old, backing)
    with open(backing, "r+b") as fh:
        fh.truncate(max(os.path.getsize(old), os.path.getsize(new)) + (1 << 20))
    loops = [_loop(backing)]
    try:
        yield tmp_path, backing, loops, str(tmp_path / "d.delta")
    finally:
        for dev in loops:
            subprocess.run(["losetup", "-d", dev], check=False)


def _refused(source: str, target: str, delta: str, backing: str, tmp_path) -> None:
    before = open(backing, "rb").read()
    with pytest.raises(DeltaError, match="the target is the source or shares its storage"):
        apply_delta(source, delta, target, state_path=str(tmp_path / "state"))
    assert open(backing, "rb").read() == before  # nothing written


def test_loop_device_and_its_backing_file(slot):
    tmp_path, backing, loops, delta = slot
    assert overlap(backing, loops[0]) and overlap(loops[0], backing)
    _refused(backing, loops[0], delta, backing, tmp_path)
    _refused(loops[0], backing, delta, backing, tmp_path)


def test_another_device_node_for_the_same_device(slot):
    tmp_path, backing, loops, delta = slot
    st = os.stat(loops[0])
    alias = str(tmp_path / "alias")
    os.mknod(alias, 0o600 | 0o060000, st.st_rdev)  # S_IFBLK
    _refused(loops[0], alias, delta, backing, tmp_path)


def test_two_loop_devices_over_one_file(slot):
    tmp_path, backing, loops, delta = slot
    loops.append(_loop(backing))
    _refused(loops[0], loops[1], delta, backing, tmp_path)


def test_different_storage_is_not_flagged(slot, tmp_path_factory):
    tmp_path, backing, loops, delta = slot
    other = str(tmp_path / "slot-b.img")
    shutil.copyfile(backing, other)
    loops.append(_loop(other))
    assert not overlap(loops[0], loops[1])
    assert not overlap(backing, other)
    result = apply_delta(loops[0], delta, loops[1], state_path=str(tmp_path / "state"))
    assert result.size == os.path.getsize(tmp_path / "new.sqfs")
    with open(loops[1], "rb") as fh:
        assert fh.read(result.size) == open(tmp_path / "new.sqfs", "rb").read()


def test_a_missing_device_node_is_not_created_as_a_file(slot):
    tmp_path, backing, loops, delta = slot
    missing = "/dev/edge-test-no-such-slot"
    with pytest.raises(DeltaError, match="no such device"):
        apply_delta(backing, delta, missing, state_path=str(tmp_path / "state"))
    assert not os.path.exists(missing)


def test_install_refuses_the_booted_slot_under_another_name(slot):
    """`edge install` writes the inactive slot: a loop device over the booted slot's file, or another
    node for the booted device, is the booted slot."""
    from edge.device.errors import DeviceError
    from edge.device.slots import open_for_writing

    tmp_path, backing, loops, delta = slot
    with pytest.raises(DeviceError, match="is the booted slot"):
        open_for_writing(loops[0], backing)
    alias = str(tmp_path / "alias")
    os.mknod(alias, 0o600 | 0o060000, os.stat(loops[0]).st_rdev)
    with pytest.raises(DeviceError, match="is the booted slot"):
        open_for_writing(alias, loops[0])
    fd = open_for_writing(str(tmp_path / "slot-b.img"), backing)  # another file is the inactive slot
    os.close(fd)


def test_a_loop_device_over_a_deleted_hard_link_of_the_slot(slot):
    """The loop's backing name in sysfs reads '... (deleted)' and stats nothing; the kernel still
    knows the inode, which is the slot's."""
    tmp_path, backing, loops, delta = slot
    link = str(tmp_path / "link.img")
    os.link(backing, link)
    loops.append(_loop(link))
    os.unlink(link)
    assert open(f"/sys/block/{os.path.basename(loops[-1])}/loop/backing_file").read().strip().endswith("(deleted)")
    assert overlap(backing, loops[-1]) and overlap(loops[-1], backing)
    _refused(backing, loops[-1], delta, backing, tmp_path)


def _disk_image(path: str, sectors: int = 8192) -> None:
    """An MBR disk image with two partitions of ``sectors`` sectors each, the first at 1 MiB."""
    import struct

    mbr = bytearray(512)
    for i, start in enumerate((2048, 2048 + sectors)):
        mbr[446 + 16 * i : 462 + 16 * i] = struct.pack("<B3sB3sII", 0, bytes(3), 0x83, bytes(3), start, sectors)
    mbr[510:512] = b"\x55\xaa"
    with open(path, "wb") as fh:
        fh.write(mbr)
        fh.truncate((2048 + 2 * sectors) * 512)


def _partitions(loop: str) -> tuple[str, str]:
    import time

    parts = (f"{loop}p1", f"{loop}p2")
    for _ in range(100):
        if all(os.path.exists(p) for p in parts):
            return parts
        time.sleep(0.05)
    subprocess.run(["partx", "-a", loop], check=False, capture_output=True)
    assert all(os.path.exists(p) for p in parts), f"no partition nodes for {loop}"
    return parts


def test_partitions_of_two_loop_devices_over_one_disk_image(tmp_path):
    """A/B on partitions of a disk image: p1 of one loop device and p1 of another over the same
    image are the same bytes; p1 and p2 are not; the image file holds both."""
    disk = str(tmp_path / "disk.img")
    _disk_image(disk)
    loops: list[str] = []
    try:
        for _ in range(2):
            loops.append(subprocess.run(["losetup", "--find", "--show", "--partscan", disk], check=True,
                                        capture_output=True, text=True).stdout.strip())
        (x1, x2), (y1, y2) = _partitions(loops[0]), _partitions(loops[1])
        assert overlap(x1, y1) and overlap(x2, y2)
        assert overlap(x1, disk) and overlap(disk, y2)
        assert overlap(x1, loops[0]) and overlap(loops[1], x2)
        assert not overlap(x1, x2) and not overlap(x1, y2) and not overlap(y1, x2)
        other = str(tmp_path / "other.img")
        _disk_image(other)
        assert not overlap(x1, other)
    finally:
        for dev in loops:
            subprocess.run(["losetup", "-d", dev], check=False)


def test_install_refuses_a_slot_device_that_does_not_exist(slot):
    """A slot path under /dev that is missing (a disk not attached, a typo in the config) is refused
    by the installer's capacity and open steps; it is not created as a file in /dev."""
    from edge.device.errors import DeviceError
    from edge.device.slots import capacity, open_for_writing

    tmp_path, backing, loops, delta = slot
    missing = "/dev/edge-test-no-such-slot"
    with pytest.raises(DeviceError, match="no such device"):
        capacity(missing)
    with pytest.raises(DeviceError, match="no such device"):
        open_for_writing(missing, backing)
    assert not os.path.exists(missing)


@pytest.mark.parametrize("target_is", ["loop device", "backing file"])
def test_a_checkpoint_on_a_filesystem_the_target_holds_is_refused(slot, target_is):
    """--state in a filesystem stored in the target (mounted from it, or from a loop device over the
    target file): the target's write would destroy that filesystem, and the checkpoints written into
    it would change the target. Refused before anything is written, with exit code 2."""
    from edge.errors import UsageError
    from tests.conftest import ext4_file, ext4_is_clean, mounted_ext4

    tmp_path, backing, loops, delta = slot
    disk, mnt = str(tmp_path / "data.img"), str(tmp_path / "mnt")
    with mounted_ext4(disk, mnt) as dev:
        with open(os.path.join(mnt, "canary"), "wb") as fh:
            fh.write(b"kept" * 1000)
        target = dev if target_is == "loop device" else disk
        state = os.path.join(mnt, "edge", "apply.json")
        with pytest.raises(UsageError, match=rf"^--state: {re.escape(state)} is on a filesystem stored in TARGET "
                                             rf"\({re.escape(target)}\): writing the target would destroy it"):
            apply_delta(backing, delta, target, state_path=state)
        assert not os.path.exists(os.path.dirname(state))  # not even the checkpoint's directory was made
        cli = subprocess.run([sys.executable, "-m", "edge", "delta", "apply", backing, delta, "-o", target,
                              "--state", state], capture_output=True, text=True)
        assert cli.returncode == 2 and cli.stderr.count("\n") == 1 and "stored in TARGET" in cli.stderr
    assert ext4_is_clean(disk)
    assert ext4_file(disk, "/canary") == b"kept" * 1000


@pytest.mark.parametrize("target_is", ["loop device", "backing file"])
def test_a_target_that_holds_a_mounted_filesystem_is_refused(tmp_path, pair, target_is):
    """Writing storage that a mounted filesystem lives on destroys the filesystem, and its unmount then
    rewrites the superblock over the image: before this check the apply reported "written and
    verified" and, after the unmount, the target no longer matched (measured: byte 1037 differed).
    Refused with exit code 10, nothing written; the mount point is named as /proc/self/mountinfo
    escapes it (here with a space)."""
    from tests.conftest import ext4_file, ext4_is_clean, mounted_ext4

    old, new, delta, _ = pair
    mnt = str(tmp_path / "mnt point")
    backing = str(tmp_path / "data.img")
    with mounted_ext4(backing, mnt) as loop:
        with open(os.path.join(mnt, "canary"), "wb") as fh:
            fh.write(b"kept")
        _refused_mounted(old, delta, loop if target_is == "loop device" else backing, mnt, tmp_path)
    assert ext4_is_clean(backing) and ext4_file(backing, "/canary") == b"kept"


def test_a_disk_with_a_mounted_partition_is_refused_and_its_other_partition_is_not(tmp_path, pair):
    """The whole disk holds every partition: with p2 mounted, writing the disk is refused; p1 is
    other storage and is written (p2's bytes stay as they were)."""
    from edge.storage import busy_loop_over, mounted_in

    old, new, delta, _ = pair
    sectors = os.path.getsize(new) // 512 + 2048
    disk, mnt = str(tmp_path / "disk.img"), str(tmp_path / "mnt")
    _disk_image(disk, sectors)
    loop = _loop_partscan(disk)
    try:
        p1, p2 = _partitions(loop)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", p2], check=True)
        os.makedirs(mnt)
        subprocess.run(["mount", p2, mnt], check=True)
        try:
            assert mounted_in(p1) is None and mounted_in(p2) == mnt and mounted_in(loop) == mnt
            # the held partition, not the whole loop device (which refuses O_EXCL while p2 is mounted)
            assert busy_loop_over(disk) == p2 and busy_loop_over(p1) is None
            assert busy_loop_over(loop) is None  # (its own partitions: its exclusive open tells)
            p2_start = (2048 + sectors) * 512
            with open(disk, "rb") as fh:
                fh.seek(p2_start)
                p2_before = fh.read()
            _refused_mounted(old, delta, loop, mnt, tmp_path)
            apply_delta(old, delta, p1, state_path=str(tmp_path / "state"))
            with open(p1, "rb") as fh:
                assert fh.read(os.path.getsize(new)) == open(new, "rb").read()
            with open(disk, "rb") as fh:
                fh.seek(p2_start)
                assert fh.read() == p2_before
        finally:
            subprocess.run(["umount", mnt], check=False)
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)


def _loop_partscan(disk: str) -> str:
    return subprocess.run(["losetup", "--find", "--show", "--partscan", disk], check=True, capture_output=True,
                          text=True).stdout.strip()


def _refused_mounted(old: str, delta: str, target: str, mnt: str, tmp_path) -> None:
    with pytest.raises(DeltaError, match=rf"^{re.escape(target)} holds the filesystem mounted at {re.escape(mnt)}: "
                                         r"writing it would destroy"):
        apply_delta(old, delta, target, state_path=str(tmp_path / "state"))
    cli = subprocess.run([sys.executable, "-m", "edge", "delta", "apply", old, delta, "-o", target, "--state",
                          str(tmp_path / "state")], capture_output=True, text=True)
    assert cli.returncode == 10 and cli.stderr.count("\n") == 1 and f"mounted at {mnt}:" in cli.stderr


@contextlib.contextmanager
def _empty_loop(backing: str, size: int) -> Iterator[tuple[str, str]]:
    """(backing file, loop device): a zero-filled file of ``size`` bytes behind a loop device, detached at the end."""
    with open(backing, "wb") as fh:
        fh.truncate(size)
    loop = _loop(backing)
    try:
        yield backing, loop
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)


def test_a_block_device_in_use_as_swap_is_refused(tmp_path, pair):
    """What no mount table shows (swap here; device-mapper and RAID members alike) the kernel refuses to
    an exclusive open: exit code 10, nothing written."""
    old, new, delta, _ = pair
    with _empty_loop(str(tmp_path / "swap.img"), os.path.getsize(new) + (1 << 20)) as (backing, loop):
        subprocess.run(["mkswap", loop], check=True, capture_output=True)
        subprocess.run(["swapon", loop], check=True)
        try:
            before = open(backing, "rb").read()
            with pytest.raises(DeltaError, match=rf"^{re.escape(loop)} is in use by the system \(mounted, perhaps in "):
                apply_delta(old, delta, loop, state_path=str(tmp_path / "state"))
            assert open(backing, "rb").read() == before
        finally:
            subprocess.run(["swapoff", loop], check=False)
        apply_delta(old, delta, loop, state_path=str(tmp_path / "state"))  # released: written


def test_a_second_writer_of_a_block_device_is_still_busy(tmp_path, pair):
    """The exclusive open must not turn "another apply is writing it" (exit 15, try again later) into
    "in use by the system": a block device held by an Edge writer is refused with BusyError."""
    from edge.locking import BusyError, open_target

    old, new, delta, _ = pair
    with _empty_loop(str(tmp_path / "slot.img"), os.path.getsize(new) + (1 << 20)) as (_, loop):
        fd = open_target(loop, DeltaError)
        try:
            with pytest.raises(BusyError, match="another process is writing it"):
                apply_delta(old, delta, loop, state_path=str(tmp_path / "state"))
        finally:
            os.close(fd)
        apply_delta(old, delta, loop, state_path=str(tmp_path / "state"))


def test_a_mount_in_another_mount_namespace_is_refused(tmp_path, pair):
    """A filesystem mounted in another mount namespace (a container, a service with private mounts) is
    not in this process's /proc/self/mountinfo. The kernel still holds its device: the loop device
    is refused by the exclusive open, and its backing file because a loop device over it is busy."""
    from edge.storage import _held, mounted_in
    from tests.conftest import ext4_file, ext4_is_clean

    old, new, delta, _ = pair
    mnt, ready = str(tmp_path / "mnt"), str(tmp_path / "ready")
    os.makedirs(mnt)
    with _empty_loop(str(tmp_path / "data.img"), 80 << 20) as (backing, loop):
        subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", loop], check=True)
        holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                   'mount "$0" "$1" && echo kept > "$1/canary" && touch "$2" && exec sleep 600',
                                   loop, mnt, ready])
        try:
            for _ in range(200):
                if os.path.exists(ready) or holder.poll() is not None:
                    break
                time.sleep(0.05)
            assert os.path.exists(ready), "the other namespace did not mount the filesystem"
            assert mounted_in(loop) is None and not os.path.ismount(mnt)  # (invisible from here)
            with pytest.raises(DeltaError, match=rf"^{re.escape(loop)} is in use by the system \(mounted, perhaps "
                                                 r"in another mount namespace"):
                apply_delta(old, delta, loop, state_path=str(tmp_path / "state"))
            with pytest.raises(DeltaError, match=rf"^{re.escape(backing)} is behind the loop device "
                                                 rf"{re.escape(loop)}, which is in use"):
                apply_delta(old, delta, backing, state_path=str(tmp_path / "state"))
        finally:
            holder.kill()  # the namespace ends with its last process, and its mount with it
            holder.wait()
        for _ in range(100):  # (the unmount of a dead namespace can take a moment)
            if not _held(loop):
                break
            time.sleep(0.05)
        assert ext4_is_clean(loop) and ext4_file(loop, "/canary") == b"kept\n"
        apply_delta(old, delta, backing, state_path=str(tmp_path / "state"))  # released: written
