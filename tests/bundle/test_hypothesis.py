"""Property tests: damaged bundles never verify, only ever raise BundleError, and stay within bounded memory."""

from __future__ import annotations

import itertools
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.bundle import BundleError, open_bundle
from tests.bundle.helpers import Stream, bundle_from, layout, read, write
from tests.bundle.test_errors import REGIONS

SIGNERS = ["via-intermediate", "ecdsa-p256", "rsa3072"]  # ed25519 leaf + intermediate chain, ECDSA DER, RSA-PSS
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def originals(tmp_path_factory, image, pki):
    out = {}
    for signer in SIGNERS:
        path = bundle_from(image, str(tmp_path_factory.mktemp("h") / f"{signer}.edgeb"), pki.leaves[signer], chunk_size=4096)
        out[signer] = read(path)
    return out


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return str(tmp_path_factory.mktemp("scratch") / "damaged.edgeb")


def refused(data: bytes, keyring, source: str, scratch: str) -> None:
    """Open, verify and stream ``data`` like a device; it must fail with a BundleError within bounded memory."""
    src = write(scratch, data) if source == "file" else Stream(data, piece=3000)
    tracemalloc.start()
    try:
        with pytest.raises(BundleError):
            bundle = open_bundle(src)
            try:
                bundle.verify(keyring)
                for _ in bundle.iter_chunks():
                    pass
            finally:
                bundle.close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(data) + 2 * MiB, f"peak {peak} bytes for a {len(data)}-byte bundle"


def test_originals_verify(originals, pki):
    """The property tests below start from bundles that do verify."""
    for data in originals.values():
        bundle = open_bundle(Stream(data))
        bundle.verify(pki.keyring())
        assert sum(len(c) for c in bundle.iter_chunks()) == layout(data).payload[1] - layout(data).payload[0]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(signer=st.sampled_from(SIGNERS), region=st.sampled_from(REGIONS), position=st.integers(0, 2**32),
       mask=st.integers(1, 255), source=st.sampled_from(["file", "stream"]))
def test_any_byte_damage_in_any_region_is_refused(originals, pki, scratch, signer, region, position, mask, source):
    data = bytearray(originals[signer])
    start, end = layout(bytes(data)).regions[region]
    data[start + position % (end - start)] ^= mask
    refused(bytes(data), pki.keyring(), source, scratch)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(signer=st.sampled_from(SIGNERS), region=st.sampled_from(REGIONS), position=st.integers(0, 2**32),
       source=st.sampled_from(["file", "stream"]))
def test_truncation_anywhere_is_refused(originals, pki, scratch, signer, region, position, source):
    data = originals[signer]
    start, end = layout(data).regions[region]
    refused(data[:start + position % (end - start)], pki.keyring(), source, scratch)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extra=st.binary(min_size=1, max_size=5000), source=st.sampled_from(["file", "stream"]))
def test_appended_bytes_are_refused(originals, pki, scratch, extra, source):
    refused(originals["ecdsa-p256"] + extra, pki.keyring(), source, scratch)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(head=st.binary(min_size=0, max_size=64), tail=st.binary(max_size=4096), source=st.sampled_from(["file", "stream"]))
def test_arbitrary_bytes_after_the_magic_are_refused(pki, scratch, head, tail, source):
    refused(b"EDGEBNDL\x00\x01" + head + tail, pki.keyring(), source, scratch)


class Endless(Stream):
    """A stream that never ends (a hostile server)."""

    def __init__(self, prefix: bytes) -> None:
        super().__init__(b"")
        self._prefix = prefix

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        n = len(b)
        take = min(n, len(self._prefix))
        b[:take] = self._prefix[:take]
        self._prefix = self._prefix[take:]
        b[take:n] = bytes(n - take)
        self.bytes_read += n
        return n


@pytest.mark.parametrize("lengths", [(16 * MiB, 1 * MiB), (1000, 1 * MiB), (16 * MiB, 8)])
def test_hostile_lengths_on_an_endless_stream_stay_bounded(pki, lengths):
    manifest_length, signature_length = lengths
    header = b"EDGEBNDL" + (1).to_bytes(2, "big") + bytes(2) + manifest_length.to_bytes(4, "big") + \
        signature_length.to_bytes(4, "big") + bytes(4) + (2**62).to_bytes(8, "big")
    stream = Endless(header)
    tracemalloc.start()
    try:
        with pytest.raises(BundleError):
            bundle = open_bundle(stream)
            bundle.verify(pki.keyring())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert stream.bytes_read <= 32 + manifest_length + signature_length + 32 + MiB
    assert peak < 2 * manifest_length + 2 * signature_length + 4 * MiB


def test_every_single_bit_of_header_and_tag(originals, pki, scratch):
    """Exhaustive where it is cheap: each bit of the header and the payload tag."""
    data = originals["ecdsa-p256"]
    lay = layout(data)
    for offset, bit in itertools.product(list(range(32)) + list(range(*lay.tag)), range(8)):
        damaged = bytearray(data)
        damaged[offset] ^= 1 << bit
        refused(bytes(damaged), pki.keyring(), "file", scratch)


def _resigned(original: bytes, identity, certs: list[bytes]) -> bytes:
    """``original`` with its certificates replaced and re-signed by ``identity``'s key: an attacker with some key."""
    from tests.bundle.test_errors import craft
    lay = layout(original)
    manifest, payload = original[slice(*lay.manifest)], original[slice(*lay.payload)]
    return craft(identity, manifest, payload, certs=certs)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 1), position=st.integers(0, 2**32), mask=st.integers(1, 255), source=st.sampled_from(["file", "stream"]))
def test_damaged_certificates_signed_by_the_attacker_are_refused(originals, pki, scratch, which, position, mask, source):
    """The signature checks out (the attacker signed the damaged certificates), so the chain
    validator itself parses the damaged bytes: it must refuse them with a BundleError."""
    from cryptography.hazmat.primitives import serialization
    identity = pki.leaves["via-intermediate"]
    certs = [identity.cert.public_bytes(serialization.Encoding.DER), identity.chain[0].public_bytes(serialization.Encoding.DER)]
    damaged = bytearray(certs[which])
    damaged[position % len(damaged)] ^= mask
    certs[which] = bytes(damaged)
    refused(_resigned(originals["via-intermediate"], identity, certs), pki.keyring(), source, scratch)
