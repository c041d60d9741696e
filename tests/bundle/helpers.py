"""Helpers for bundle tests: images, bundles, streams, and the documented byte layout (parsed independently)."""

from __future__ import annotations

import io
import random
import struct
from dataclasses import dataclass

from edge.bundle import create_bundle
from edge.squashfs import BytesContent, Entry, Kind, Tree, WriterOptions, write_image
from tests.signing.pki import NOW, Identity

CHUNK = 16 * 1024  # small chunks so small bundles still have several


def make_image(path: str, size: int = 100_000, seed: int = 1) -> str:
    """A real squashfs image holding ``size`` random bytes (so the image is about that large)."""
    rnd = random.Random(seed)
    entries = [Entry("etc/os-release", Kind.FILE, content=BytesContent(b"NAME=edge-test\n")),
               Entry("data.bin", Kind.FILE, content=BytesContent(rnd.randbytes(size)))]
    write_image(Tree.from_entries(entries), path, WriterOptions(compressor="zstd", level=1, mtime=0))
    return path


def bundle_from(image: str, out: str, signer: Identity, **kw) -> str:
    kw.setdefault("compatible", ["qemu-x86_64"])
    kw.setdefault("version", "1.2.3")
    kw.setdefault("chunk_size", CHUNK)
    kw.setdefault("created", int(NOW.timestamp()))
    create_bundle(image, out, signer.signer(), **kw)
    return out


@dataclass(frozen=True)
class Layout:
    """Region boundaries per docs/bundle-format.md, parsed here without edge.bundle."""

    version: int
    manifest: tuple[int, int]
    signature: tuple[int, int]
    tag: tuple[int, int]
    payload: tuple[int, int]

    @property
    def regions(self) -> dict[str, tuple[int, int]]:
        return {"header": (0, 32), "manifest": self.manifest, "signature block": self.signature,
                "payload tag": self.tag, "payload": self.payload}


def layout(data: bytes) -> Layout:
    magic, version, r1, mlen, slen, r2, plen = struct.unpack(">8sHHIIIQ", data[:32])
    assert magic == b"EDGEBNDL" and r1 == r2 == 0
    m0 = 32
    s0 = m0 + mlen
    t0 = s0 + slen
    p0 = t0 + 32
    return Layout(version, (m0, s0), (s0, t0), (t0, p0), (p0, p0 + plen))


class Stream(io.RawIOBase):
    """A non-seekable stream that returns short reads, like a socket or pipe."""

    def __init__(self, data: bytes, piece: int = 1000) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._piece = piece
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        n = min(len(b), self._piece, len(self._data) - self._pos)
        b[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        self.bytes_read += n
        return n


def write(path: str, data: bytes) -> str:
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


