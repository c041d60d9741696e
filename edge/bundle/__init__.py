"""Signed update bundles: one streamable file of header, signed manifest, signature block and payload.

Device side::

    from edge.bundle import open_bundle
    from signing import load_keyring

    with open_bundle(path_or_stream) as bundle:
        bundle.verify(load_keyring("roots.pem"), board="rpi4", installed_security_version=3)
        for chunk in bundle.iter_chunks(start_chunk=checkpoint):
            write(chunk)            # every chunk has matched the signed manifest

Build side: :func:`create_bundle`.  Byte layout: :mod:`edge.bundle.format`
and ``docs/bundle-format.md``.  Every error is a :class:`BundleError`.
"""

from .errors import (
    BundleBadSignatureError,
    BundleCertificateTimeError,
    BundleCertificateUsageError,
    BundleCreateError,
    BundleError,
    BundleFormatError,
    BundleHeaderError,
    BundleKeyFileError,
    BundlePolicyError,
    BundleRevocationListError,
    BundleRevokedError,
    BundleSignerNotAllowedError,
    BundleTrustError,
    BundleUnknownSignerError,
    BundleUntrustedChainError,
    ChunkMismatchError,
    DeltaPayloadError,
    ImageMismatchError,
    IncompatibleBoardError,
    ManifestError,
    ManifestTooLargeError,
    NotABundleError,
    PayloadMismatchError,
    SecurityVersionError,
    SignatureBlockError,
    TrailingDataError,
    TruncatedBundleError,
    UnsupportedFormatVersionError,
)
from .format import FORMAT_VERSION, HEADER_SIZE, MAX_MANIFEST_SIZE, Header, SignatureBlock
from .manifest import DEFAULT_CHUNK_SIZE, ImageRef, Manifest, SemVer, decode_manifest, parse_semver
from .reader import Bundle, Verification, open_bundle
from .writer import CreatedBundle, create_bundle

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "MAX_MANIFEST_SIZE",
    "Bundle",
    "BundleBadSignatureError",
    "BundleCertificateTimeError",
    "BundleCertificateUsageError",
    "BundleCreateError",
    "BundleError",
    "BundleFormatError",
    "BundleHeaderError",
    "BundleKeyFileError",
    "BundlePolicyError",
    "BundleRevocationListError",
    "BundleRevokedError",
    "BundleSignerNotAllowedError",
    "BundleTrustError",
    "BundleUnknownSignerError",
    "BundleUntrustedChainError",
    "ChunkMismatchError",
    "DeltaPayloadError",
    "CreatedBundle",
    "Header",
    "ImageRef",
    "ImageMismatchError",
    "IncompatibleBoardError",
    "Manifest",
    "ManifestError",
    "ManifestTooLargeError",
    "NotABundleError",
    "PayloadMismatchError",
    "SecurityVersionError",
    "SemVer",
    "SignatureBlock",
    "SignatureBlockError",
    "TrailingDataError",
    "TruncatedBundleError",
    "UnsupportedFormatVersionError",
    "Verification",
    "create_bundle",
    "decode_manifest",
    "open_bundle",
    "parse_semver",
]
