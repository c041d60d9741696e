"""Installing from a URL: ranged GETs over loopback, reconnects after a dropped connection, resume after a cut."""

from __future__ import annotations

import http.server
import os
import threading

import pytest

from edge.device import DeviceError, Installer, load_config, status
from edge.device import sim
from tests.rangeserver import RangeHandler


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
