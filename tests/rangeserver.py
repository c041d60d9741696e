"""A loopback HTTP server with Range support, for downloads that stream and resume."""

from __future__ import annotations

import http.server
import os
import re


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves files from the server's directory with Range support (RFC 9110 single ranges)."""

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
        data = open(path, "rb").read()
        start, end = 0, len(data)
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if m:
            start = int(m.group(1))
            end = int(m.group(2)) + 1 if m.group(2) else len(data)
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:end]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if head:
            return
        self.server.requests.append((self.path, start))
        drop = self.server.drop_after
        if drop is not None and len(body) > drop:
            self.server.drop_after = None  # drop once, mid-transfer
            self.wfile.write(body[:drop])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)
