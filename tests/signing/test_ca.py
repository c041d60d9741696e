"""The CA directory: files, modes, index, revocation and CRLs; openssl checks what we write is valid X.509."""

from __future__ import annotations

import datetime
import json
import stat

import pytest
from cryptography import x509

from signing.ca import CertificateAuthority
from signing.certs import utc_now
from signing.chain import validate_signing_chain
from signing.errors import CertificateAuthorityError, CertificateRevokedError, KeyFileError
from signing.files import load_crls, load_keyring, read_certificate, write_file_atomic
from signing.keys import KEY_TYPES
from tests.conftest import require_tool, run
from tests.signing.pki import NOW


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def ca(tmp_path):
    return CertificateAuthority.init(tmp_path / "ca")


def test_init_layout_and_modes(tmp_path):
    ca = CertificateAuthority.init(tmp_path / "ca", name="Fleet Root", key_type="ecdsa-p256")
    d = tmp_path / "ca"
    assert sorted(p.name for p in d.iterdir()) == ["index.json", "root.crt", "root.key"]
    assert mode(d) == 0o700 and mode(d / "root.key") == 0o600 and mode(d / "root.crt") == 0o644
    assert b"PRIVATE KEY" in (d / "root.key").read_bytes()
    cert = read_certificate(d / "root.crt")
    assert cert == ca.certificate and cert.subject.rfc4514_string() == "CN=Fleet Root"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert json.loads((d / "index.json").read_text()) == {"format": 1, "crl_number": 0, "certificates": []}
    with pytest.raises(CertificateAuthorityError, match="already holds root.key"):
        CertificateAuthority.init(d)


@pytest.mark.parametrize("ca_type", KEY_TYPES)
@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_issue_each_type_is_accepted_by_openssl_and_our_validator(tmp_path, ca_type, key_type):
    openssl = require_tool("openssl")
    ca = CertificateAuthority.init(tmp_path / "ca", key_type=ca_type)
    crt, key, cert = ca.issue_to_files(f"signer-{key_type}", tmp_path / "out", key_type=key_type, days=30)
    assert mode(tmp_path / "out" / f"signer-{key_type}.key") == 0o600
    root = str(tmp_path / "ca" / "root.crt")
    result = run(openssl, "verify", "-purpose", "any", "-CAfile", root, crt, check=False)
    assert result.returncode == 0 and result.stdout.strip().endswith(": OK"), result.stdout + result.stderr
    text = run(openssl, "x509", "-in", crt, "-noout", "-text").stdout
    assert "Code Signing" in text and "CA:FALSE" in text and "Digital Signature" in text
    chain = validate_signing_chain(cert, [], load_keyring(root), at=utc_now())
    assert chain.signer_name == f"signer-{key_type}"
    ends = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert ends == datetime.timedelta(days=30)


def test_openssl_refuses_a_certificate_from_another_ca(ca, tmp_path):
    openssl = require_tool("openssl")
    other = CertificateAuthority.init(tmp_path / "other")
    crt, _, _ = other.issue_to_files("x", tmp_path / "out")
    result = run(openssl, "verify", "-purpose", "any", "-CAfile", str(tmp_path / "ca" / "root.crt"), crt, check=False)
    assert result.returncode != 0


def test_issue_refuses_bad_names_and_existing_files(ca, tmp_path):
    with pytest.raises(CertificateAuthorityError, match="certificate name '../evil'"):
        ca.issue_to_files("../evil", tmp_path / "out")
    ca.issue_to_files("rel", tmp_path / "out")
    with pytest.raises(KeyFileError, match="rel.crt: already exists"):
        ca.issue_to_files("rel", tmp_path / "out")


def test_issue_cannot_outlive_the_ca(tmp_path):
    ca = CertificateAuthority.init(tmp_path / "ca", days=10, now=NOW)
    with pytest.raises(CertificateAuthorityError, match="would outlive the CA .* use --days 9 or fewer"):
        ca.issue("long", days=30, now=NOW + datetime.timedelta(hours=1))
    assert ca.issue("short", days=9, now=NOW + datetime.timedelta(hours=1))[0].not_valid_after_utc < ca.certificate.not_valid_after_utc


def test_revoke_and_crl(ca, tmp_path):
    openssl = require_tool("openssl")
    crt, _, cert = ca.issue_to_files("bad", tmp_path / "out")
    ca.issue_to_files("good", tmp_path / "out")
    assert ca.revoke(cert) is True
    assert ca.revoke(cert) is False  # idempotent
    index = json.loads((tmp_path / "ca" / "index.json").read_text())
    by_name = {c["name"]: c for c in index["certificates"]}
    assert by_name["bad"]["revoked"] and by_name["good"]["revoked"] is None
    assert by_name["bad"]["serial"] == f"{cert.serial_number:x}"

    crl_path = tmp_path / "crl.pem"
    from cryptography.hazmat.primitives import serialization
    write_file_atomic(crl_path, ca.make_crl().public_bytes(serialization.Encoding.PEM))
    assert json.loads((tmp_path / "ca" / "index.json").read_text())["crl_number"] == 1
    text = run(openssl, "crl", "-in", str(crl_path), "-noout", "-text").stdout
    serial_hex = f"{cert.serial_number:X}"
    assert f"Serial Number: {serial_hex.zfill(len(serial_hex) + len(serial_hex) % 2)}" in text
    assert "X509v3 CRL Number" in text
    verified = run(openssl, "crl", "-in", str(crl_path), "-noout", "-CAfile", str(tmp_path / "ca" / "root.crt"), check=False)
    assert verified.returncode == 0 and "verify OK" in verified.stdout + verified.stderr
    crls = load_crls(crl_path)
    with pytest.raises(CertificateRevokedError):
        validate_signing_chain(cert, [], load_keyring(tmp_path / "ca" / "root.crt"), at=utc_now(), crls=crls)
    assert CertificateAuthority.open(tmp_path / "ca").make_crl().extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2


def test_revoke_refuses_foreign_certificates(ca, tmp_path):
    other = CertificateAuthority.init(tmp_path / "other")
    cert, _ = other.issue("foreign")
    with pytest.raises(CertificateAuthorityError, match="CN=foreign .* was not issued by this CA"):
        ca.revoke(cert)


def test_open_checks_the_directory(tmp_path, ca):
    with pytest.raises(CertificateAuthorityError, match="not a CA directory \\(no root.crt"):
        CertificateAuthority.open(tmp_path)
    (tmp_path / "ca" / "index.json").write_text("{not json")
    with pytest.raises(CertificateAuthorityError, match="index.json: not valid JSON"):
        CertificateAuthority.open(tmp_path / "ca")


def test_commands_at_the_same_time_lose_nothing(tmp_path):
    """Six 'edge keys' commands of each kind at once on one CA. Each re-reads the index under the CA's
    lock: before, six issues left one record in the index, six revocations gave a CRL with three of
    them (three revoked keys still trusted) and six CRLs shared two numbers."""
    import subprocess
    import sys

    ca_dir = tmp_path / "ca"
    CertificateAuthority.init(ca_dir)
    edge = [sys.executable, "-m", "edge", "keys"]

    def at_once(commands: list[list[str]]) -> None:
        procs = [subprocess.Popen(edge + c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in commands]
        for p in procs:
            assert p.wait() == 0, p.stderr.read() if p.stderr else ""

    names = [f"n{i}" for i in range(6)]
    at_once([["issue", "--ca", str(ca_dir), "--name", n, "-o", str(tmp_path / n)] for n in names])
    index = json.loads((ca_dir / "index.json").read_text())
    assert sorted(c["name"] for c in index["certificates"]) == names
    at_once([["crl", "--ca", str(ca_dir), "-o", str(tmp_path / f"{n}.crl")] for n in names])
    numbers = sorted(x509.load_pem_x509_crl((tmp_path / f"{n}.crl").read_bytes())
                     .extensions.get_extension_for_class(x509.CRLNumber).value.crl_number for n in names)
    assert numbers == [1, 2, 3, 4, 5, 6]
    at_once([["revoke", "--ca", str(ca_dir), str(tmp_path / n / f"{n}.crt")] for n in names])
    at_once([["crl", "--ca", str(ca_dir), "-o", str(tmp_path / "all.crl")]])
    crl = x509.load_pem_x509_crl((tmp_path / "all.crl").read_bytes())
    issued = {read_certificate(tmp_path / n / f"{n}.crt").serial_number for n in names}
    assert {entry.serial_number for entry in crl} == issued


def test_a_ca_held_too_long_is_busy(ca, monkeypatch):
    import fcntl
    import os

    from edge.locking import BusyError
    from signing import ca as ca_module

    monkeypatch.setattr(ca_module, "LOCK_WAIT", 0.3)
    fd = os.open(os.path.join(ca.directory, ca_module.INDEX_LOCK), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another command holding the CA
        with pytest.raises(BusyError, match="another 'edge keys' command has held the CA"):
            ca.make_crl()
        assert json.loads(open(ca.directory + "/index.json").read())["crl_number"] == 0  # nothing was changed
    finally:
        os.close(fd)
    ca.make_crl()
    assert json.loads(open(ca.directory + "/index.json").read())["crl_number"] == 1
