"""Installing from a URL: ranged GETs over loopback, reconnects after a dropped connection, resume after a cut."""

from __future__ import annotations

import http.server
import os
import re
import threading

import pytest

from edge.device import DeviceError, Installer, load_config, status
from edge.device import sim


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


@pytest.fixture()
def server(artifacts):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    srv.root = artifacts["dir"]
    srv.requests = []
    srv.drop_after = None
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()


def url(server, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/{os.path.basename(path)}"


def test_install_from_url_with_a_dropped_connection(tmp_path, artifacts, server):
    d = str(tmp_path / "board")
    sim.create(d, "x86-64-efi", artifacts["images"][1], keyring=artifacts["pki"]["keyring"])
    server.drop_after = 50_000
    result = Installer(load_config(os.path.join(d, "device.yaml"))).install(url(server, artifacts["bundles"][("x86-64-efi", "v2")]))
    assert result.slot == "B"
    # the transfer was picked up again at the byte where it broke, not from the start
    assert any(start > 0 for _, start in server.requests)
    reports = sim.reboot(d)
    assert reports[-1].check.outcome == "committed"


def test_delta_from_url(tmp_path, artifacts, server):
    d = str(tmp_path / "board")
    sim.create(d, "x86-64-efi", artifacts["images"][1], keyring=artifacts["pki"]["keyring"])
    Installer(load_config(os.path.join(d, "device.yaml"))).install(url(server, artifacts["bundles"][("x86-64-efi", "v1-v2")]))
    assert sim.reboot(d)[-1].check.outcome == "committed"
    assert status(load_config(os.path.join(d, "device.yaml")))["slots"]["B"]["version"] == "2.0.0"


def test_missing_url_is_a_clear_error(tmp_path, artifacts, server):
    d = str(tmp_path / "board")
    sim.create(d, "x86-64-efi", artifacts["images"][1], keyring=artifacts["pki"]["keyring"])
    with pytest.raises(DeviceError, match="HTTP 404"):
        Installer(load_config(os.path.join(d, "device.yaml"))).install(url(server, "nope.edgeb"))
