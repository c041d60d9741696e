"""What a device trusts: a keyring of root CA certificates and an optional set of CRLs (pure parsing).

A keyring is one PEM file holding one or more self-signed root CA
certificates.  Rotating roots means shipping a keyring with both the old and
the new root, then (after every bundle is signed under the new root)
dropping the old one.

A CRL file holds one or more PEM (or one DER) CRLs, from any CA of any chain.
CRLs are matched to certificates by issuer while a chain is validated
(:mod:`signing.chain`); which CA signed a CRL is checked there, because an
intermediate CA's key is only known once a bundle's chain is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from .certs import MALFORMED_CERTIFICATE, describe, fingerprint, load_certificates, strict_parsing
from .errors import KeyFileError, RevocationListError
from .keys import _first_line

_PEM_CRL = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.S)


def _check_root(cert: x509.Certificate, where: str) -> None:
    """A keyring entry must be a self-signed CA whose self-signature verifies (KeyFileError); a field
    that does not parse raises one of MALFORMED_CERTIFICATE."""
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise KeyFileError(f"{where} is not a CA certificate (no basicConstraints)") from None
    except MALFORMED_CERTIFICATE as exc:
        raise KeyFileError(f"{where} has malformed extensions ({_first_line(exc)})") from None
    if not bc.ca:
        raise KeyFileError(f"{where} is not a CA certificate (basicConstraints CA is false)")
    if cert.subject != cert.issuer:
        raise KeyFileError(f"{where} is not self-signed: a keyring holds root CAs only")
    try:
        cert.verify_directly_issued_by(cert)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFileError(f"{where}: its self-signature does not verify") from None


@dataclass(frozen=True)
class Keyring:
    """The trusted roots, in file order."""

    roots: tuple[x509.Certificate, ...]

    @classmethod
    def from_certificates(cls, certs: list[x509.Certificate] | tuple[x509.Certificate, ...], name: str = "keyring") -> Keyring:
        """Check each certificate is a self-signed CA whose self-signature verifies; duplicates are dropped."""
        if not certs:
            raise KeyFileError(f"{name}: holds no certificate")
        roots: list[x509.Certificate] = []
        seen: set[str] = set()
        for n, cert in enumerate(certs):
            where = f"{name}: certificate {n + 1} ({describe(cert)})"
            try:
                with strict_parsing():  # names and extensions are parsed on first access, here
                    _check_root(cert, where)
            except MALFORMED_CERTIFICATE as exc:
                raise KeyFileError(f"{where} is malformed ({_first_line(exc)})") from None
            fp = fingerprint(cert)
            if fp not in seen:
                seen.add(fp)
                roots.append(cert)
        return cls(tuple(roots))

    def contains(self, cert: x509.Certificate) -> bool:
        return any(root == cert for root in self.roots)


def parse_keyring(data: bytes, name: str = "keyring") -> Keyring:
    """A keyring from the bytes of a PEM file of root certificates."""
    return Keyring.from_certificates(load_certificates(data, name), name)


@dataclass(frozen=True)
class RevocationList:
    """CRLs as loaded; every serial a CRL lists is refused when that CRL's issuer issued the certificate.

    Scope extensions (issuing distribution point, delta CRL indicator) are not
    interpreted: every listed serial counts as revoked, which can only refuse
    more, never accept more.
    """

    crls: tuple[x509.CertificateRevocationList, ...]


def parse_crls(data: bytes, name: str = "CRL") -> RevocationList:
    """One or more PEM CRLs, or one DER CRL."""
    blocks = _PEM_CRL.findall(data)
    crls: list[x509.CertificateRevocationList] = []
    try:
        if blocks:
            for block in blocks:
                crls.append(x509.load_pem_x509_crl(block))
        elif b"-----BEGIN" in data:
            raise RevocationListError(f"{name}: holds no PEM X509 CRL")
        else:
            crls.append(x509.load_der_x509_crl(data))
        for crl in crls:  # parse the lazily parsed fields now, so a damaged CRL fails here, naming its
            _ = crl.issuer  # file, and not mid-verification as "a certificate on the chain is malformed"
            for revoked in crl:
                _ = revoked.serial_number, revoked.revocation_date_utc
    except (ValueError, x509.InvalidVersion) as exc:  # (InvalidVersion: a damaged version field)
        raise RevocationListError(f"{name}: not a valid X.509 CRL ({str(exc).splitlines()[0] if str(exc) else 'parse error'})") from None
    return RevocationList(tuple(crls))
