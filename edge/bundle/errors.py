"""Every way a bundle can be wrong, as one error class each, under one base class :class:`BundleError`.

Three families, three exit codes:

* :class:`BundleFormatError` (8): the bytes are not a well-formed bundle
  (truncated, malformed, chunk mismatch, trailing data...).
* :class:`BundleTrustError` (7): the signature or its certificate chain is not
  acceptable.  Each subclass is *also* the matching :mod:`signing.errors`
  class, so ``except BundleError`` and ``except signing.BadSignatureError``
  both catch a bad bundle signature.
* :class:`BundlePolicyError` (9): a valid bundle this device must not install
  (wrong board, security version below the floor).

Messages name the bundle and the region, offset, chunk or field involved.
"""

from __future__ import annotations

import signing.errors as trust
from edge.errors import EdgeError


class BundleError(EdgeError):
    """Base class of every error about a bundle: catch this one type to refuse a bundle."""

    exit_code = 8


# ----------------------------------------------------------------- format (8)
class BundleFormatError(BundleError):
    """The file is not a well-formed Edge bundle."""

    exit_code = 8


class NotABundleError(BundleFormatError):
    """The file does not start with the bundle magic."""


class UnsupportedFormatVersionError(BundleFormatError):
    """The bundle's format version is not one this Edge reads."""


class BundleHeaderError(BundleFormatError):
    """A header field is out of range, reserved bytes are not zero, or the header disagrees with the manifest."""


class TruncatedBundleError(BundleFormatError):
    """The file or stream ends inside a region (header, manifest, signature block, payload tag, payload)."""

    def __init__(self, message: str, region: str = "", offset: int = 0) -> None:
        super().__init__(message)
        self.region = region
        self.offset = offset


class TrailingDataError(BundleFormatError):
    """Bytes follow the end of the payload."""


class ManifestTooLargeError(BundleFormatError):
    """The header announces a manifest larger than the cap (refused before reading it)."""


class ManifestError(BundleFormatError):
    """The manifest is not valid canonical JSON, or a field is missing, of the wrong type or out of range."""


class SignatureBlockError(BundleFormatError):
    """The signature block is malformed (bad magic, lengths, unknown algorithm, undecodable certificate)."""


class PayloadMismatchError(BundleFormatError):
    """The payload was cut from another bundle: its tag names a different manifest (mix-and-match)."""


class ChunkMismatchError(BundleFormatError):
    """A payload chunk's SHA-256 differs from the manifest; nothing from that chunk on may be used."""

    def __init__(self, message: str, chunk: int = 0, offset: int = 0) -> None:
        super().__init__(message)
        self.chunk = chunk
        self.offset = offset


class DeltaPayloadError(BundleFormatError):
    """A delta bundle's payload is not a readable delta, or its header names other images than the manifest."""


class BundleCreateError(BundleFormatError):
    """A bundle cannot be created from these inputs (payload changed while reading, inconsistent arguments)."""


class ImageMismatchError(BundleCreateError):
    """The image to bundle is not the one the caller described (sha256 or size)."""


# ------------------------------------------------------------------ trust (7)
class BundleTrustError(BundleError, trust.TrustError):
    """The bundle's signature or certificate chain is not acceptable."""

    exit_code = 7


class BundleBadSignatureError(BundleTrustError, trust.BadSignatureError):
    """The manifest signature does not verify (the manifest or signature was altered)."""


class BundleUnknownSignerError(BundleTrustError, trust.UnknownSignerError):
    """Signed by a certificate whose issuer the device does not know."""


class BundleUntrustedChainError(BundleTrustError, trust.UntrustedChainError):
    """The certificate chain does not lead to a root in the keyring, or breaks a CA rule."""


class BundleCertificateUsageError(BundleTrustError, trust.CertificateUsageError):
    """The signing certificate may not sign code (no codeSigning EKU, a CA, a disallowed key)."""


class BundleCertificateTimeError(BundleTrustError, trust.CertificateTimeError):
    """A certificate was not valid at the bundle's signing time."""


class BundleRevokedError(BundleTrustError, trust.CertificateRevokedError):
    """A certificate on the chain is revoked."""


class BundleSignerNotAllowedError(BundleTrustError, trust.SignerNotAllowedError):
    """The signer's common name is not in the device's allow-list."""


class BundleRevocationListError(BundleTrustError, trust.RevocationListError):
    """A CRL for a CA on the chain is not signed by that CA."""


class BundleKeyFileError(BundleTrustError, trust.KeyFileError):
    """Trust material given for verification is unusable."""


_TRUST_TO_BUNDLE: dict[type[trust.TrustError], type[BundleTrustError]] = {
    trust.BadSignatureError: BundleBadSignatureError,
    trust.UnknownSignerError: BundleUnknownSignerError,
    trust.UntrustedChainError: BundleUntrustedChainError,
    trust.CertificateUsageError: BundleCertificateUsageError,
    trust.CertificateTimeError: BundleCertificateTimeError,
    trust.CertificateRevokedError: BundleRevokedError,
    trust.SignerNotAllowedError: BundleSignerNotAllowedError,
    trust.RevocationListError: BundleRevocationListError,
    trust.KeyFileError: BundleKeyFileError,
}


def as_bundle_error(exc: trust.TrustError, bundle_name: str) -> BundleTrustError:
    """The bundle-family twin of a :mod:`signing` error, its message prefixed with the bundle name."""
    for cls in type(exc).__mro__:
        if cls in _TRUST_TO_BUNDLE:
            return _TRUST_TO_BUNDLE[cls](f"{bundle_name}: {exc.message}")
    return BundleTrustError(f"{bundle_name}: {exc.message}")


# ----------------------------------------------------------------- policy (9)
class BundlePolicyError(BundleError):
    """A valid bundle that this device must not install."""

    exit_code = 9


class IncompatibleBoardError(BundlePolicyError):
    """The device's board is not among the bundle's ``compatible`` strings."""


class SecurityVersionError(BundlePolicyError):
    """The bundle's ``security_version`` is below the device's anti-rollback floor."""
