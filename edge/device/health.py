"""Health checks: commands that must succeed and systemd units that must be active, within a timeout."""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass

from .config import HealthConfig


@dataclass
class HealthResult:
    ok: bool
    reason: str
    checks: list[dict]


def run_health_checks(health: HealthConfig, env: dict[str, str] | None = None) -> HealthResult:
    """Run every check in order; the first failure (or the overall timeout) decides."""
    deadline = time.monotonic() + health.timeout
    environ = {**os.environ, **(env or {})}
    results: list[dict] = []
    checks = [("command", c) for c in health.commands] + [("unit", u) for u in health.units]
    if health.units and shutil.which("systemctl") is None:
        return HealthResult(False, "systemd units are configured but systemctl is not available", results)
    for kind, what in checks:
        left = deadline - time.monotonic()
        if left <= 0:
            return HealthResult(False, f"health checks timed out after {health.timeout:g}s (before {kind} {what!r})", results)
        argv = ["sh", "-c", what] if kind == "command" else ["systemctl", "is-active", "--quiet", what]
        returncode, out, err = _run(argv, environ, left)
        if returncode is None:
            results.append({"kind": kind, "check": what, "ok": False, "detail": "timed out"})
            return HealthResult(False, f"{kind} {what!r} timed out (health timeout {health.timeout:g}s)", results)
        detail = (err.strip() or out.strip()).splitlines()[-1:] or [""]
        results.append({"kind": kind, "check": what, "ok": returncode == 0, "exit_code": returncode,
                        "detail": detail[0][:300]})
        if returncode != 0:
            why = f": {detail[0][:200]}" if detail[0] else ""
            if kind == "unit":
                return HealthResult(False, f"systemd unit {what} is not active{why}", results)
            label = what if len(what) <= 40 else what[:37] + "..."
            return HealthResult(False, f"check {label!r} exited {returncode}{why}", results)
    return HealthResult(True, "all health checks passed" if checks else "no health checks configured", results)


TAIL = 64 << 10  # the output kept of each stream: the report shows its last line
AFTER_EXIT = 1.0  # seconds to read what a check's leftover processes still write once it has exited


def _run(argv: list[str], env: dict[str, str], timeout: float) -> tuple[int | None, str, str]:
    """Run one check: (exit code, or None if it timed out; the end of its stdout; of its stderr).

    Only the last 64 KiB of each stream are kept, so a check that floods its output (``yes``) costs no
    memory; undecodable bytes become U+FFFD. The check runs in its own session: on timeout the whole
    group is killed (``sleep 60; true`` left its sleep running), and a background process it leaves
    holding the pipes is not waited for beyond AFTER_EXIT.
    """
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None and proc.stderr is not None
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    tails = {out_fd: bytearray(), err_fd: bytearray()}
    deadline = time.monotonic() + timeout
    exited: float | None = None
    try:
        with selectors.DefaultSelector() as sel:
            for fd in tails:
                sel.register(fd, selectors.EVENT_READ)
            while sel.get_map():
                now = time.monotonic()
                if exited is None and proc.poll() is not None:
                    exited = now
                until = deadline if exited is None else min(deadline, exited + AFTER_EXIT)
                if now >= until:
                    break
                for key, _ in sel.select(min(until - now, 0.1)):
                    chunk = os.read(key.fd, 1 << 16)
                    if not chunk:
                        sel.unregister(key.fd)
                        continue
                    tail = tails[key.fd]
                    tail += chunk
                    del tail[:-TAIL]
        try:
            returncode: int | None = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            returncode = None
    finally:
        if proc.poll() is None:  # timed out (or interrupted): the check and everything it started
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    return returncode, tails[out_fd].decode(errors="replace"), tails[err_fd].decode(errors="replace")
