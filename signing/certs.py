"""Building, loading and describing X.509 certificates (pure: keys, times and bytes in, certificates out).

Root CAs and signing certificates are built with the extensions the chain
validator (:mod:`signing.chain`) requires, so what ``edge keys`` issues is
exactly what devices accept:

* CA: basicConstraints CA (critical, optional pathLen), keyUsage
  keyCertSign + cRLSign (critical), subject and authority key identifiers.
* Signing certificate: basicConstraints not-CA (critical), keyUsage
  digitalSignature (critical), extendedKeyUsage codeSigning, key identifiers.

Certificates and CRLs are signed with Ed25519, ECDSA-SHA-256 or RSA PKCS#1 v1.5
SHA-256 depending on the CA key (the usual X.509 algorithms, so ``openssl``
verifies them too); bundle signatures use the schemes in :mod:`signing.keys`.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import re
import warnings
from collections.abc import Iterator

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import KeyFileError
from .keys import PrivateKey, PublicKey, _first_line, describe_key

ROOT_CA_DAYS = 20 * 365

# What cryptography raises for damaged certificate bytes.  Many fields are
# parsed lazily (on first access), so these can surface wherever a
# certificate is looked at, not only when it is loaded.
MALFORMED_CERTIFICATE: tuple[type[Exception], ...] = (
    ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion, x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType, CryptographyDeprecationWarning,
)


@contextlib.contextmanager
def strict_parsing() -> Iterator[None]:
    """Within it, what cryptography only warns about while parsing a certificate (an RFC 5280
    violation it still tolerates, e.g. a serial number that is not positive) raises instead, as a
    :class:`CryptographyDeprecationWarning`, one of :data:`MALFORMED_CERTIFICATE`.  Extensions are
    parsed on first access, so code that looks into certificates runs under it, not only loading."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", CryptographyDeprecationWarning)
        yield


def parse_der_certificate(der: bytes) -> x509.Certificate:
    """Load a DER certificate strictly (see :func:`strict_parsing`).  Raises one of
    :data:`MALFORMED_CERTIFICATE`."""
    with strict_parsing():
        return x509.load_der_x509_certificate(der)


def parse_pem_certificate(pem: bytes) -> x509.Certificate:
    """Like :func:`parse_der_certificate`, for one PEM block."""
    with strict_parsing():
        return x509.load_pem_x509_certificate(pem)
SIGNING_CERT_DAYS = 2 * 365

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def make_name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def utc_now() -> datetime.datetime:
    """The current time in whole seconds (X.509 stores seconds)."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def x509_signing_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | None:
    """The hash to pass to cryptography's ``sign()`` for certificates and CRLs made with ``key``."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return hashes.SHA384() if key.curve.key_size > 256 else hashes.SHA256()
    if isinstance(key, rsa.RSAPrivateKey):
        return hashes.SHA256()
    raise KeyFileError(f"a {describe_key(key)} key cannot sign certificates")


def _base_builder(subject: x509.Name, issuer: x509.Name, public_key: PublicKey, not_before: datetime.datetime,
                  days: int) -> x509.CertificateBuilder:
    if days < 1:
        raise KeyFileError(f"validity of {days} days is not positive")
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + datetime.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def build_root_certificate(key: PrivateKey, common_name: str, *, not_before: datetime.datetime,
                           days: int = ROOT_CA_DAYS, path_length: int | None = None) -> x509.Certificate:
    """A self-signed root CA certificate for ``key``."""
    name = make_name(common_name)
    builder = (
        _base_builder(name, name, key.public_key(), not_before, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
    )
    return builder.sign(key, x509_signing_hash(key))


def build_certificate(public_key: PublicKey, common_name: str, *, issuer_cert: x509.Certificate,
                      issuer_key: PrivateKey, not_before: datetime.datetime, days: int = SIGNING_CERT_DAYS,
                      ca: bool = False, path_length: int | None = None, code_signing: bool = True,
                      extra_extensions: tuple[tuple[x509.ExtensionType, bool], ...] = ()) -> x509.Certificate:
    """A certificate for ``public_key`` issued by ``issuer_cert``/``issuer_key``.

    ``ca=False`` (the default) makes a signing certificate; ``ca=True`` an
    intermediate CA.  ``code_signing=False`` and ``extra_extensions`` exist to
    build deliberately wrong certificates for tests and interop checks.
    """
    builder = _base_builder(make_name(common_name), issuer_cert.subject, public_key, not_before, days)
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_cert.public_key()), critical=False  # type: ignore[arg-type]
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        builder = builder.add_extension(_ca_key_usage(), critical=True)
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        builder = builder.add_extension(_signing_key_usage(), critical=True)
        if code_signing:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    for extension, critical in extra_extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key, x509_signing_hash(issuer_key))


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                         encipher_only=False, decipher_only=False)


def _signing_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                         encipher_only=False, decipher_only=False)


def load_certificates(data: bytes, name: str) -> list[x509.Certificate]:
    """Every certificate in a PEM file (one or more blocks), or the one certificate of a DER file."""
    blocks = _PEM_CERT.findall(data)
    certs: list[x509.Certificate] = []
    if blocks:
        for n, block in enumerate(blocks):
            try:
                certs.append(parse_pem_certificate(block))
            except MALFORMED_CERTIFICATE as exc:
                raise KeyFileError(f"{name}: certificate {n + 1} is not valid X.509 ({_first_line(exc)})") from None
        return certs
    if b"-----BEGIN" in data:
        raise KeyFileError(f"{name}: holds no PEM certificate (found another PEM type)")
    try:
        return [parse_der_certificate(data)]
    except MALFORMED_CERTIFICATE:
        raise KeyFileError(f"{name}: not a PEM or DER X.509 certificate") from None


def load_certificate(data: bytes, name: str) -> x509.Certificate:
    """The single certificate of a PEM or DER file (refuses files with several)."""
    certs = load_certificates(data, name)
    if len(certs) != 1:
        raise KeyFileError(f"{name}: holds {len(certs)} certificates, expected one")
    return certs[0]


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def certificate_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lowercase hex."""
    return hashlib.sha256(certificate_der(cert)).hexdigest()


def common_name(cert: x509.Certificate | x509.CertificateRevocationList, *, issuer: bool = False) -> str:
    """The (first) CN of the subject (or issuer); the full RFC 4514 name when there is no CN."""
    try:
        name = cert.issuer if issuer else cert.subject  # type: ignore[union-attr]
        attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
        if attrs:
            value = attrs[0].value
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
        return name.rfc4514_string() or "(empty name)"
    except MALFORMED_CERTIFICATE:  # names are parsed lazily; a damaged one must not break an error message
        return "(unparsable name)"


def describe(cert: x509.Certificate) -> str:
    """'CN=name (serial 1a2b...)' for one-line messages."""
    try:
        serial = f"{cert.serial_number:x}"
    except MALFORMED_CERTIFICATE:
        serial = "unparsable"
    return f"CN={common_name(cert)} (serial {serial})"


def is_self_issued(cert: x509.Certificate) -> bool:
    return bool(cert.subject == cert.issuer)


def key_identifier(cert: x509.Certificate) -> bytes:
    """The certificate's subject key identifier (the extension, or derived from the key as RFC 5280 method 1)."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return bytes(ext.value.digest)
    except x509.ExtensionNotFound:
        return bytes(x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest)


