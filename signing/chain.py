"""Certificate chain validation for code signing (pure: certificates, a time and trust data in; a result out).

Why not ``cryptography.x509.verification``: in cryptography 50 its policies
are fixed to TLS (the extended key usage is serverAuth or clientAuth, set by
``build_server_verifier``/``build_client_verifier``), it has no CRL support,
and its Web PKI profile does not accept Ed25519 keys.  So the rules are
written out here, following RFC 5280 section 6 where it applies:

1. **Path building.**  From the signing (leaf) certificate, repeatedly find
   the issuer: a trusted root first, else an embedded intermediate, whose
   subject equals the certificate's issuer name and whose key identifier
   equals the certificate's authority key identifier (when present), and
   whose key verifies the certificate's signature.  Stop at a trusted root.
   No issuer at all for the leaf is an *unknown signer*; a dead end higher up,
   or an issuer whose key does not verify the signature, is an *untrusted
   chain*.  Every embedded certificate must be on the path (so no byte of the
   signature block goes unchecked).
2. **Revocation.**  For every certificate below the root, each CRL issued by
   its issuer (same name, same key identifier when given) must be signed by
   that issuer, and the issuer must have keyUsage cRLSign; a listed serial is
   refused whatever the revocation date and whatever the signing time, since
   a stolen key can sign with any time it likes.
3. **CA rules.**  Every issuer on the path has basicConstraints CA=true,
   keyUsage keyCertSign, and a pathLen (if any) not below the number of
   intermediates under it.  No certificate has a critical extension this
   module does not understand, or a signature BIT STRING with unused bits
   (which cryptography would silently ignore).
4. **Leaf usage.**  extendedKeyUsage includes codeSigning (anyExtendedKeyUsage
   does not count), keyUsage (if present) includes digitalSignature, it is
   not a CA, and its key is one Edge signs with.
5. **Validity** of every certificate (root included) at ``at``, the signing
   time from the signed data, never the device clock: a device with a wrong
   clock, or a bundle signed before its certificate expired, still verifies.
6. **Allow-list.**  Optionally, the leaf's common name must be in a set.
"""

from __future__ import annotations

import datetime
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from .certs import (
    MALFORMED_CERTIFICATE,
    common_name,
    describe,
    fingerprint,
    is_self_issued,
    key_identifier,
    strict_parsing,
)
from .errors import (
    CertificateRevokedError,
    CertificateTimeError,
    CertificateUsageError,
    RevocationListError,
    SignerNotAllowedError,
    UnknownSignerError,
    UntrustedChainError,
)
from .keyring import Keyring, RevocationList
from .keys import signature_algorithm_for

MAX_CHAIN_LENGTH = 6  # leaf + up to 4 intermediates + root

MIN_CA_RSA_BITS = 2048

# Critical extensions whose meaning is enforced here (or, for subjectAltName, harmless to code signing).
_UNDERSTOOD_CRITICAL = {
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE,
    ExtensionOID.EXTENDED_KEY_USAGE,
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
}


@dataclass(frozen=True)
class VerifiedChain:
    """A validated path: ``path[0]`` is the signing certificate, ``path[-1]`` the trusted root."""

    path: tuple[x509.Certificate, ...]
    signing_time: datetime.datetime

    @property
    def signer(self) -> x509.Certificate:
        return self.path[0]

    @property
    def signer_name(self) -> str:
        return common_name(self.path[0])

    @property
    def root(self) -> x509.Certificate:
        return self.path[-1]

    @property
    def root_fingerprint(self) -> str:
        return fingerprint(self.path[-1])

    @property
    def names(self) -> tuple[str, ...]:
        """The common names along the path, signer first."""
        return tuple(common_name(c) for c in self.path)


def validate_signing_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    keyring: Keyring,
    *,
    at: datetime.datetime,
    crls: RevocationList | None = None,
    allowed_cns: Collection[str] | None = None,
    max_length: int = MAX_CHAIN_LENGTH,
) -> VerifiedChain:
    """Validate ``leaf`` (with the embedded ``intermediates``) for code signing at time ``at``.

    Returns the path on success; raises one :class:`signing.errors.TrustError`
    subclass naming the certificate and the rule it breaks.
    """
    if at.tzinfo is None:
        raise ValueError("validate_signing_chain needs a timezone-aware signing time")
    try:
        with strict_parsing():
            return _validate(leaf, intermediates, keyring, at, crls, allowed_cns, max_length)
    except MALFORMED_CERTIFICATE as exc:  # lazily parsed fields of a damaged certificate
        raise UntrustedChainError(f"a certificate on the chain is malformed ({type(exc).__name__}: {exc})") from None


def _validate(leaf: x509.Certificate, intermediates: Sequence[x509.Certificate], keyring: Keyring,
              at: datetime.datetime, crls: RevocationList | None, allowed_cns: Collection[str] | None,
              max_length: int) -> VerifiedChain:
    path = _build_path(leaf, list(intermediates), keyring, max_length)
    if crls is not None:
        _check_revocation(path, crls)
    for cert in path:
        _check_encoding(cert)
        _check_critical_extensions(cert)
    for depth, ca in enumerate(path[1:], start=1):
        _check_ca(ca, intermediates_below=depth - 1)
    check_signing_certificate(leaf)
    for cert in path:
        _check_time(cert, at)
    if allowed_cns is not None:
        name = common_name(leaf)
        if name not in allowed_cns:
            allowed = ", ".join(sorted(allowed_cns)) or "none"
            raise SignerNotAllowedError(f"signer CN={name} is not in the allowed signers ({allowed})")
    return VerifiedChain(tuple(path), at)


def check_signing_certificate(cert: x509.Certificate) -> None:
    """The leaf-only rules: not a CA, codeSigning EKU, digitalSignature, an allowed key type.

    Also useful on its own: ``edge bundle create`` checks the signer with it
    before signing something no device would accept.
    """
    try:
        with strict_parsing():
            _check_signing_certificate(cert)
    except MALFORMED_CERTIFICATE as exc:  # lazily parsed fields of a damaged certificate
        raise UntrustedChainError(f"the signing certificate is malformed ({type(exc).__name__}: {exc})") from None


def _check_signing_certificate(cert: x509.Certificate) -> None:
    exts = _extensions(cert)
    try:
        if exts.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise CertificateUsageError(f"signing certificate {describe(cert)} is a CA certificate; CAs must not sign bundles")
    except x509.ExtensionNotFound:
        pass
    try:
        eku = exts.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise CertificateUsageError(f"signing certificate {describe(cert)} has no extendedKeyUsage; codeSigning is required") from None
    if ExtendedKeyUsageOID.CODE_SIGNING not in eku:
        usages = ", ".join(getattr(oid, "_name", oid.dotted_string) for oid in eku)
        raise CertificateUsageError(f"signing certificate {describe(cert)} lacks the codeSigning extended key usage (has: {usages})")
    try:
        ku = exts.get_extension_for_class(x509.KeyUsage).value
        if not ku.digital_signature:
            raise CertificateUsageError(f"signing certificate {describe(cert)} keyUsage does not allow digitalSignature")
    except x509.ExtensionNotFound:
        pass
    signature_algorithm_for(_public_key(cert))


# ----------------------------------------------------------------- internals
def _extensions(cert: x509.Certificate) -> x509.Extensions:
    try:
        return cert.extensions
    except ValueError as exc:
        raise UntrustedChainError(f"{describe(cert)} has malformed extensions ({exc})") from None


def _public_key(cert: x509.Certificate) -> object:
    try:
        return cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UntrustedChainError(f"{describe(cert)} has an unusable public key ({exc})") from None


def _authority_key_id(cert: x509.Certificate) -> bytes | None:
    try:
        aki = _extensions(cert).get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return None
    return bytes(aki.key_identifier) if aki.key_identifier is not None else None


def _may_have_issued(candidate: x509.Certificate, cert: x509.Certificate) -> bool:
    if candidate.subject != cert.issuer:
        return False
    wanted = _authority_key_id(cert)
    if wanted is None:
        return True
    try:
        return key_identifier(candidate) == wanted
    except (ValueError, UnsupportedAlgorithm):
        return False


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _issuer_text(cert: x509.Certificate) -> str:
    return f"CN={common_name(cert, issuer=True)}"


def _build_path(leaf: x509.Certificate, pool: list[x509.Certificate], keyring: Keyring, max_length: int) -> list[x509.Certificate]:
    path = [leaf]
    current = leaf
    while True:
        if len(path) >= max_length:
            raise UntrustedChainError(f"chain from {describe(leaf)} is longer than {max_length} certificates")
        roots = [r for r in keyring.roots if _may_have_issued(r, current)]
        chosen = next((r for r in roots if _signed_by(current, r)), None)
        if chosen is not None:
            path.append(chosen)
            break
        embedded = [c for c in pool if c is not current and _may_have_issued(c, current)]
        chosen = next((c for c in embedded if _signed_by(current, c)), None)
        if chosen is None:
            if roots or embedded:
                raise UntrustedChainError(
                    f"the signature on {describe(current)} does not verify with the key of its issuer {_issuer_text(current)}"
                )
            if current is leaf:
                raise UnknownSignerError(
                    f"unknown signer: {describe(leaf)} was issued by {_issuer_text(leaf)}, "
                    "which is neither in the bundle's chain nor in the keyring"
                )
            if is_self_issued(current):
                raise UntrustedChainError(f"chain ends at the root {describe(current)}, which is not in the keyring")
            raise UntrustedChainError(
                f"chain ends at {describe(current)}, issued by {_issuer_text(current)}, which is not a trusted root"
            )
        pool = [c for c in pool if c is not chosen]
        path.append(chosen)
        current = chosen
    if pool:
        raise UntrustedChainError(
            "the bundle embeds certificates that are not on the chain to the trusted root: "
            + ", ".join(describe(c) for c in pool)
        )
    return path


def _check_revocation(path: list[x509.Certificate], crls: RevocationList) -> None:
    for cert, issuer in zip(path, path[1:], strict=False):
        issuer_id = key_identifier(issuer)
        for crl in crls.crls:
            try:
                aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
            except x509.ExtensionNotFound:
                aki = None
            except ValueError as exc:
                raise RevocationListError(f"CRL of CN={common_name(crl, issuer=True)} has malformed extensions ({exc})") from None
            same_key = aki is not None and bytes(aki) == issuer_id
            if crl.issuer != issuer.subject:
                # not this CA's name; one that names this CA's key must still be signed by it (a damaged
                # issuer name would otherwise make a revocation silently vanish)
                if same_key and not _crl_signed_by(crl, issuer):
                    raise RevocationListError(f"a CRL carrying the authority key identifier of {describe(issuer)} "
                                              f"is not signed by that CA (damaged or forged)")
                continue
            if aki is not None and not same_key:
                continue  # another CA that happens to share the name
            if not _crl_signed_by(crl, issuer):
                raise RevocationListError(f"a CRL naming {describe(issuer)} as issuer is not signed by that CA")
            try:
                ku = _extensions(issuer).get_extension_for_class(x509.KeyUsage).value
                may_sign_crls = ku.crl_sign
            except x509.ExtensionNotFound:
                may_sign_crls = False
            if not may_sign_crls:
                raise RevocationListError(f"{describe(issuer)} issued a CRL but its keyUsage lacks cRLSign")
            entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if entry is not None:
                when = entry.revocation_date_utc.strftime("%Y-%m-%d %H:%M:%SZ")
                raise CertificateRevokedError(f"certificate {describe(cert)} was revoked by {describe(issuer)} on {when}")


def _crl_signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    try:
        return crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False


def _check_encoding(cert: x509.Certificate) -> None:
    # cryptography ignores the unused-bits octet of the signature BIT STRING; DER requires it to be 0 here.
    der = cert.public_bytes(serialization.Encoding.DER)
    signature = cert.signature
    if len(der) <= len(signature) or der[-len(signature) - 1] != 0 or not der.endswith(signature):
        raise UntrustedChainError(f"{describe(cert)} is not strict DER (its signature BIT STRING has unused bits)")


def _check_critical_extensions(cert: x509.Certificate) -> None:
    for ext in _extensions(cert):
        if ext.critical and ext.oid not in _UNDERSTOOD_CRITICAL:
            raise UntrustedChainError(f"{describe(cert)} has an unsupported critical extension {ext.oid.dotted_string}")


def _check_ca(ca: x509.Certificate, intermediates_below: int) -> None:
    exts = _extensions(ca)
    try:
        bc = exts.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise UntrustedChainError(f"issuer {describe(ca)} is not a CA (no basicConstraints)") from None
    if not bc.ca:
        raise UntrustedChainError(f"issuer {describe(ca)} is not a CA (basicConstraints CA is false)")
    if bc.path_length is not None and bc.path_length < intermediates_below:
        raise UntrustedChainError(
            f"CA {describe(ca)} allows {bc.path_length} intermediate CAs below it (pathLen), the chain has {intermediates_below}"
        )
    try:
        ku = exts.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise UntrustedChainError(f"CA {describe(ca)} has no keyUsage; keyCertSign is required") from None
    if not ku.key_cert_sign:
        raise UntrustedChainError(f"CA {describe(ca)} keyUsage lacks keyCertSign")
    key = _public_key(ca)
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_CA_RSA_BITS:
        raise UntrustedChainError(f"CA {describe(ca)} has a {key.key_size}-bit RSA key (at least {MIN_CA_RSA_BITS} required)")


def _check_time(cert: x509.Certificate, at: datetime.datetime) -> None:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if not start <= at <= end:
        fmt = "%Y-%m-%d %H:%M:%SZ"
        raise CertificateTimeError(
            f"certificate {describe(cert)} was not valid at the signing time {at.strftime(fmt)} "
            f"(valid {start.strftime(fmt)} to {end.strftime(fmt)})"
        )
