"""Edge's trust model: keys, X.509 chains to offline root CAs, revocation, signing and verifying.

Pure modules (bytes, keys and certificates in; results or typed errors out):
:mod:`~signing.keys`, :mod:`~signing.certs`, :mod:`~signing.keyring`,
:mod:`~signing.chain`, :mod:`~signing.crl`, :mod:`~signing.signer`.
File I/O lives in :mod:`~signing.files` and the CA directory in
:mod:`~signing.ca`.  Errors are in :mod:`~signing.errors` (exit code 7).
"""

from .chain import VerifiedChain, check_signing_certificate, validate_signing_chain
from .errors import (
    BadSignatureError,
    CertificateAuthorityError,
    CertificateRevokedError,
    CertificateTimeError,
    CertificateUsageError,
    KeyFileError,
    RevocationListError,
    SignerNotAllowedError,
    TrustError,
    UnknownSignerError,
    UntrustedChainError,
)
from .files import load_crls, load_keyring, load_signer
from .keyring import Keyring, RevocationList, parse_crls, parse_keyring
from .keys import (
    KEY_TYPES,
    SIGNATURE_ALGORITHMS,
    generate_private_key,
    sign_message,
    signature_algorithm_for,
    verify_message,
)
from .signer import KeySigner, Signer

__all__ = [
    "KEY_TYPES",
    "SIGNATURE_ALGORITHMS",
    "BadSignatureError",
    "CertificateAuthorityError",
    "CertificateRevokedError",
    "CertificateTimeError",
    "CertificateUsageError",
    "KeyFileError",
    "KeySigner",
    "Keyring",
    "RevocationList",
    "RevocationListError",
    "Signer",
    "SignerNotAllowedError",
    "TrustError",
    "UnknownSignerError",
    "UntrustedChainError",
    "VerifiedChain",
    "check_signing_certificate",
    "generate_private_key",
    "load_crls",
    "load_keyring",
    "load_signer",
    "parse_crls",
    "parse_keyring",
    "sign_message",
    "signature_algorithm_for",
    "validate_signing_chain",
    "verify_message",
]
