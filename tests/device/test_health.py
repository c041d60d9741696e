"""Health checks are commands run at boot: whatever they print or leave behind, the check ends in a
result within its timeout, in bounded memory, with nothing of it left running."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from edge.device.config import HealthConfig
from edge.device.health import TAIL, run_health_checks


def _check(command: str, timeout: float = 20.0):
    return run_health_checks(HealthConfig(timeout=timeout, commands=(command,)))


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie waiting for init is dead too
    except FileNotFoundError:
        return True


def test_output_that_is_not_utf8_is_reported_not_raised():
    """A check printing binary bytes ended boot-check in UnicodeDecodeError (exit 70): no commit, no
    rollback, only the bootloader's attempt counter left to act."""
    result = _check("printf 'status: \\377\\376 bad\\n' >&2; exit 4")
    assert not result.ok
    assert result.reason.endswith("exited 4: status: \ufffd\ufffd bad")
    assert result.checks[0]["exit_code"] == 4


def test_a_flood_of_output_costs_no_memory():
    """300 MB on stdout, then a last line on stderr: the runner keeps only the end of each stream. It
    took 2.3 GB of memory for 400 MB before."""
    # the peak is VmHWM: ru_maxrss would carry over the forking pytest worker's own peak across exec
    code = ("from edge.device.health import run_health_checks; "
            "from edge.device.config import HealthConfig; "
            "r = run_health_checks(HealthConfig(timeout=60, commands=("
            "'yes | head -c 300000000; echo done >&2; exit 1',))); "
            "print(r.reason); "
            "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')) // 1024)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    reason, peak_mib = proc.stdout.splitlines()
    assert reason.endswith("exited 1: done")
    assert int(peak_mib) < 80, f"peak RSS {peak_mib} MiB"


def test_the_end_of_the_output_is_kept():
    result = _check(f"head -c {3 * TAIL} /dev/zero | tr '\\\\0' x; echo; echo 'the last line'; exit 2")
    assert result.reason.endswith("exited 2: the last line")


def test_a_timeout_kills_everything_the_check_started(tmp_path):
    pidfile = tmp_path / "pid"
    started = time.monotonic()
    result = _check(f"sleep 60 & echo $! > {pidfile}; sleep 60", timeout=1.0)
    assert time.monotonic() - started < 10
    assert not result.ok and "timed out" in result.reason
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(pid), "the check's background sleep outlived its timeout"


def test_a_background_process_left_holding_the_output_is_not_waited_for(tmp_path):
    """The check exits 0 at once but leaves a process with its stdout open: the result does not wait
    for that process (it used to, until the health timeout, and then failed the boot)."""
    started = time.monotonic()
    result = _check("sleep 30 & echo started; exit 0", timeout=15.0)
    assert result.ok, result.reason
    assert time.monotonic() - started < 5


def test_a_check_reading_stdin_gets_end_of_file_at_once():
    started = time.monotonic()
    result = _check("cat; exit 0", timeout=15.0)
    assert result.ok and time.monotonic() - started < 5


def test_environment_reaches_the_check():
    result = run_health_checks(HealthConfig(timeout=10, commands=('test "$EDGE_SLOT" = B',)), {"EDGE_SLOT": "B"})
    assert result.ok
    assert not run_health_checks(HealthConfig(timeout=10, commands=('test "$EDGE_SLOT" = B',)), {"EDGE_SLOT": "A"}).ok
    assert os.environ.get("EDGE_SLOT") is None
