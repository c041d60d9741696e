"""Slot devices: capacity, hashing, and opening the inactive slot for writing (never the booted one)."""

from __future__ import annotations

import os
import stat

from edge.fsutil import ShortFileError, sha256_prefix
from edge.locking import open_target
from edge.storage import directory_on, missing_device, overlap

from .errors import DeviceError


def _missing_device(path: str) -> None:
    if missing_device(path):
        raise DeviceError(f"{path}: no such device (is the disk attached and the slot path in the config right?)")


def capacity(path: str) -> int:
    """How many bytes an image may occupy in the slot: a block device's size, or for a
    file slot its current size plus the free space of its filesystem."""
    _missing_device(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        parent = os.path.dirname(os.path.abspath(path))
        vfs = os.statvfs(parent)
        return vfs.f_bavail * vfs.f_frsize
    if stat.S_ISBLK(st.st_mode):
        fd = os.open(path, os.O_RDONLY)
        try:
            return os.lseek(fd, 0, os.SEEK_END)
        finally:
            os.close(fd)
    vfs = os.statvfs(os.path.dirname(os.path.abspath(path)))
    return st.st_blocks * 512 + vfs.f_bavail * vfs.f_frsize


def same_device(a: str, b: str) -> bool:
    """Whether the two paths are one slot's storage under any names (edge.storage.overlap)."""
    try:
        return os.path.samefile(a, b) or overlap(a, b)
    except FileNotFoundError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_slot_holds_none_of(slot: str, path: str, state_file: str, bundle: str | None) -> None:
    """Refuse to write slot ``slot`` (at ``path``) when the device state or the local bundle being
    installed is on a filesystem stored in that slot: writing the slot would destroy them."""
    if not os.path.exists(path):
        return
    if directory_on(state_file, path):
        raise DeviceError(f"state_dir {os.path.dirname(state_file)} is on a filesystem stored in slot {slot} ({path}): "
                          f"installing would destroy the device state; put state_dir on the data partition (nothing "
                          f"was written)")
    if bundle is not None and os.path.exists(bundle) and overlap(bundle, path):
        raise DeviceError(f"{bundle} is stored in slot {slot} ({path}), the slot this install writes: copy the bundle "
                          f"to another filesystem (nothing was written)")


def open_for_writing(path: str, booted_path: str) -> int:
    """The inactive slot, opened read-write and locked (see edge.locking); refuses the booted slot
    whatever the path says."""
    if same_device(path, booted_path):
        raise DeviceError(f"{path} is the booted slot: refusing to write to the running system")
    _missing_device(path)
    fd = open_target(path, DeviceError, 0o600)
    if os.path.exists(booted_path) and os.fstat(fd).st_ino == os.stat(booted_path).st_ino and \
            os.fstat(fd).st_dev == os.stat(booted_path).st_dev:
        os.close(fd)
        raise DeviceError(f"{path} is the booted slot: refusing to write to the running system")
    return fd


def hash_slot(path: str, size: int, head: bytes | None = None) -> str:
    """sha256 of the first ``size`` bytes of a slot (``head`` stands in for its first bytes when given)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return sha256_prefix(fd, size, head or b"")
    except ShortFileError as exc:
        raise DeviceError(f"{path} ends at byte {exc.pos}, the image has {size}") from None
    finally:
        os.close(fd)
