"""`edge keys` through the real command line: files, modes, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from tests.conftest import require_tool, run

EDGE = os.path.join(os.path.dirname(sys.executable), "edge")  # the console script of the venv running the tests


def edge(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([EDGE, *args], capture_output=True, text=True, env={"EDGE_NO_PROGRESS": "1", "PATH": "/usr/bin:/bin"})
    if check and result.returncode != 0:
        raise AssertionError(f"edge {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edge: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_full_key_lifecycle(tmp_path):
    openssl = require_tool("openssl")
    ca, out = tmp_path / "ca", tmp_path / "keys"
    init = edge("keys", "ca", "init", str(ca), "--name", "Test Root", "--json")
    info = json.loads(init.stdout)
    assert info["subject"] == "CN=Test Root" and (ca / "root.crt").exists()
    assert mode(ca / "root.key") == 0o600

    for key_type in ("ed25519", "ecdsa-p256", "rsa3072"):
        issued = edge("keys", "issue", "--ca", str(ca), "--name", f"rel-{key_type}", "--type", key_type, "--days", "90",
                      "-o", str(out))
        assert "PRIVATE KEY" not in issued.stdout + issued.stderr
        assert mode(out / f"rel-{key_type}.key") == 0o600 and mode(out / f"rel-{key_type}.crt") == 0o644
        ok = run(openssl, "verify", "-purpose", "any", "-CAfile", str(ca / "root.crt"), str(out / f"rel-{key_type}.crt"), check=False)
        assert ok.returncode == 0, ok.stdout + ok.stderr

    revoked = edge("keys", "revoke", "--ca", str(ca), str(out / "rel-ecdsa-p256.crt"), "--json")
    serial = json.loads(revoked.stdout)["serial"]
    again = edge("keys", "revoke", "--ca", str(ca), str(out / "rel-ecdsa-p256.crt"))
    assert "already revoked" in again.stdout

    crl = tmp_path / "crl.pem"
    made = json.loads(edge("keys", "crl", "--ca", str(ca), "-o", str(crl), "--json").stdout)
    assert made["revoked"] == [serial] and made["number"] == 1
    text = run(openssl, "crl", "-in", str(crl), "-noout", "-text").stdout
    assert serial.upper().zfill(len(serial) + len(serial) % 2) in text
    assert run(openssl, "crl", "-in", str(crl), "-noout", "-CAfile", str(ca / "root.crt"), check=False).returncode == 0


def test_private_keys_are_never_printed(tmp_path):
    for args in (["keys", "ca", "init", str(tmp_path / "ca")], ["keys", "ca", "init", str(tmp_path / "ca2"), "--json"],
                 ["keys", "issue", "--ca", str(tmp_path / "ca"), "--name", "a", "-o", str(tmp_path / "k"), "--json"]):
        result = edge(*args)
        assert "PRIVATE" not in result.stdout and "PRIVATE" not in result.stderr
        assert (tmp_path / "ca" / "root.key").read_text().split("\n")[1] not in result.stdout


def test_errors_are_one_line_with_exit_codes(tmp_path):
    edge("keys", "ca", "init", str(tmp_path / "ca"))
    assert_one_line_error(edge("keys", "ca", "init", str(tmp_path / "ca"), check=False), 7, "already holds root.key")
    assert_one_line_error(edge("keys", "issue", "--ca", str(tmp_path / "nope"), "--name", "x", "-o", str(tmp_path / "k"),
                               check=False), 7, "not a CA directory")
    assert_one_line_error(edge("keys", "issue", "--ca", str(tmp_path / "ca"), "--name", "bad/name", "-o", str(tmp_path / "k"),
                               check=False), 7, "certificate name 'bad/name'")
    edge("keys", "issue", "--ca", str(tmp_path / "ca"), "--name", "dup", "-o", str(tmp_path / "k"))
    assert_one_line_error(edge("keys", "issue", "--ca", str(tmp_path / "ca"), "--name", "dup", "-o", str(tmp_path / "k"),
                               check=False), 7, "dup.crt: already exists")
    other = tmp_path / "other"
    edge("keys", "ca", "init", str(other))
    edge("keys", "issue", "--ca", str(other), "--name", "foreign", "-o", str(tmp_path / "f"))
    assert_one_line_error(edge("keys", "revoke", "--ca", str(tmp_path / "ca"), str(tmp_path / "f" / "foreign.crt"), check=False),
                          7, "was not issued by this CA")
    assert_one_line_error(edge("keys", "revoke", "--ca", str(tmp_path / "ca"), str(tmp_path / "missing.crt"), check=False),
                          3, "missing.crt")
    (tmp_path / "junk.crt").write_text("junk")
    assert_one_line_error(edge("keys", "revoke", "--ca", str(tmp_path / "ca"), str(tmp_path / "junk.crt"), check=False),
                          7, "junk.crt: not a PEM or DER X.509 certificate")


@pytest.mark.parametrize("bad", ["0", "-3", "x"])
def test_bad_days_is_a_usage_error(tmp_path, bad):
    result = edge("keys", "ca", "init", str(tmp_path / "ca"), "--days", bad, check=False)
    assert result.returncode == 2 and "--days" in result.stderr
    assert not (tmp_path / "ca").exists()
