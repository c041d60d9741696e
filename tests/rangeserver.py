"""A loopback HTTP server with Range support, for downloads that stream and resume.

Used by the tests (dropped connections, resumes) and by bench/bench_stream.py
(a rate-capped link).
"""

from __future__ import annotations

import http.server
import os
import re
import time

CHUNK = 16 << 10


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves files from ``server.root`` with Range support (RFC 9110 single ranges).

    Optional server attributes: ``requests`` (a list; each GET appends ``(path, start)``),
    ``drop_after`` (drop the next GET's connection once after that many body bytes),
    ``drop_every`` (drop every GET's connection after that many body bytes),
    ``range_early`` (answer a ranged GET from that many bytes before the asked start, saying so in
    Content-Range, as a misbehaving proxy might) and ``rate`` (send at most that many bytes/s; a
    strict cap: a reader that stalled gets no burst to catch up).
    """

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # noqa: D401 - quiet
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        path = os.path.join(self.server.root, self.path.lstrip("/"))
        if not os.path.isfile(path):
            self.send_error(404)
            return
        size = os.path.getsize(path)
        start, end = 0, size
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if m:
            start = max(0, int(m.group(1)) - (getattr(self.server, "range_early", None) or 0))
            end = min(size, int(m.group(2)) + 1) if m.group(2) else size
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(end - start))
        self.end_headers()
        if head:
            return
        requests = getattr(self.server, "requests", None)
        if requests is not None:
            requests.append((self.path, start))
        left = end - start
        drop = getattr(self.server, "drop_after", None)
        every = getattr(self.server, "drop_every", None)
        if drop is not None and left > drop:
            self.server.drop_after = None  # drop once, mid-transfer
            left = drop
        elif every is not None and left > every:
            left = drop = every  # drop every answer after that many bytes (a flaky link)
        else:
            drop = None
        rate = getattr(self.server, "rate", None)
        due = time.monotonic()
        with open(path, "rb") as fh:
            fh.seek(start)
            while left:
                chunk = fh.read(min(CHUNK, left))
                now = time.monotonic()
                if rate and due > now:
                    time.sleep(due - now)
                try:
                    self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    return
                if rate:
                    due = max(due, now) + len(chunk) / rate
                left -= len(chunk)
        if drop is not None:
            self.wfile.flush()
            self.connection.shutdown(2)
