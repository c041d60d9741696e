"""Installing from a URL: ranged GETs over loopback, reconnects after a dropped connection, resume after a cut."""

from __future__ import annotations

import http.server
import os
import re
import threading

import pytest

from edge.device import DownloadError, Installer, load_config, status
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


def test_a_server_answering_another_range_is_a_download_error(tmp_path, artifacts, server):
    """The device reads the bundle with ranged GETs (the payload, the rest after a dropped connection); a
    server or proxy that answers from another byte is a download fault to retry later (exit 14), not a
    damaged bundle (exit 8)."""
    d = str(tmp_path / "board")
    sim.create(d, "x86-64-efi", artifacts["images"][1], keyring=artifacts["pki"]["keyring"])
    server.range_early = 7
    with pytest.raises(DownloadError, match=r"asked for the bytes from \d+, the server sent bytes \d+-") as info:
        Installer(load_config(os.path.join(d, "device.yaml"))).install(url(server, artifacts["bundles"][("x86-64-efi", "v2")]))
    asked, sent = map(int, re.search(r"from (\d+), the server sent bytes (\d+)-", str(info.value)).groups())
    assert asked - sent == 7 and asked > 0


def test_missing_url_is_a_clear_error(tmp_path, artifacts, server):
    d = str(tmp_path / "board")
    sim.create(d, "x86-64-efi", artifacts["images"][1], keyring=artifacts["pki"]["keyring"])
    with pytest.raises(DownloadError, match="HTTP 404"):
        Installer(load_config(os.path.join(d, "device.yaml"))).install(url(server, "nope.edgeb"))


def test_download_failures_exit_14_with_one_line(tmp_path, artifacts, server, monkeypatch, capsys):
    """A fleet agent tells "try again later" (14) from a bad update (7-10) and a device fault (11)."""
    import socket

    from edge.device import source
    from tests.device.helpers import run_edge

    monkeypatch.setattr(source, "RETRIES", 0)  # (5 retries with backoff take 15 s)
    d = str(tmp_path / "board")
    sim.create(d, "x86-64-efi", artifacts["images"][1], keyring=artifacts["pki"]["keyring"])
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/x.edgeb"
    state = open(load_config(os.path.join(d, "device.yaml")).state_file).read()
    for where, needle in ((url(server, "nope.edgeb"), "HTTP 404 "), (closed, "cannot download (")):
        capsys.readouterr()
        assert run_edge("--config", os.path.join(d, "device.yaml"), "install", where) == 14
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("edge: error: ") and needle in lines[0], lines
    assert open(load_config(os.path.join(d, "device.yaml")).state_file).read() == state


def _corrupt_copy(src: str, dst: str, offset_from_end: int) -> str:
    data = bytearray(open(src, "rb").read())
    data[len(data) - offset_from_end] ^= 0x40
    open(dst, "wb").write(data)
    return dst


def test_a_download_that_fails_mid_slot_is_recorded_and_one_that_fails_first_changes_nothing(tmp_path, artifacts, server):
    """A download is checked chunk by chunk as it streams: a bad chunk after some were written leaves
    the slot marked 'installing' with the reason as the last error; a bad first chunk leaves the
    state as it was (nothing was written)."""
    from edge.bundle import BundleError
    from tests.device.helpers import run_edge, sha256

    pki = artifacts["pki"]
    bundle = str(tmp_path / "small-chunks.edgeb")
    assert run_edge("bundle", "create", artifacts["images"][2], "--key", pki["key"], "--cert", pki["cert"],
                    "--compatible", "edge,x86-64-efi", "--version", "2.0.0", "--security-version", "2", "--chunk-size", "4K",
                    "-o", bundle) == 0
    server.root = str(tmp_path)
    size = os.path.getsize(bundle)
    from edge.bundle import open_bundle

    with open_bundle(bundle) as b:
        payload_at = b.payload_offset
    late = _corrupt_copy(bundle, str(tmp_path / "late.edgeb"), 10)  # the last chunk
    early = _corrupt_copy(bundle, str(tmp_path / "early.edgeb"), size - payload_at - 10)  # the first chunk

    d = str(tmp_path / "board")
    sim.create(d, "x86-64-efi", artifacts["images"][1], keyring=pki["keyring"])
    cfg = load_config(os.path.join(d, "device.yaml"))
    state_before, a_before = open(cfg.state_file).read(), sha256(cfg.slots["A"])
    with pytest.raises(BundleError, match="chunk 0"):
        Installer(cfg).install(url(server, early))
    assert open(cfg.state_file).read() == state_before
    with pytest.raises(BundleError) as err:
        Installer(cfg).install(url(server, late))
    info = status(cfg)
    assert info["slots"]["B"]["status"] == "installing"
    assert str(err.value) in info["last_error"]["message"] and info["last_error"]["exit_code"] == err.value.exit_code
    assert sha256(cfg.slots["A"]) == a_before


def test_content_range_values_parse_back():
    """What RFC 9110 allows in a 206's Content-Range, and nothing else: a malformed value never yields
    a start that could pass for the asked one."""
    from hypothesis import given
    from hypothesis import strategies as st

    from edge.device.source import _content_range

    @given(st.integers(0, 1 << 50), st.integers(0, 1 << 30), st.one_of(st.none(), st.integers(0, 1 << 50)))
    def check(first, span, total):
        assert _content_range(f"bytes {first}-{first + span}/{'*' if total is None else total}") == (first, total)

    check()
    for bad in ("", "bytes 5-", "bytes 5-9", "bytes=5-9/10", "items 5-9/10", "bytes -5-9/10", "bytes 5-9/10 x", "bytes */10"):
        assert _content_range(bad) == (None, None), bad


# What misbehaving servers (or a captive portal, a broken proxy, a port that speaks another protocol)
# answer: each is a download fault (exit 14, try again later), told in one short line, the state kept.
MISBEHAVING = {
    "not HTTP": (b"SSH-2.0-OpenSSH_9.2\r\n", "the answer is not HTTP: it starts 'SSH-2.0-OpenSSH_9.2'"),
    "a redirect loop": (b"HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n",
                        "HTTP 302: too many redirects"),
    "too many headers": (b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n",
                         "got more than 100 headers"),
    "a 70 KB header line": (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", "header line"),
    "a broken chunked body": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n", "chunked encoding"),
    "a 60 KB reason phrase": (b"HTTP/1.1 403 " + b"\x1b[2J" + b"denied " * 9000 + b"\r\nContent-Length: 0\r\n\r\n",
                              "HTTP 403 \x1b[2Jdenied denied"),
}


@pytest.mark.parametrize("what", sorted(MISBEHAVING))
def test_a_misbehaving_server_is_a_download_error_in_one_short_line(tmp_path, artifacts, monkeypatch, capsys, what):
    import socket

    from edge.device import source
    from tests.device.helpers import run_edge

    reply, needle = MISBEHAVING[what]
    monkeypatch.setattr(source, "RETRIES", 0)
    d = str(tmp_path / "board")
    sim.create(d, "x86-64-efi", artifacts["images"][1], keyring=artifacts["pki"]["keyring"])
    cfg = os.path.join(d, "device.yaml")
    state = open(load_config(cfg).state_file).read()

    listener = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            with conn:
                try:
                    conn.recv(65536)
                    conn.sendall(reply)
                except OSError:
                    pass

    threading.Thread(target=answer, daemon=True).start()
    try:
        code = run_edge("--config", cfg, "install", f"http://127.0.0.1:{listener.getsockname()[1]}/b.edgeb")
    finally:
        listener.close()
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert code == 14, err
    assert len(lines) == 1 and len(lines[0]) < 250, lines
    assert needle.replace("\x1b", "\\x1b") in lines[0], lines[0]
    assert "\x1b" not in err and "\r" not in err
    assert open(load_config(cfg).state_file).read() == state


@pytest.mark.parametrize("bad, why", [
    ("http://", "no host"), ("http://[::1", "invalid ipv6 url"), ("http://127.0.0.1:99999/b", "port out of range"),
    ("http://127.0.0.1:port/b", "port could not be cast"), ("http://h st/b", "a space or a control character"),
    ("http://user:secret@127.0.0.1/b", "user names and passwords"),
])
def test_a_url_that_no_retry_could_download_is_a_usage_error(tmp_path, artifacts, capsys, monkeypatch, bad, why):
    """'http://[::1' was an internal error (exit 70); the others were retried with backoff for 15 s and
    then reported as a download fault (exit 14, "try again later")."""
    from edge.device import source
    from tests.device.helpers import run_edge

    monkeypatch.setattr(source, "RETRIES", 0)

    d = str(tmp_path / "board")
    sim.create(d, "x86-64-efi", artifacts["images"][1], keyring=artifacts["pki"]["keyring"])
    cfg = os.path.join(d, "device.yaml")
    state = open(load_config(cfg).state_file).read()
    for args in (["--config", cfg, "install", bad],
                 ["delta", "apply", artifacts["images"][1], bad, "-o", str(tmp_path / "t.img")]):
        capsys.readouterr()
        assert run_edge(*args) == 2, args
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"edge: error: {bad}: not a URL Edge can download: "), lines
        assert why in lines[0], lines
    assert open(load_config(cfg).state_file).read() == state
    assert not os.path.exists(tmp_path / "t.img")
