"""The chain validator: every rule, each with the error it must raise."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from signing.certs import build_certificate, certificate_pem
from signing.chain import check_signing_certificate, validate_signing_chain
from signing.errors import (
    CertificateRevokedError,
    CertificateTimeError,
    CertificateUsageError,
    KeyFileError,
    RevocationListError,
    SignerNotAllowedError,
    UnknownSignerError,
    UntrustedChainError,
)
from signing.keyring import Keyring, parse_crls, parse_keyring
from signing.keys import generate_private_key
from tests.signing.pki import DAY, NOW, crl_for, issue, make_root, standard_pki


@pytest.fixture(scope="module")
def pki():
    return standard_pki()


def validate(identity, keyring, at=NOW, **kw):
    return validate_signing_chain(identity.cert, identity.chain, keyring, at=at, **kw)


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa-p256", "rsa3072"])
def test_each_key_type_validates(pki, kind):
    chain = validate(pki.leaves[kind], pki.keyring())
    assert chain.path == (pki.leaves[kind].cert, pki.root.cert)
    assert chain.signer_name == pki.leaves[kind].cert.subject.rfc4514_string().removeprefix("CN=")
    assert chain.names[-1] == "Edge Root CA"


def test_intermediate_is_followed_to_the_root(pki):
    chain = validate(pki.leaves["via-intermediate"], pki.keyring())
    assert chain.names == ("release-via-intermediate", "Edge Intermediate", "Edge Root CA")


def test_root_rotation_two_roots_in_the_keyring(pki):
    both = pki.keyring(pki.root, pki.root2)
    assert validate(pki.leaves["ed25519"], both).root == pki.root.cert
    assert validate(pki.leaves["root2"], both).root == pki.root2.cert
    with pytest.raises(UnknownSignerError):  # once the old root is dropped, its signers are unknown
        validate(pki.leaves["ed25519"], pki.keyring(pki.root2))


def test_unknown_signer(pki):
    # other_root has the same name as root, but another key: the authority key identifier tells them apart.
    with pytest.raises(UnknownSignerError, match=r"unknown signer: CN=stranger .* issued by CN=Edge Root CA, which is neither"):
        validate(pki.leaves["stranger"], pki.keyring())


def test_forged_issuer_without_key_identifier_is_an_untrusted_chain(pki):
    """A certificate naming the trusted root as issuer, signed by another key and without AKI."""
    key = generate_private_key("ed25519")
    forged = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "forged")]))
              .issuer_name(pki.root.cert.subject).public_key(key.public_key()).serial_number(7)
              .not_valid_before(NOW - DAY).not_valid_after(NOW + DAY)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
              .sign(pki.other_root.key, None))
    with pytest.raises(UntrustedChainError, match="signature on CN=forged .* does not verify with the key of its issuer"):
        validate_signing_chain(forged, [], pki.keyring(), at=NOW)


def test_chain_not_to_a_trusted_root(pki):
    with pytest.raises(UntrustedChainError, match="chain ends at CN=Foreign Intermediate .* which is not a trusted root"):
        validate(pki.leaves["via-foreign-intermediate"], pki.keyring())


def test_embedded_untrusted_root_is_refused(pki):
    leaf = pki.leaves["stranger"]
    with pytest.raises(UntrustedChainError, match="chain ends at the root CN=Edge Root CA .* not in the keyring"):
        validate_signing_chain(leaf.cert, [pki.other_root.cert], pki.keyring(), at=NOW)


def test_certificates_off_the_path_are_refused(pki):
    with pytest.raises(UntrustedChainError, match="not on the chain.*CN=Edge Root CA 2027"):
        validate_signing_chain(pki.leaves["ed25519"].cert, [pki.root2.cert], pki.keyring(), at=NOW)


@pytest.mark.parametrize("leaf, pattern", [
    ("no-eku", "has no extendedKeyUsage; codeSigning is required"),
    ("server-auth", "lacks the codeSigning extended key usage"),
])
def test_certificate_without_code_signing_eku(pki, leaf, pattern):
    with pytest.raises(CertificateUsageError, match=pattern):
        validate(pki.leaves[leaf], pki.keyring())


def test_ca_certificate_cannot_sign(pki):
    with pytest.raises(CertificateUsageError, match="no extendedKeyUsage|is a CA"):
        check_signing_certificate(pki.leaves["intermediate"].cert)
    eku = ((x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False),)
    ca_with_eku = issue(pki.root, "ca-with-eku", ca=True, extra=eku)
    with pytest.raises(CertificateUsageError, match="is a CA certificate"):
        check_signing_certificate(ca_with_eku.cert)


def test_valid_at_signing_time_even_if_expired_now(pki):
    expired = pki.leaves["expired"]  # valid NOW-100d .. NOW-70d
    chain = validate(expired, pki.keyring(), at=NOW - 80 * DAY)
    assert chain.signing_time == NOW - 80 * DAY


@pytest.mark.parametrize("offset_days", [-60, -120])
def test_not_valid_at_signing_time(pki, offset_days):
    with pytest.raises(CertificateTimeError, match=r"CN=expired .* was not valid at the signing time .* \(valid "):
        validate(pki.leaves["expired"], pki.keyring(), at=NOW + offset_days * DAY)


def test_intermediate_and_root_validity_count_too(pki):
    short_root = make_root("Short Root", not_before=NOW - 10 * DAY, days=5)
    leaf = issue(short_root, "long-leaf", not_before=NOW - 9 * DAY, days=365)
    with pytest.raises(CertificateTimeError, match="CN=Short Root"):
        validate(leaf, Keyring.from_certificates([short_root.cert]))


def test_revoked_certificate_is_refused_whatever_the_time(pki):
    revoked = pki.leaves["revoked"]
    crl = crl_for(pki.root, revoked, when=NOW)
    # signed long before the revocation: still refused (a stolen key can backdate its signatures)
    with pytest.raises(CertificateRevokedError, match=r"CN=revoked .* was revoked by CN=Edge Root CA"):
        validate(revoked, pki.keyring(), at=NOW - 20 * DAY, crls=crl)
    validate(pki.leaves["ed25519"], pki.keyring(), crls=crl)  # others are unaffected


def test_revoked_intermediate_refuses_its_leaves(pki):
    crl = crl_for(pki.root, pki.leaves["intermediate"])
    with pytest.raises(CertificateRevokedError, match="CN=Edge Intermediate"):
        validate(pki.leaves["via-intermediate"], pki.keyring(), crls=crl)


def test_revocation_beats_expiry(pki):
    crl = crl_for(pki.root, pki.leaves["expired"])
    with pytest.raises(CertificateRevokedError):
        validate(pki.leaves["expired"], pki.keyring(), at=NOW, crls=crl)


def test_crl_not_signed_by_its_issuer_is_refused(pki):
    # Names root as issuer and carries root's key identifier, but is signed by another key.
    forged = crl_for(pki.root, signing_key=pki.other_root.key)
    with pytest.raises(RevocationListError, match="not signed by that CA"):
        validate(pki.leaves["ed25519"], pki.keyring(), crls=forged)


def _crl_der(crl) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return crl.crls[0].public_bytes(Encoding.DER)


def test_a_crl_with_a_damaged_issuer_name_does_not_silently_drop_its_revocations(pki):
    """One flipped bit in the CRL's issuer name: it still carries the root's key identifier, so it is
    checked against the root's key (and fails) instead of being taken for another CA's CRL, which
    let the revoked certificate through."""
    der = _crl_der(crl_for(pki.root, pki.leaves["revoked"]))
    damaged = der.replace(b"Edge Root CA", b"Edge Poot CA", 1)
    assert damaged != der
    crls = parse_crls(damaged, "crl.der")
    for who in ("revoked", "ed25519"):
        with pytest.raises(RevocationListError, match="authority key identifier of CN=Edge Root CA .* not signed by that CA"):
            validate(pki.leaves[who], pki.keyring(), crls=crls)


def test_a_crl_with_a_damaged_issuer_name_encoding_is_refused_when_read_naming_its_file(pki):
    """The issuer's CN string tag changed from UTF8String to a tag not allowed there: cryptography
    parses the name lazily, so this used to surface during validation as "a certificate on the chain
    is malformed"."""
    der = _crl_der(crl_for(pki.root, pki.leaves["revoked"]))
    at = der.index(b"Edge Root CA") - 2  # the string's tag, then its length
    assert der[at] == 0x0C  # UTF8String
    damaged = der[:at] + b"\x0d" + der[at + 1:]
    with pytest.raises(RevocationListError, match=r"^crl.der: not a valid X.509 CRL"):
        parse_crls(damaged, "crl.der")


def test_a_crl_with_a_damaged_version_is_a_revocation_list_error(pki):
    der = _crl_der(crl_for(pki.root, pki.leaves["revoked"]))
    at = der.index(b"\x02\x01\x01")  # the tbsCertList's version (v2)
    with pytest.raises(RevocationListError, match=r"crl.der: not a valid X.509 CRL \(3 is not a valid CRL version\)"):
        parse_crls(der[:at] + b"\x02\x01\x03" + der[at + 3:], "crl.der")


def test_crl_of_a_same_named_other_ca_is_ignored(pki):
    crl = crl_for(pki.other_root, pki.leaves["ed25519"])  # other CA, same CN, different key identifier
    validate(pki.leaves["ed25519"], pki.keyring(), crls=crl)


def test_cn_allow_list(pki):
    leaf = pki.leaves["ed25519"]
    validate(leaf, pki.keyring(), allowed_cns={"release-ed25519", "other"})
    with pytest.raises(SignerNotAllowedError, match="CN=release-ed25519 is not in the allowed signers \\(a, b\\)"):
        validate(leaf, pki.keyring(), allowed_cns={"b", "a"})


def test_issuer_that_is_not_a_ca(pki):
    not_ca = issue(pki.root, "not-a-ca")  # a signing certificate used as an issuer
    leaf = issue(not_ca, "under-leaf")
    with pytest.raises(UntrustedChainError, match="issuer CN=not-a-ca .* is not a CA"):
        validate(leaf, pki.keyring())


def test_ca_without_key_cert_sign(pki):
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False)
    key = generate_private_key("ed25519")
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "weak-ca")]))
            .issuer_name(pki.root.cert.subject).public_key(key.public_key()).serial_number(99)
            .not_valid_before(NOW - DAY).not_valid_after(NOW + DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(usage, critical=True).sign(pki.root.key, None))
    from tests.signing.pki import Identity
    leaf = issue(Identity(cert, key), "under-weak-ca")
    with pytest.raises(UntrustedChainError, match="CN=weak-ca .* keyUsage lacks keyCertSign"):
        validate(leaf, pki.keyring())


def test_path_length_constraint(pki):
    # "Edge Intermediate" has pathLen 0: it may not issue another CA below it.
    sub = issue(pki.leaves["intermediate"], "Sub CA", ca=True)
    leaf = issue(sub, "too-deep")
    with pytest.raises(UntrustedChainError, match="CN=Edge Intermediate .* allows 0 intermediate CAs below it"):
        validate(leaf, pki.keyring())


def test_unknown_critical_extension(pki):
    odd = x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00")
    leaf = issue(pki.root, "odd", extra=((odd, True),))
    with pytest.raises(UntrustedChainError, match="unsupported critical extension 1.3.6.1.4.1.55555.1"):
        validate(leaf, pki.keyring())


def test_keyring_parsing(pki):
    pem = certificate_pem(pki.root.cert) + certificate_pem(pki.root2.cert) + certificate_pem(pki.root.cert)
    assert parse_keyring(pem).roots == (pki.root.cert, pki.root2.cert)
    with pytest.raises(KeyFileError, match="roots.pem: certificate 1 .* is not self-signed"):
        parse_keyring(certificate_pem(pki.leaves["intermediate"].cert), "roots.pem")
    with pytest.raises(KeyFileError, match="is not a CA certificate"):
        parse_keyring(certificate_pem(pki.leaves["ed25519"].cert))
    with pytest.raises(KeyFileError, match="holds no PEM certificate"):
        parse_keyring(b"-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n")


def test_crl_file_parsing(pki):
    crl = crl_for(pki.root, pki.leaves["revoked"]).crls[0]
    crl2 = crl_for(pki.root2).crls[0]
    pem = crl.public_bytes(serialization.Encoding.PEM) + crl2.public_bytes(serialization.Encoding.PEM)
    assert len(parse_crls(pem).crls) == 2
    assert len(parse_crls(crl.public_bytes(serialization.Encoding.DER)).crls) == 1
    with pytest.raises(RevocationListError, match="crl.pem: not a valid X.509 CRL"):
        parse_crls(b"\x30\x03\x02\x01\x01", "crl.pem")


def test_leaf_with_disallowed_key_is_refused(pki):
    from cryptography.hazmat.primitives.asymmetric import rsa
    small = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = build_certificate(small.public_key(), "rsa2048", issuer_cert=pki.root.cert, issuer_key=pki.root.key,
                             not_before=NOW - DAY, days=10)
    with pytest.raises(CertificateUsageError, match="rsa-2048 key cannot sign bundles"):
        validate_signing_chain(cert, [], pki.keyring(), at=NOW)


def test_naive_time_is_a_programming_error(pki):
    with pytest.raises(ValueError):
        validate_signing_chain(pki.leaves["ed25519"].cert, [], pki.keyring(), at=NOW.replace(tzinfo=None))


def _resigned(tbs: bytes, issuer_key) -> x509.Certificate:
    """A certificate of the to-be-signed part ``tbs``, signed by the Ed25519 ``issuer_key``."""
    def tlv(tag: int, body: bytes) -> bytes:
        n = len(body)
        head = bytes([n]) if n < 128 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
        return bytes([tag]) + head + body
    ed25519_algorithm = tlv(0x30, tlv(0x06, bytes([0x2B, 0x65, 0x70])))
    return x509.load_der_x509_certificate(tlv(0x30, tbs + ed25519_algorithm + tlv(0x03, b"\x00" + issuer_key.sign(tbs))))


def _with_negative_aki_serial(subject: str, issuer_cert: x509.Certificate | None, issuer_key, key, *,
                              ca: bool) -> tuple[x509.Certificate, x509.Certificate]:
    """A certificate for ``key`` whose authority key identifier names its issuer by serial number, signed
    by the Ed25519 ``issuer_key`` (``issuer_cert`` None: self-signed), and the same one with that serial
    made negative and signed again."""
    serial = 0x7E11AE55
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, subject)])
    issuer_name = name if issuer_cert is None else issuer_cert.subject
    issuer_public = issuer_key.public_key()
    aki = x509.AuthorityKeyIdentifier(x509.SubjectKeyIdentifier.from_public_key(issuer_public).digest,
                                      [x509.DirectoryName(issuer_name)], serial)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name).public_key(key.public_key())
               .serial_number(9).not_valid_before(NOW - DAY).not_valid_after(NOW + DAY)
               .add_extension(aki, critical=False)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    good = builder.sign(issuer_key, None)
    tbs = good.tbs_certificate_bytes
    encoded = b"\x82\x04" + serial.to_bytes(4, "big")  # [2] authorityCertSerialNumber
    assert tbs.count(encoded) == 1
    bad = _resigned(tbs.replace(encoded, b"\x82\x04" + (serial | 1 << 31).to_bytes(4, "big")), issuer_key)
    bad.verify_directly_issued_by(issuer_cert or bad)  # the signature is good: only the content is wrong
    return good, bad


def test_a_non_positive_serial_parsed_lazily_is_refused_without_a_warning(pki, recwarn):
    """RFC 5280 forbids it and cryptography only warns when it parses the extension (lazily, after
    loading): a properly signed certificate whose authority key identifier names the issuer by a
    negative serial number is refused as malformed, and no warning reaches the user's terminal."""
    key = generate_private_key("ed25519")
    good, leaf = _with_negative_aki_serial("odd-aki", pki.root.cert, pki.root.key, key, ca=False)
    validate_signing_chain(good, [], pki.keyring(), at=NOW)  # the same certificate with a positive serial is fine
    with pytest.raises(UntrustedChainError, match=r"malformed .*serial number"):
        validate_signing_chain(leaf, [], pki.keyring(), at=NOW)
    # `bundle create` checks its signer with the leaf rules alone: the same refusal, no warning
    check_signing_certificate(good)
    with pytest.raises(UntrustedChainError, match=r"the signing certificate is malformed .*serial number"):
        check_signing_certificate(leaf)
    assert not [w for w in recwarn if "serial number" in str(w.message)]


def test_a_keyring_root_with_a_non_positive_serial_is_refused_without_a_warning(recwarn):
    key = generate_private_key("ed25519")
    good, root = _with_negative_aki_serial("odd-root", None, key, key, ca=True)
    assert Keyring.from_certificates([good]).roots == (good,)
    with pytest.raises(KeyFileError, match=r"certificate 1 .* has malformed extensions .*serial number"):
        Keyring.from_certificates([root], "keyring.pem")
    assert not [w for w in recwarn if "serial number" in str(w.message)]


def test_a_keyring_root_whose_subject_does_not_parse_is_a_key_file_error():
    """The subject is parsed on first access, after loading: invalid UTF-8 in its common name (found by
    fuzzing a device's keyring.pem) is a KeyFileError naming the certificate, not an internal error."""
    root = make_root("Edge Root CA")
    der = root.cert.public_bytes(serialization.Encoding.DER)
    cn = b"\x0c\x0cEdge Root CA"  # UTF8String, 12 bytes: the issuer's, then the subject's
    assert der.count(cn) == 2
    at = der.rindex(cn) + len(cn) - 1
    damaged = x509.load_der_x509_certificate(der[:at] + b"\xf1" + der[at + 1:])  # loads: the subject is lazy
    pem = damaged.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(KeyFileError, match=r"keyring.pem: certificate 1 .* is malformed .*subject"):
        parse_keyring(pem, "keyring.pem")
