"""Building a CRL (pure: the CA certificate and key, the revoked serials and times in; a signed CRL out)."""

from __future__ import annotations

import datetime
from collections.abc import Iterable

from cryptography import x509

from .certs import x509_signing_hash
from .keys import PrivateKey


def build_crl(issuer_cert: x509.Certificate, issuer_key: PrivateKey, revoked: Iterable[tuple[int, datetime.datetime]], *,
              crl_number: int, last_update: datetime.datetime, next_update: datetime.datetime) -> x509.CertificateRevocationList:
    """A CRL listing ``revoked`` (serial, revocation time) pairs, with CRL number and authority key identifier."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_cert.subject)
        .last_update(last_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_cert.public_key()), critical=False)  # type: ignore[arg-type]
    )
    for serial, when in sorted(revoked):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    return builder.sign(issuer_key, x509_signing_hash(issuer_key))
