"""Key types Edge signs with, and the one signature scheme each key type uses.

Three key types are allowed for signing certificates:

========== ===================== ===================================================
key type   signature algorithm   notes
========== ===================== ===================================================
ed25519    ``ed25519``           the default: small, fast, deterministic signatures
ecdsa-p256 ``ecdsa-p256-sha256`` ECDSA over SHA-256, DER-encoded (HSMs, TPMs)
rsa3072    ``rsa-pss-sha256``    RSA-PSS, MGF1-SHA-256, salt = 32 bytes; modulus >= 3072
========== ===================== ===================================================

The algorithm follows from the key, never from a choice the signer makes, so a
verifier cannot be talked into a weaker scheme for the same key.  Everything
here is pure: keys and bytes in, bytes or an exception out.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from .errors import BadSignatureError, CertificateUsageError, KeyFileError

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey

KEY_TYPES = ("ed25519", "ecdsa-p256", "rsa3072")
DEFAULT_KEY_TYPE = "ed25519"
MIN_RSA_BITS = 3072
MAX_RSA_BITS = 8192

ED25519 = "ed25519"
ECDSA_P256_SHA256 = "ecdsa-p256-sha256"
RSA_PSS_SHA256 = "rsa-pss-sha256"
SIGNATURE_ALGORITHMS = (ED25519, ECDSA_P256_SHA256, RSA_PSS_SHA256)

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
_PSS_VERIFY = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


def generate_private_key(key_type: str = DEFAULT_KEY_TYPE) -> PrivateKey:
    """A fresh private key of one of :data:`KEY_TYPES`."""
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise KeyFileError(f"unknown key type {key_type!r} (choose one of {', '.join(KEY_TYPES)})")


def describe_key(key: object) -> str:
    """A short human name for a key's type, for messages: 'ed25519', 'ecdsa-secp384r1', 'rsa-2048'."""
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "ed25519"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return f"ecdsa-{key.curve.name}"
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return f"rsa-{key.key_size}"
    return type(key).__name__


def signature_algorithm_for(key: object) -> str:
    """The signature algorithm a signing key must use; refuses keys Edge does not sign with.

    Raises :class:`CertificateUsageError` for an unsupported key (another curve,
    RSA below 3072 bits, DSA, Ed448...).
    """
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return ED25519
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) and isinstance(key.curve, ec.SECP256R1):
        return ECDSA_P256_SHA256
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)) and MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
        return RSA_PSS_SHA256
    raise CertificateUsageError(
        f"a {describe_key(key)} key cannot sign bundles (allowed: ed25519, ecdsa P-256, rsa {MIN_RSA_BITS}-{MAX_RSA_BITS} bits)"
    )


def sign_message(key: PrivateKey, message: bytes) -> bytes:
    """Sign ``message`` with the scheme :func:`signature_algorithm_for` picks for ``key``."""
    algorithm = signature_algorithm_for(key)
    if algorithm == ED25519:
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        return key.sign(message)
    if algorithm == ECDSA_P256_SHA256:
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key.sign(message, ec.ECDSA(hashes.SHA256()))
    assert isinstance(key, rsa.RSAPrivateKey)
    return key.sign(message, _PSS, hashes.SHA256())


def verify_message(public_key: object, algorithm: str, signature: bytes, message: bytes) -> None:
    """Check ``signature`` over ``message``; raise :class:`BadSignatureError` if it does not verify.

    ``algorithm`` is what the signature claims; it must be the one the key
    implies (so an RSA key can never be checked with anything but PSS).
    """
    expected = signature_algorithm_for(public_key)
    if algorithm != expected:
        raise BadSignatureError(f"signature algorithm {algorithm} does not match the {describe_key(public_key)} signing key ({expected})")
    try:
        if algorithm == ED25519:
            assert isinstance(public_key, ed25519.Ed25519PublicKey)
            public_key.verify(signature, message)
        elif algorithm == ECDSA_P256_SHA256:
            assert isinstance(public_key, ec.EllipticCurvePublicKey)
            public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        else:
            assert isinstance(public_key, rsa.RSAPublicKey)
            public_key.verify(signature, message, _PSS_VERIFY, hashes.SHA256())
    except (InvalidSignature, ValueError, UnsupportedAlgorithm):
        raise BadSignatureError(f"{algorithm} signature does not verify with the signing certificate's key") from None


def private_key_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM (protected by file mode 0600, see :mod:`signing.files`)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def load_private_key(data: bytes, name: str) -> PrivateKey:
    """Parse a PEM private key (PKCS#8 or traditional); ``name`` is used in messages only."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise KeyFileError(f"{name}: the private key is encrypted; Edge reads unencrypted keys kept mode 0600") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{name}: not a PEM private key ({_first_line(exc)})") from None
    if not isinstance(key, (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise KeyFileError(f"{name}: a {describe_key(key)} key is not supported")
    return key


def same_public_key(a: object, b: object) -> bool:
    """Whether two public keys are the same key (compared by their SubjectPublicKeyInfo)."""
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        return bool(a.public_bytes(serialization.Encoding.DER, fmt) == b.public_bytes(serialization.Encoding.DER, fmt))  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
