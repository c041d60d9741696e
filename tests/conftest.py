"""Shared test helpers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

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
