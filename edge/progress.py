"""Progress bars for long work: drawn on stderr, only when it is a terminal."""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class Progress:
    """A one-line progress bar.  ``update(done, total)`` is cheap to call often.

    Disabled (a no-op) when the stream is not a TTY or ``EDGE_NO_PROGRESS`` is set,
    so logs and pipes only ever see the final plain output.
    """

    def __init__(self, label: str, *, unit: str = "bytes", stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            enabled = self.stream.isatty() and not os.environ.get("EDGE_NO_PROGRESS")
        self.enabled = enabled
        self._last = 0.0
        self._start = time.monotonic()
        self._drawn = False

    def update(self, done: int, total: int | None = None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and (total is None or done < total):
            return
        self._last = now
        elapsed = max(now - self._start, 1e-6)
        if self.unit == "bytes":
            amount = human_bytes(done) + (f" / {human_bytes(total)}" if total else "")
            rate = f" {human_bytes(done / elapsed)}/s"
        else:
            amount = f"{done}" + (f" / {total}" if total else "") + f" {self.unit}"
            rate = ""
        if total:
            frac = min(max(done / total, 0.0), 1.0)
            width = 30
            fill = int(frac * width)
            bar = "[" + "#" * fill + "-" * (width - fill) + f"] {frac * 100:5.1f}%"
        else:
            bar = ""
        self.stream.write(f"\r\x1b[K{self.label} {bar} {amount}{rate}")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
