"""edge.memory: freed multi-MiB buffers go back to the kernel (what keeps the applier's peak RSS bounded)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import sys
from edge.memory import return_large_buffers_promptly
if sys.argv[1] == "on":
    assert return_large_buffers_promptly()
def rss_mib():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / (1 << 20)
big = b"x" * (16 << 20)  # one large buffer freed: glibc then raises its mmap threshold to its size
del big
bufs = [b"y" * (2 << 20) for _ in range(20)]  # 40 MiB of 2 MiB buffers, then all but the last freed
last = bufs[-1]
del bufs
print(rss_mib())
"""


def _rss_after_free(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], check=True, capture_output=True, text=True)
    return float(out.stdout)


def test_freed_large_buffers_leave_the_resident_set():
    kept = _rss_after_free("off")
    returned = _rss_after_free("on")
    assert kept - returned > 25, (kept, returned)  # measured 53 vs 15 MiB: the 38 MiB freed stay resident without it
