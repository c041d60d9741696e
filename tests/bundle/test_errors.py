"""Every way a bundle can be wrong, each with its own error class and a message naming the problem."""

from __future__ import annotations

import hashlib
import json
import os
import struct

import pytest
from cryptography.hazmat.primitives import serialization

import signing.errors as trust
from edge.bundle import (
    BundleBadSignatureError,
    BundleCertificateTimeError,
    BundleCertificateUsageError,
    BundleError,
    BundleHeaderError,
    BundleRevocationListError,
    BundleRevokedError,
    BundleSignerNotAllowedError,
    BundleUnknownSignerError,
    BundleUntrustedChainError,
    ChunkMismatchError,
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
    open_bundle,
)
from signing.keys import sign_message
from tests.bundle.helpers import CHUNK, Stream, layout, read, write
from tests.signing.pki import DAY, NOW, Identity, crl_for

ALG_IDS = {"ed25519": 1, "ecdsa-p256-sha256": 2, "rsa-pss-sha256": 3}


def verify_all(path_or_stream, keyring, **kw) -> None:
    """What a device does: open, verify, consume every chunk."""
    bundle = open_bundle(path_or_stream)
    try:
        bundle.verify(keyring, **kw)
        for _ in bundle.iter_chunks():
            pass
    finally:
        bundle.close()


def craft(identity: Identity, manifest: bytes, payload: bytes, *, version: int = 1, reserved: tuple[int, int] = (0, 0),
          header_payload: int | None = None, tag: bytes | None = None, block: bytes | None = None,
          certs: list[bytes] | None = None) -> bytes:
    """A bundle assembled by hand from the documented layout, validly signed by ``identity``'s key
    (over ``certs`` if given, else the identity's certificate and chain)."""
    from signing.keys import signature_algorithm_for
    ders = certs if certs is not None else (
        [identity.cert.public_bytes(serialization.Encoding.DER)] + [c.public_bytes(serialization.Encoding.DER) for c in identity.chain])
    alg_and_count = bytes([ALG_IDS[signature_algorithm_for(identity.key)], len(ders)])
    cert_section = b"".join(struct.pack(">I", len(d)) + d for d in ders)
    signature = sign_message(identity.key, b"Edge bundle v1\x00" + alg_and_count + cert_section + manifest)
    if block is None:
        block = b"ESIG" + alg_and_count + struct.pack(">H", len(signature)) + signature + cert_section
    header = struct.pack(">8sHHIIIQ", b"EDGEBNDL", version, reserved[0], len(manifest), len(block), reserved[1],
                         len(payload) if header_payload is None else header_payload)
    return header + manifest + block + (hashlib.sha256(manifest).digest() if tag is None else tag) + payload


def parts(path: str) -> tuple[bytes, dict, bytes]:
    data = read(path)
    lay = layout(data)
    manifest = data[slice(*lay.manifest)]
    return data, json.loads(manifest), data[slice(*lay.payload)]


def canonical(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# ----------------------------------------------------------------- signature and trust (exit 7)
def test_bad_signature_when_the_manifest_is_altered(good_bundle, pki, tmp_path):
    data = read(good_bundle)
    lay = layout(data)
    manifest = data[slice(*lay.manifest)]
    altered = manifest.replace(b'"version":"1.2.3"', b'"version":"9.2.3"')
    assert altered != manifest and len(altered) == len(manifest)
    path = write(str(tmp_path / "b"), data[:lay.manifest[0]] + altered + data[lay.manifest[1]:])
    with pytest.raises(BundleBadSignatureError, match=r"b: ed25519 signature does not verify") as info:
        verify_all(path, pki.keyring())
    assert isinstance(info.value, trust.BadSignatureError) and info.value.exit_code == 7


def test_bad_signature_when_the_signature_is_altered(good_bundle, pki, tmp_path):
    data = bytearray(read(good_bundle))
    data[layout(bytes(data)).signature[0] + 8 + 10] ^= 0x20  # a byte inside the signature value
    with pytest.raises(BundleBadSignatureError, match="signature does not verify"):
        verify_all(write(str(tmp_path / "b"), bytes(data)), pki.keyring())


def test_unknown_signer(make_bundle, pki):
    with pytest.raises(BundleUnknownSignerError, match="unknown signer: CN=stranger") as info:
        verify_all(make_bundle("stranger"), pki.keyring())
    assert isinstance(info.value, trust.UnknownSignerError)


def test_chain_not_to_a_trusted_root(make_bundle, pki):
    with pytest.raises(BundleUntrustedChainError, match="chain ends at CN=Foreign Intermediate .* not a trusted root"):
        verify_all(make_bundle("via-foreign-intermediate"), pki.keyring())


def test_certificate_without_code_signing_eku(make_bundle, pki):
    with pytest.raises(BundleCertificateUsageError, match="CN=no-eku .* codeSigning is required"):
        verify_all(make_bundle("no-eku"), pki.keyring())


def test_certificate_not_valid_at_signing_time(make_bundle, pki):
    path = make_bundle("expired", created=int(NOW.timestamp()))  # signed after the certificate expired
    with pytest.raises(BundleCertificateTimeError, match="CN=expired .* was not valid at the signing time"):
        verify_all(path, pki.keyring())


def test_expired_now_but_valid_when_signed_still_verifies(make_bundle, pki):
    # The certificate expired 70 days ago; the bundle was signed 80 days ago. No device clock is consulted.
    verify_all(make_bundle("expired", created=int((NOW - 80 * DAY).timestamp())), pki.keyring())


def test_revoked_certificate(make_bundle, pki):
    crl = crl_for(pki.root, pki.leaves["revoked"])
    with pytest.raises(BundleRevokedError, match="CN=revoked .* was revoked"):
        verify_all(make_bundle("revoked", created=int((NOW - 20 * DAY).timestamp())), pki.keyring(), crl=crl)


def test_crl_not_signed_by_the_ca(good_bundle, pki):
    with pytest.raises(BundleRevocationListError, match="not signed by that CA"):
        verify_all(good_bundle, pki.keyring(), crl=crl_for(pki.root, signing_key=pki.other_root.key))


def test_signer_not_in_allow_list(good_bundle, pki):
    verify_all(good_bundle, pki.keyring(), allowed_cns={"release-ed25519"})
    with pytest.raises(BundleSignerNotAllowedError, match="CN=release-ed25519 is not in the allowed signers"):
        verify_all(good_bundle, pki.keyring(), allowed_cns={"release-2027"})


# ----------------------------------------------------------------- device policy (exit 9)
def test_wrong_board(good_bundle, pki):
    with pytest.raises(IncompatibleBoardError, match="bundle is for qemu-x86_64, not for this board rpi4") as info:
        verify_all(good_bundle, pki.keyring(), board="rpi4")
    assert info.value.exit_code == 9


def test_security_version_below_floor(make_bundle, pki):
    path = make_bundle(security_version=4)
    verify_all(path, pki.keyring(), installed_security_version=4)  # equal to the floor is fine
    with pytest.raises(SecurityVersionError, match="security_version 4 is below this device's floor 5") as info:
        verify_all(path, pki.keyring(), installed_security_version=5)
    assert info.value.exit_code == 9


# ----------------------------------------------------------------- format (exit 8)
REGIONS = ["header", "manifest", "signature block", "payload tag", "payload"]


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize("where", ["start", "middle", "last-byte"])
@pytest.mark.parametrize("source", ["file", "stream"])
def test_truncated_in_every_region(good_bundle, pki, tmp_path, region, where, source):
    data = read(good_bundle)
    start, end = layout(data).regions[region]
    cut = {"start": start, "middle": (start + end) // 2, "last-byte": end - 1}[where]  # header start: an empty file
    short = data[:cut]
    src = write(str(tmp_path / "b"), short) if source == "file" else Stream(short)
    with pytest.raises(TruncatedBundleError, match=f"truncated: the (file|stream) ends at offset {cut}, inside the {region}") as info:
        verify_all(src, pki.keyring())
    assert info.value.region.startswith(region) and info.value.offset == cut and info.value.exit_code == 8


def test_trailing_garbage(good_bundle, image, pki, tmp_path):
    data = read(good_bundle) + b"garbage"
    with pytest.raises(TrailingDataError, match=f"7 unexpected bytes after the payload end at offset {len(data) - 7}"):
        verify_all(write(str(tmp_path / "b"), data), pki.keyring())
    bundle = open_bundle(Stream(data))  # a stream only finds out at the end, after every chunk checked out
    bundle.verify(pki.keyring())
    chunks = []
    with pytest.raises(TrailingDataError, match="unexpected bytes after the payload"):
        for chunk in bundle.iter_chunks():
            chunks.append(chunk)
    assert b"".join(chunks) == read(image)


def test_payload_chunk_mismatch_stops_at_that_chunk(good_bundle, image, pki, tmp_path):
    data = bytearray(read(good_bundle))
    p0 = layout(bytes(data)).payload[0]
    data[p0 + 3 * CHUNK + 100] ^= 0x01
    path = write(str(tmp_path / "b"), bytes(data))
    bundle = open_bundle(path)
    bundle.verify(pki.keyring())  # the manifest is fine; the payload is checked as it streams
    received = []
    with pytest.raises(ChunkMismatchError, match=f"payload chunk 3 \\(bundle offset {p0 + 3 * CHUNK}\\) does not match") as info:
        for chunk in bundle.iter_chunks():
            received.append(chunk)
    assert info.value.chunk == 3 and len(received) == 3 and b"".join(received) == read(image)[:3 * CHUNK]
    bundle.close()
    out = tmp_path / "out" / "image.sqfs"
    out.parent.mkdir()
    with open_bundle(path) as again:
        again.verify(pki.keyring())
        with pytest.raises(ChunkMismatchError, match="chunk 3"):
            again.extract_to(str(out))
    assert os.listdir(out.parent) == []  # no partial image, no temporary file


def test_mix_and_match(make_bundle, image2, pki, tmp_path):
    a = read(make_bundle())
    b = read(make_bundle(source_image=image2, version="2.0.0"))
    la, lb = layout(a), layout(b)
    assert la.payload[1] - la.payload[0] == lb.payload[1] - lb.payload[0]  # same payload size: only content differs
    swapped = a[:la.tag[0]] + b[lb.tag[0]:]  # A's manifest and signature, B's tag and payload
    with pytest.raises(PayloadMismatchError, match="belongs to another bundle"):
        verify_all(write(str(tmp_path / "m1"), swapped), pki.keyring())
    forged_tag = a[:la.payload[0]] + b[lb.payload[0]:]  # even with A's tag, B's chunks do not match A's manifest
    with pytest.raises(ChunkMismatchError, match="payload chunk 0"):
        verify_all(write(str(tmp_path / "m2"), forged_tag), pki.keyring())


def test_manifest_too_large_is_refused_before_reading_it(pki):
    header = struct.pack(">8sHHIIIQ", b"EDGEBNDL", 1, 0, 16 * 1024 * 1024 + 1, 100, 0, 4096)
    stream = Stream(header + b"{" * 100_000)
    with pytest.raises(ManifestTooLargeError, match="16777217-byte manifest, more than the 16777216-byte limit"):
        open_bundle(stream)
    assert stream.bytes_read == 32


def _manifest_of(good_bundle) -> tuple[dict, bytes]:
    _, manifest, payload = parts(good_bundle)
    return manifest, payload


@pytest.mark.parametrize("mutate, pattern", [
    (lambda m: canonical(m)[:-1], "malformed JSON"),
    (lambda m: b"[1,2,3]", "not a JSON object"),
    (lambda m: canonical(m).replace(b'{"build"', b'{"version":"1.2.3","build"', 1), "duplicate key 'version'"),
    (lambda m: canonical(m).replace(b'"security_version":0', b'"security_version":0.5'), "non-integer number '0.5'"),
    (lambda m: json.dumps(m, sort_keys=True).encode(), "not in canonical form"),
    (lambda m: canonical({**m, "extra": 1}), "unknown field extra"),
    (lambda m: canonical({k: v for k, v in m.items() if k != "compatible"}), "missing field compatible"),
    (lambda m: canonical({**m, "payload": {**m["payload"], "chunks": m["payload"]["chunks"][:-1]}}), "payload.chunks has"),
    (lambda m: canonical({**m, "version": "latest"}), "version 'latest' is not a semantic version"),
    (lambda m: canonical({**m, "security_version": True}), "security_version True is not an integer"),
    (lambda m: b"\xff" + canonical(m)[1:], "not UTF-8"),
])
def test_malformed_manifest_even_when_validly_signed(good_bundle, pki, tmp_path, mutate, pattern):
    manifest, payload = _manifest_of(good_bundle)
    data = craft(pki.leaves["ed25519"], mutate(manifest), payload)
    with pytest.raises(ManifestError, match=pattern):
        verify_all(write(str(tmp_path / "b"), data), pki.keyring())


def test_unsupported_format_version(good_bundle, pki, tmp_path):
    manifest, payload = _manifest_of(good_bundle)
    data = craft(pki.leaves["ed25519"], canonical(manifest), payload, version=2)
    with pytest.raises(UnsupportedFormatVersionError, match="bundle format version 2 is not supported"):
        verify_all(write(str(tmp_path / "b"), data), pki.keyring())


def test_not_a_bundle(image, pki):
    with pytest.raises(NotABundleError, match="not an Edge bundle"):
        verify_all(image, pki.keyring())
    with pytest.raises(NotABundleError):
        verify_all(Stream(b"hsqs"), pki.keyring())


def test_header_disagrees_with_the_signed_manifest(good_bundle, pki, tmp_path):
    manifest, payload = _manifest_of(good_bundle)
    data = craft(pki.leaves["ed25519"], canonical(manifest), payload + bytes(4096), header_payload=len(payload) + 4096)
    with pytest.raises(BundleHeaderError, match=f"header says the payload is {len(payload) + 4096} bytes, the signed manifest says {len(payload)}"):
        verify_all(write(str(tmp_path / "b"), data), pki.keyring())


def test_reserved_header_bytes(good_bundle, pki, tmp_path):
    manifest, payload = _manifest_of(good_bundle)
    data = craft(pki.leaves["ed25519"], canonical(manifest), payload, reserved=(0, 1))
    with pytest.raises(BundleHeaderError, match="reserved bytes .* are not zero"):
        verify_all(write(str(tmp_path / "b"), data), pki.keyring())


@pytest.mark.parametrize("damage, pattern", [
    (lambda b: b"XSIG" + b[4:], "bad magic"),
    (lambda b: b[:4] + b"\x09" + b[5:], "unknown signature algorithm id 9"),
    (lambda b: b + b"\x00\x00", "2 unexpected bytes after the last certificate"),
    (lambda b: b[:5] + b"\x00" + b[6:], "certificate count 0"),
])
def test_malformed_signature_block(good_bundle, pki, tmp_path, damage, pattern):
    data = read(good_bundle)
    lay = layout(data)
    manifest, payload = data[slice(*lay.manifest)], data[slice(*lay.payload)]
    block = damage(data[slice(*lay.signature)])
    with pytest.raises(SignatureBlockError, match=pattern):
        verify_all(write(str(tmp_path / "b"), craft(pki.leaves["ed25519"], manifest, payload, block=block)), pki.keyring())


def test_certificate_in_block_that_is_not_der(good_bundle, pki, tmp_path):
    data = read(good_bundle)
    lay = layout(data)
    block = bytearray(data[slice(*lay.signature)])
    sig_len = struct.unpack(">H", block[6:8])[0]
    block[8 + sig_len + 4] = 0x04  # the certificate's outer SEQUENCE tag becomes OCTET STRING
    crafted = data[:lay.signature[0]] + bytes(block) + data[lay.signature[1]:]
    with pytest.raises(SignatureBlockError, match="certificate 0 in the signature block is not valid DER X.509"):
        verify_all(write(str(tmp_path / "b"), crafted), pki.keyring())


def test_error_families_and_exit_codes():
    assert all(issubclass(c, BundleError) for c in (BundleBadSignatureError, IncompatibleBoardError, TruncatedBundleError))
    assert issubclass(BundleRevokedError, trust.CertificateRevokedError) and BundleRevokedError.exit_code == 7
    assert TruncatedBundleError.exit_code == ChunkMismatchError.exit_code == ManifestError.exit_code == 8
    assert SecurityVersionError.exit_code == IncompatibleBoardError.exit_code == 9
