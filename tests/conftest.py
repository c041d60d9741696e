"""Shared test helpers."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

IS_ROOT = os.geteuid() == 0


def require_tool(name: str) -> str:
    """Path of a real tool the test checks against; fails (never skips) when missing.

    ``make test`` installs every tool the suite needs, so a missing one is a
    broken setup, not a reason to skip.
    """
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run the tests through 'make test', which installs it")
    return path


def run(*cmd: str, **kw) -> subprocess.CompletedProcess[str]:
    kw.setdefault("check", True)
    kw.setdefault("text", True)
    kw.setdefault("capture_output", True)
    return subprocess.run(list(cmd), **kw)


def run_edge(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The ``edge`` command line of the interpreter running the tests (no progress bars)."""
    env = dict(os.environ, EDGE_NO_PROGRESS="1")
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True, check=check, env=env)


def require_root() -> None:
    if not IS_ROOT:
        pytest.fail("this test needs root (loop mounts, device nodes, chown): run 'make test' as root")


@contextlib.contextmanager
def mounted_ext4(backing: str, mountpoint: str, size: int = 80 << 20) -> Iterator[str]:
    """An ext4 filesystem made in the file ``backing`` (grown to ``size``), on a loop device mounted at
    ``mountpoint``: yields the loop device. The filesystem is initialised whole (no lazy inode-table or
    journal init), so nothing writes to it while it sits idle."""
    require_root()
    with open(backing, "ab") as fh:
        fh.truncate(max(size, os.path.getsize(backing)))
    run(require_tool("mkfs.ext4"), "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", backing)
    loop = run("losetup", "--find", "--show", backing).stdout.strip()
    try:
        os.makedirs(mountpoint, exist_ok=True)
        run("mount", loop, mountpoint)
        try:
            yield loop
        finally:
            subprocess.run(["umount", mountpoint], check=False)
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)


def ext4_is_clean(device: str) -> bool:
    """Whether a full read-only e2fsck of the (unmounted) filesystem finds nothing to repair."""
    return subprocess.run([require_tool("e2fsck"), "-f", "-n", device], capture_output=True).returncode == 0


def ext4_file(image: str, path: str) -> bytes:
    """The content of ``path`` in the (unmounted) ext4 filesystem ``image``, read with debugfs."""
    return subprocess.run([require_tool("debugfs"), "-R", f"cat {path}", image], capture_output=True, check=True).stdout
