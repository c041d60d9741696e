"""Timing and peak memory of one child command, shared by the benchmarks."""

from __future__ import annotations

import subprocess
import tempfile
import time

TIME = "/usr/bin/time"  # GNU time (Debian package "time")


def timed(cmd: list[str], **kw) -> tuple[float, int, subprocess.CompletedProcess]:  # type: ignore[no-untyped-def]
    """Wall seconds, peak RSS (KiB) and the completed process of one command (output captured).

    The RSS comes from GNU time (%M) rather than this process's wait4: a child
    forked from this (larger) Python process would inherit its high-water mark
    until exec, which would hide the child's own peak.
    """
    with tempfile.NamedTemporaryFile("r") as tf:
        start = time.monotonic()
        proc = subprocess.run([TIME, "-f", "%M", "-o", tf.name, *cmd], capture_output=True, **kw)
        wall = time.monotonic() - start
        rss = int((tf.read().strip().splitlines() or ["0"])[-1] or 0)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]!r}")
    return wall, rss, proc
