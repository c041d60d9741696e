"""Exclusive locks that keep two Edge processes from writing the same slot or device state at once.

Both are ``flock`` locks, released by the kernel when the process ends (a power cut or a kill leaves
no stale lock behind), and taken without waiting: a second writer is refused with a ``BusyError``
(exit code 15) instead of queueing behind an install that may run for minutes.

- ``lock_target(fd, path)``: the image being written, a file or a block device. ``edge delta apply``
  and both install paths (full and delta) take it on the target they open for writing, through
  ``open_target``, which also refuses a target that holds a mounted filesystem.
- ``device_lock(state_dir, operation)``: the device's state, for the commands that change it
  (install, boot-check, mark-good, mark-bad, rollback). The lock file names the holder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator

from edge.errors import EdgeError
from edge.storage import busy_loop_over, mounted_in

LOCK_FILE = "lock"
MAX_HOLDER_TEXT = 200  # bytes of the lock file a refusal quotes


class BusyError(EdgeError):
    """Another Edge process is writing the same target or changing the same device state: nothing was
    changed; run the command again once the other one has ended."""

    exit_code = 15


def _flock_now(fd: int) -> bool:
    """Take an exclusive flock on ``fd`` without waiting: False when another open file holds one."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


def lock_target(fd: int, path: str) -> None:
    """Hold an exclusive lock on the open target ``fd`` until it is closed; BusyError if another process holds it."""
    if not _flock_now(fd):
        raise BusyError(f"{path}: another process is writing it (an edge delta apply or edge install in "
                        f"progress); nothing was written: run this again when it has ended")


def check_target_kind(path: str, error: type[EdgeError]) -> os.stat_result | None:
    """An image is written to a regular file (created when missing) or a block device: anything else
    (a directory, a character device such as /dev/null, a FIFO, a socket) is refused with ``error``.
    Returns the target's stat, None when it does not exist yet."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise error(f"{path}: {exc.strerror}") from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise error(f"{path} is {_KINDS.get(stat.S_IFMT(st.st_mode), 'not a file')}: an image is written to a regular "
                    f"file or a block device (nothing was written)")
    return st


_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFCHR: "a character device", stat.S_IFIFO: "a FIFO",
          stat.S_IFSOCK: "a socket"}


def open_target(path: str, error: type[EdgeError], mode: int = 0o644) -> int:
    """Open the image about to be written (a file, created when missing, or a block device) read-write
    and locked (``lock_target``).

    Refused with ``error`` (nothing written) when a mounted filesystem is stored in it: mounted from
    it, from one of its partitions or from a loop device over it (``edge.storage.mounted_in``), or
    when a loop device over it is in use anywhere (``edge.storage.busy_loop_over``: a mount in another
    mount namespace, which this process's mount table does not show).
    A block device is opened exclusively (``O_EXCL``), as bmaptool does: the kernel then also refuses
    it while it is swap or under a device-mapper or RAID device, and nothing can mount it while it
    is being written."""
    st = check_target_kind(path, error)
    if st is not None:
        where = mounted_in(path)
        if where is not None:
            raise error(f"{path} holds the filesystem mounted at {where}: writing it would destroy that "
                        f"filesystem; unmount it first (nothing was written)")
        loop = busy_loop_over(path)
        if loop is not None:
            raise error(f"{path} is behind the loop device {loop}, which is in use (mounted, perhaps in another "
                        f"mount namespace, swap, or under a device-mapper or RAID device): writing it would destroy "
                        f"what uses it; release {loop} first (nothing was written)")
    if st is not None and stat.S_ISBLK(st.st_mode):
        try:
            fd = os.open(path, os.O_RDWR | os.O_EXCL | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            try:
                lock_target(fd, path)  # another Edge writer holds it: BusyError
            finally:
                os.close(fd)
            raise error(f"{path} is in use by the system (mounted, perhaps in another mount namespace, active "
                        f"swap, or under a device-mapper or RAID device); nothing was written: release it first") from None
    else:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
    try:
        lock_target(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def device_lock(state_dir: str, operation: str) -> Iterator[None]:
    """Hold the device's lock (``STATE_DIR/lock``) for ``operation``; BusyError if another process holds it."""
    os.makedirs(state_dir, exist_ok=True)
    path = os.path.join(state_dir, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _flock_now(fd):
            holder = os.pread(fd, MAX_HOLDER_TEXT, 0).decode("utf-8", "replace").strip() or "another process"
            raise BusyError(f"{path}: the device is busy ({holder}); nothing was changed: run this again when "
                            f"it has ended")
        os.ftruncate(fd, 0)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        os.pwrite(fd, f"edge {operation}, pid {os.getpid()}, since {stamp}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # (closing the file releases the lock)
