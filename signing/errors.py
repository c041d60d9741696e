"""The errors ``signing`` raises: one base class, one subclass per way trust can fail.

Every class is an :class:`edge.errors.EdgeError` with exit code 7, so the CLI
reports any of them as one line.  The bundle reader re-raises them as
``edge.bundle`` errors that are *also* instances of these classes, so a caller
can catch either family.
"""

from __future__ import annotations

from edge.errors import EdgeError


class TrustError(EdgeError):
    """Base class: a key, certificate, keyring, CRL, CA directory or signature is not acceptable."""

    exit_code = 7


class KeyFileError(TrustError):
    """A private key, certificate or keyring file is malformed, of an unsupported type, or does not match."""


class CertificateAuthorityError(TrustError):
    """A CA directory is missing, already initialised, or its index is damaged; or a certificate is not its own."""


class BadSignatureError(TrustError):
    """The signature does not verify with the signing certificate's public key."""


class UnknownSignerError(TrustError):
    """The signing certificate's issuer is neither among the embedded certificates nor in the keyring."""


class UntrustedChainError(TrustError):
    """The certificate chain does not lead to a trusted root, or a CA on it may not issue certificates."""


class CertificateUsageError(TrustError):
    """The signing certificate may not sign code: no codeSigning EKU, it is a CA, or its key is not allowed."""


class CertificateTimeError(TrustError):
    """A certificate on the chain was not valid at the signing time recorded in the signed data."""


class CertificateRevokedError(TrustError):
    """A certificate on the chain is listed in a CRL of its issuer (refused whatever the time)."""


class SignerNotAllowedError(TrustError):
    """The signing certificate's common name is not in the device's allow-list."""


class RevocationListError(TrustError):
    """A CRL file is malformed, or a CRL claiming to come from a CA on the chain is not signed by it."""
