"""Key types, signature schemes and key files; openssl is the independent verifier."""

from __future__ import annotations

import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from signing.errors import BadSignatureError, CertificateUsageError, KeyFileError
from signing.files import read_private_key, write_private_key
from signing.keys import (
    KEY_TYPES,
    generate_private_key,
    load_private_key,
    sign_message,
    signature_algorithm_for,
    verify_message,
)
from tests.conftest import require_tool, run

MESSAGE = b"Edge bundle manifest v1\x00{\"version\":\"1.0.0\"}"


@pytest.fixture(scope="module", params=KEY_TYPES)
def key(request):
    return generate_private_key(request.param)


def test_sign_and_verify_each_key_type(key):
    algorithm = signature_algorithm_for(key)
    signature = sign_message(key, MESSAGE)
    verify_message(key.public_key(), algorithm, signature, MESSAGE)
    with pytest.raises(BadSignatureError, match="does not verify"):
        verify_message(key.public_key(), algorithm, signature, MESSAGE + b"x")
    with pytest.raises(BadSignatureError, match="does not verify"):
        verify_message(key.public_key(), algorithm, bytes([signature[0] ^ 1]) + signature[1:], MESSAGE)


def test_signature_from_another_key_of_the_same_type_fails(key):
    other = generate_private_key({"ed25519": "ed25519", "ecdsa-p256-sha256": "ecdsa-p256",
                                  "rsa-pss-sha256": "rsa3072"}[signature_algorithm_for(key)])
    with pytest.raises(BadSignatureError):
        verify_message(key.public_key(), signature_algorithm_for(key), sign_message(other, MESSAGE), MESSAGE)


def test_algorithm_must_match_the_key():
    ed = generate_private_key("ed25519")
    with pytest.raises(BadSignatureError, match="rsa-pss-sha256 does not match the ed25519 signing key"):
        verify_message(ed.public_key(), "rsa-pss-sha256", sign_message(ed, MESSAGE), MESSAGE)


@pytest.mark.parametrize("weak", [
    lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    lambda: ec.generate_private_key(ec.SECP384R1()),
])
def test_weak_or_other_keys_are_refused(weak):
    with pytest.raises(CertificateUsageError, match="cannot sign bundles"):
        signature_algorithm_for(weak())


def test_unknown_key_type():
    with pytest.raises(KeyFileError, match="unknown key type 'dsa'"):
        generate_private_key("dsa")


def test_openssl_verifies_our_signatures(key, tmp_path):
    """An independent implementation accepts each scheme exactly as documented (PSS salt 32, DER ECDSA)."""
    openssl = require_tool("openssl")
    algorithm = signature_algorithm_for(key)
    msg, sig, pub = tmp_path / "msg", tmp_path / "sig", tmp_path / "pub.pem"
    msg.write_bytes(MESSAGE)
    sig.write_bytes(sign_message(key, MESSAGE))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    if algorithm == "ed25519":
        cmd = [openssl, "pkeyutl", "-verify", "-pubin", "-inkey", str(pub), "-rawin", "-in", str(msg), "-sigfile", str(sig)]
    elif algorithm == "ecdsa-p256-sha256":
        cmd = [openssl, "dgst", "-sha256", "-verify", str(pub), "-signature", str(sig), str(msg)]
    else:
        cmd = [openssl, "dgst", "-sha256", "-verify", str(pub), "-signature", str(sig), "-sigopt", "rsa_padding_mode:pss",
               "-sigopt", "rsa_pss_saltlen:32", str(msg)]
    result = run(*cmd, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Verified OK" in result.stdout or "Signature Verified Successfully" in result.stdout
    msg.write_bytes(MESSAGE + b"tampered")  # and the same check refuses a different message
    assert run(*cmd, check=False).returncode != 0


def test_private_key_file_is_0600_and_never_overwritten(tmp_path):
    key = generate_private_key("ed25519")
    path = tmp_path / "k.key"
    old_umask = os.umask(0)  # even a permissive umask must not widen the mode
    try:
        write_private_key(path, key)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_private_key(path).public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) == \
        key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    with pytest.raises(KeyFileError, match="already exists"):
        write_private_key(path, generate_private_key("ed25519"))
    assert [p.name for p in tmp_path.iterdir()] == ["k.key"]  # no temporary left behind


def test_malformed_and_encrypted_keys(tmp_path):
    with pytest.raises(KeyFileError, match="bad.key: not a PEM private key"):
        load_private_key(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "bad.key")
    encrypted = generate_private_key("ed25519").private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw"))
    with pytest.raises(KeyFileError, match="enc.key: the private key is encrypted"):
        load_private_key(encrypted, "enc.key")
