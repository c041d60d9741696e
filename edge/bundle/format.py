"""The byte layout of an Edge bundle (format version 1); pure packing and unpacking.

A bundle is one file, read front to back (all integers big-endian)::

    offset           size  region
    0                32    header
    32               M     manifest: canonical JSON, signed
    32+M             S     signature block: algorithm, signature, certificates
    32+M+S           32    payload tag: SHA-256 of the manifest bytes
    32+M+S+32        P     payload, in chunks of the manifest's chunk size

Header (32 bytes)::

    0   8  magic "EDGEBNDL"
    8   2  format version (1)
    10  2  reserved, zero
    12  4  manifest length M (2 .. 16 MiB)
    16  4  signature block length S (8 .. 1 MiB)
    20  4  reserved, zero
    24  8  payload length P (1 .. 2^63-1; must equal the manifest's payload size)

Signature block (S bytes)::

    0   4  magic "ESIG"
    4   1  algorithm: 1 ed25519, 2 ecdsa-p256-sha256, 3 rsa-pss-sha256
    5   1  certificate count N (1 .. 8): signing certificate, then intermediates toward the root
    6   2  signature length L (1 .. 1024)
    8   L  signature over the signed message (below)
    then N times: 4-byte length C (1 .. 64 KiB), C bytes of DER certificate
    (the block ends exactly after the last certificate)

Signed message::

    SIGNING_CONTEXT ("Edge bundle v1" and a zero byte, 15 bytes)
    algorithm id (1 byte) and certificate count N (1 byte)
    the N length-prefixed certificates, exactly as in the block
    the manifest bytes

So every byte of the signature block except the signature itself is signed:
a certificate parser that tolerates a damaged byte (some ignore, for
instance, the unused-bits octet of a certificate's signature) cannot turn
into an unchecked byte in the bundle.

The header is not signed; every field in it is either fixed (magic, reserved),
repeated in the signed manifest (format version, payload length) or only
frames signed bytes (the manifest and signature lengths), so altering it
cannot go unnoticed.  The payload tag is not signed either: it lets a reader
say "this payload belongs to another bundle" instead of "chunk 0 does not
match"; the chunk hashes are what protect the payload.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from signing.keys import ECDSA_P256_SHA256, ED25519, RSA_PSS_SHA256

from .errors import (
    BundleHeaderError,
    ManifestTooLargeError,
    NotABundleError,
    SignatureBlockError,
    UnsupportedFormatVersionError,
)

MAGIC = b"EDGEBNDL"
FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = frozenset({FORMAT_VERSION})
HEADER = struct.Struct(">8sHHIIIQ")
HEADER_SIZE = HEADER.size  # 32
MIN_MANIFEST_SIZE = 2
MAX_MANIFEST_SIZE = 16 * 1024 * 1024
MIN_SIGNATURE_BLOCK_SIZE = 8
MAX_SIGNATURE_BLOCK_SIZE = 1024 * 1024
MAX_PAYLOAD_SIZE = (1 << 63) - 1
PAYLOAD_TAG_SIZE = 32

# The signed message starts with this prefix, so a signature made for a bundle
# can never be mistaken for one over something else.
SIGNING_CONTEXT = b"Edge bundle v1\x00"

SIG_MAGIC = b"ESIG"
SIG_FIXED = struct.Struct(">4sBBH")
SIG_CERT_LENGTH = struct.Struct(">I")
MAX_SIGNATURE_SIZE = 1024
MAX_CERTIFICATES = 8
MAX_CERTIFICATE_SIZE = 64 * 1024

ALGORITHM_IDS = {ED25519: 1, ECDSA_P256_SHA256: 2, RSA_PSS_SHA256: 3}
ALGORITHMS_BY_ID = {v: k for k, v in ALGORITHM_IDS.items()}


@dataclass(frozen=True)
class Header:
    format_version: int
    manifest_length: int
    signature_length: int
    payload_length: int

    @property
    def manifest_offset(self) -> int:
        return HEADER_SIZE

    @property
    def signature_offset(self) -> int:
        return HEADER_SIZE + self.manifest_length

    @property
    def tag_offset(self) -> int:
        return self.signature_offset + self.signature_length

    @property
    def payload_offset(self) -> int:
        return self.tag_offset + PAYLOAD_TAG_SIZE

    @property
    def total_size(self) -> int:
        return self.payload_offset + self.payload_length

    def pack(self) -> bytes:
        return HEADER.pack(MAGIC, self.format_version, 0, self.manifest_length, self.signature_length, 0, self.payload_length)

    @classmethod
    def unpack(cls, data: bytes, name: str) -> Header:
        """Parse and range-check a header; the magic and version are checked before anything else."""
        if data[:8] != MAGIC:
            raise NotABundleError(f"{name}: not an Edge bundle (the file does not start with {MAGIC.decode()!r})")
        magic, version, reserved1, mlen, slen, reserved2, plen = HEADER.unpack(data)
        if version not in SUPPORTED_FORMAT_VERSIONS:
            supported = ", ".join(str(v) for v in sorted(SUPPORTED_FORMAT_VERSIONS))
            raise UnsupportedFormatVersionError(f"{name}: bundle format version {version} is not supported (this Edge reads {supported})")
        if reserved1 or reserved2:
            raise BundleHeaderError(f"{name}: header reserved bytes at offset 10 or 20 are not zero")
        if mlen > MAX_MANIFEST_SIZE:
            raise ManifestTooLargeError(f"{name}: header announces a {mlen}-byte manifest, more than the {MAX_MANIFEST_SIZE}-byte limit")
        if mlen < MIN_MANIFEST_SIZE:
            raise BundleHeaderError(f"{name}: header announces a {mlen}-byte manifest (at least {MIN_MANIFEST_SIZE})")
        if not MIN_SIGNATURE_BLOCK_SIZE <= slen <= MAX_SIGNATURE_BLOCK_SIZE:
            raise BundleHeaderError(
                f"{name}: header announces a {slen}-byte signature block (must be {MIN_SIGNATURE_BLOCK_SIZE} to {MAX_SIGNATURE_BLOCK_SIZE})"
            )
        if not 1 <= plen <= MAX_PAYLOAD_SIZE:
            raise BundleHeaderError(f"{name}: header announces a payload of {plen} bytes")
        return cls(version, mlen, slen, plen)


@dataclass(frozen=True)
class SignatureBlock:
    algorithm: str
    signature: bytes
    certificates: tuple[bytes, ...]  # DER; signing certificate first

    def pack(self) -> bytes:
        if self.algorithm not in ALGORITHM_IDS:
            raise SignatureBlockError(f"unknown signature algorithm {self.algorithm!r}")
        if not 1 <= len(self.signature) <= MAX_SIGNATURE_SIZE:
            raise SignatureBlockError(f"a {len(self.signature)}-byte signature does not fit the signature block")
        if not 1 <= len(self.certificates) <= MAX_CERTIFICATES:
            raise SignatureBlockError(f"{len(self.certificates)} certificates (1 to {MAX_CERTIFICATES} allowed)")
        for der in self.certificates:
            if not 1 <= len(der) <= MAX_CERTIFICATE_SIZE:
                raise SignatureBlockError(f"a {len(der)}-byte certificate does not fit the signature block")
        block = b"".join([SIG_FIXED.pack(SIG_MAGIC, ALGORITHM_IDS[self.algorithm], len(self.certificates), len(self.signature)),
                          self.signature, _certificate_section(self.certificates)])
        if len(block) > MAX_SIGNATURE_BLOCK_SIZE:
            raise SignatureBlockError(f"signature block of {len(block)} bytes exceeds {MAX_SIGNATURE_BLOCK_SIZE}")
        return block

    def signed_message(self, manifest_bytes: bytes) -> bytes:
        """What :attr:`signature` must be a signature over, for this block and ``manifest_bytes``."""
        return signed_message(manifest_bytes, self.algorithm, self.certificates)

    @classmethod
    def unpack(cls, data: bytes, name: str, offset: int) -> SignatureBlock:
        """Parse a signature block that starts at ``offset`` in the bundle (for messages)."""
        def fail(what: str, at: int) -> SignatureBlockError:
            return SignatureBlockError(f"{name}: signature block at offset {offset}: {what} (at offset {offset + at})")

        if len(data) < SIG_FIXED.size:
            raise fail("shorter than its fixed part", 0)
        magic, alg_id, count, sig_len = SIG_FIXED.unpack_from(data)
        if magic != SIG_MAGIC:
            raise fail(f"bad magic {magic!r}, expected {SIG_MAGIC!r}", 0)
        if alg_id not in ALGORITHMS_BY_ID:
            raise fail(f"unknown signature algorithm id {alg_id}", 4)
        if not 1 <= count <= MAX_CERTIFICATES:
            raise fail(f"certificate count {count} (1 to {MAX_CERTIFICATES} allowed)", 5)
        if not 1 <= sig_len <= MAX_SIGNATURE_SIZE:
            raise fail(f"signature length {sig_len} (1 to {MAX_SIGNATURE_SIZE} allowed)", 6)
        pos = SIG_FIXED.size
        if pos + sig_len > len(data):
            raise fail(f"the {sig_len}-byte signature runs past the end of the block", pos)
        signature = bytes(data[pos:pos + sig_len])
        pos += sig_len
        certs: list[bytes] = []
        for n in range(count):
            if pos + SIG_CERT_LENGTH.size > len(data):
                raise fail(f"certificate {n} length runs past the end of the block", pos)
            (clen,) = SIG_CERT_LENGTH.unpack_from(data, pos)
            if not 1 <= clen <= MAX_CERTIFICATE_SIZE:
                raise fail(f"certificate {n} length {clen} (1 to {MAX_CERTIFICATE_SIZE} allowed)", pos)
            pos += SIG_CERT_LENGTH.size
            if pos + clen > len(data):
                raise fail(f"certificate {n} ({clen} bytes) runs past the end of the block", pos)
            certs.append(bytes(data[pos:pos + clen]))
            pos += clen
        if pos != len(data):
            raise fail(f"{len(data) - pos} unexpected bytes after the last certificate", pos)
        return cls(ALGORITHMS_BY_ID[alg_id], signature, tuple(certs))


def signed_message(manifest_bytes: bytes, algorithm: str, certificates: tuple[bytes, ...]) -> bytes:
    """The exact bytes the bundle signature covers (see the module docstring)."""
    if algorithm not in ALGORITHM_IDS or not 1 <= len(certificates) <= MAX_CERTIFICATES:
        raise SignatureBlockError(f"cannot sign with {algorithm!r} and {len(certificates)} certificates")
    return b"".join([SIGNING_CONTEXT, bytes([ALGORITHM_IDS[algorithm], len(certificates)]), _certificate_section(certificates),
                     manifest_bytes])


def _certificate_section(certificates: tuple[bytes, ...]) -> bytes:
    return b"".join(SIG_CERT_LENGTH.pack(len(der)) + der for der in certificates)


def payload_tag(manifest_bytes: bytes) -> bytes:
    """The 32 bytes written before the payload: SHA-256 of the manifest."""
    return hashlib.sha256(manifest_bytes).digest()
