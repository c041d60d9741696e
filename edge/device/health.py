"""Health checks: commands that must succeed and systemd units that must be active, within a timeout."""

from __future__ import annotations

import os
import shutil
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
        try:
            proc = subprocess.run(argv, env=environ, capture_output=True, text=True, timeout=left)
        except subprocess.TimeoutExpired:
            results.append({"kind": kind, "check": what, "ok": False, "detail": "timed out"})
            return HealthResult(False, f"{kind} {what!r} timed out (health timeout {health.timeout:g}s)", results)
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or [""]
        results.append({"kind": kind, "check": what, "ok": proc.returncode == 0, "exit_code": proc.returncode,
                        "detail": detail[0][:300]})
        if proc.returncode != 0:
            why = f": {detail[0][:200]}" if detail[0] else ""
            if kind == "unit":
                return HealthResult(False, f"systemd unit {what} is not active{why}", results)
            label = what if len(what) <= 40 else what[:37] + "..."
            return HealthResult(False, f"check {label!r} exited {proc.returncode}{why}", results)
    return HealthResult(True, "all health checks passed" if checks else "no health checks configured", results)
