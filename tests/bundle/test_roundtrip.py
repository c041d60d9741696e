"""Creating, opening, verifying and streaming bundles: what a device and a build host rely on."""

from __future__ import annotations

import hashlib
import io
import json
import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from edge import __version__
from edge.bundle import (
    BundleCreateError,
    BundleError,
    DeltaPayloadError,
    ImageMismatchError,
    ImageRef,
    ManifestError,
    create_bundle,
    open_bundle,
    parse_semver,
)
from edge.errors import InputFileError
from edge.squashfs import SquashfsError
from signing.keyring import Keyring
from tests.bundle.helpers import CHUNK, Stream, layout, read, write
from tests.signing.pki import NOW


@pytest.mark.parametrize("signer, roots", [
    ("ed25519", ("root",)),
    ("ecdsa-p256", ("root",)),
    ("rsa3072", ("root",)),
    ("via-intermediate", ("root",)),
    ("root2", ("root", "root2")),  # rotation: a keyring with both roots
])
def test_create_verify_extract(make_bundle, image, pki, tmp_path, signer, roots):
    path = make_bundle(signer)
    keyring = Keyring.from_certificates([getattr(pki, r).cert for r in roots])
    with open_bundle(path) as bundle:
        v = bundle.verify(keyring, board="qemu-x86_64", installed_security_version=0)
        assert v.signer == pki.leaves[signer].cert.subject.rfc4514_string().removeprefix("CN=")
        assert v.certificates[0] == pki.leaves[signer].cert and v.certificates[-1] in keyring.roots
        assert v.signing_time == NOW
        assert b"".join(bundle.iter_chunks()) == read(image)
        assert bundle.extract_to(str(tmp_path / "out.sqfs")) == os.path.getsize(image)
    assert read(str(tmp_path / "out.sqfs")) == read(image)


def test_layout_is_as_documented(good_bundle, image, pki):
    """Parse the file with only the documented layout and cryptography; nothing from edge.bundle."""
    data = read(good_bundle)
    lay = layout(data)
    assert lay.version == 1
    manifest_bytes = data[slice(*lay.manifest)]
    manifest = json.loads(manifest_bytes)
    assert json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() == manifest_bytes
    sig = data[slice(*lay.signature)]
    assert sig[:4] == b"ESIG" and sig[4] == 1 and sig[5] == 1  # ed25519, one certificate
    sig_len = int.from_bytes(sig[6:8], "big")
    signature = sig[8:8 + sig_len]
    cert_len = int.from_bytes(sig[8 + sig_len:12 + sig_len], "big")
    assert 12 + sig_len + cert_len == len(sig)
    assert sig[12 + sig_len:] == pki.leaves["ed25519"].cert.public_bytes(serialization.Encoding.DER)
    key = pki.leaves["ed25519"].cert.public_key()
    assert isinstance(key, ed25519.Ed25519PublicKey)
    # the documented signed message: context, algorithm id, count, the certificate section, the manifest
    key.verify(signature, b"Edge bundle v1\x00" + bytes([1, 1]) + sig[8 + sig_len:] + manifest_bytes)
    assert data[slice(*lay.tag)] == hashlib.sha256(manifest_bytes).digest()
    payload = data[slice(*lay.payload)]
    assert payload == read(image) and lay.payload[1] == len(data)
    chunks = [payload[i:i + CHUNK] for i in range(0, len(payload), CHUNK)]
    assert manifest["payload"] == {"type": "full", "size": len(payload), "chunk_size": CHUNK,
                                   "chunks": [hashlib.sha256(c).hexdigest() for c in chunks]}
    assert manifest["target"] == {"sha256": hashlib.sha256(payload).hexdigest(), "size": len(payload)}
    assert manifest["source"] is None and manifest["delta"] is None
    assert manifest["compressor"] == "zstd" and manifest["compatible"] == ["qemu-x86_64"]
    assert manifest["version"] == "1.2.3" and manifest["security_version"] == 0 and manifest["format_version"] == 1
    assert manifest["created"] == int(NOW.timestamp()) and manifest["build"] == {"edge_version": __version__}


def test_manifest_dataclass_and_geometry(make_bundle, image, pki):
    path = make_bundle(security_version=7, meta={"channel": "beta"}, build={"recipe": "demo", "edge_version": "9.9.9"},
                       compatible=["rpi4", "rpi5"])
    with open_bundle(path) as bundle:
        bundle.verify(pki.keyring(), board="rpi5", installed_security_version=7)
        m = bundle.manifest
        size = os.path.getsize(image)
        assert (m.security_version, m.meta, m.build, m.compatible) == (7, {"channel": "beta"},
                                                                        {"recipe": "demo", "edge_version": "9.9.9"}, ("rpi4", "rpi5"))
        assert m.payload_type == "full" and m.source is None and m.target == ImageRef(hashlib.sha256(read(image)).hexdigest(), size)
        assert bundle.chunk_size == CHUNK and bundle.chunk_count == -(-size // CHUNK) == m.chunk_count
        assert bundle.chunk_span(0) == (0, CHUNK)
        assert bundle.chunk_span(bundle.chunk_count - 1) == ((bundle.chunk_count - 1) * CHUNK, size - (bundle.chunk_count - 1) * CHUNK)
        assert bundle.payload_offset + size == os.path.getsize(path) == bundle.total_size
        assert read(path)[bundle.payload_offset:bundle.payload_offset + 16] == read(image)[:16]


def test_verify_reads_no_payload_byte(good_bundle, pki):
    data = read(good_bundle)
    stream = Stream(data)
    bundle = open_bundle(stream, name="net")
    bundle.verify(pki.keyring())
    assert stream.bytes_read == layout(data).payload[0]  # header, manifest, signature block, tag: nothing more


def test_non_seekable_stream(good_bundle, image, pki):
    data = read(good_bundle)
    bundle = open_bundle(Stream(data, piece=777))
    bundle.verify(pki.keyring())
    assert b"".join(bundle.iter_chunks()) == read(image)
    resumed = open_bundle(Stream(data, piece=5000))
    resumed.verify(pki.keyring())
    assert b"".join(resumed.iter_chunks(start_chunk=3)) == read(image)[3 * CHUNK:]


class RecordingFile(io.RawIOBase):
    """A seekable file that records which byte ranges were read."""

    def __init__(self, path: str) -> None:
        self._fh = open(path, "rb", buffering=0)
        self.ranges: list[tuple[int, int]] = []

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        return self._fh.seek(pos, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        start = self._fh.tell()
        n = self._fh.readinto(b)
        if n:
            self.ranges.append((start, start + n))
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()


@pytest.mark.parametrize("method", ["iter_chunks", "stream_payload"])
def test_resume_on_a_seekable_source_skips_earlier_chunks(good_bundle, image, pki, method):
    fh = RecordingFile(good_bundle)
    bundle = open_bundle(fh)
    bundle.verify(pki.keyring())
    start = 4
    first_wanted = bundle.payload_offset + start * CHUNK
    fh.ranges.clear()
    got: list[tuple[int, bytes]] = []
    if method == "iter_chunks":
        got = list(enumerate(bundle.iter_chunks(start_chunk=start), start))
    else:
        bundle.stream_payload(lambda i, data: got.append((i, bytes(data))), start_chunk=start)
    assert [i for i, _ in got] == list(range(start, bundle.chunk_count))
    assert b"".join(d for _, d in got) == read(image)[start * CHUNK:]
    assert fh.ranges and min(r[0] for r in fh.ranges) == first_wanted  # nothing before chunk 4 was read again
    fh.close()


def test_payload_needs_a_successful_verify(good_bundle, pki):
    with open_bundle(good_bundle) as bundle:
        with pytest.raises(RuntimeError, match="verify"):
            next(bundle.iter_chunks())
        with pytest.raises(RuntimeError, match="verify"):
            bundle.verify_payload()


def test_extract_to_a_file_object_and_sink_order(good_bundle, image, pki):
    out = io.BytesIO()
    with open_bundle(good_bundle) as bundle:
        bundle.verify(pki.keyring())
        assert bundle.extract_to(out) == len(read(image))
    assert out.getvalue() == read(image)
    seen: list[int] = []
    with open_bundle(good_bundle) as bundle:
        bundle.verify(pki.keyring())
        bundle.stream_payload(lambda index, data: seen.append(index))
        assert seen == list(range(bundle.chunk_count))


def test_bundle_inside_a_larger_file(good_bundle, image, pki, tmp_path):
    path = write(str(tmp_path / "container"), b"P" * 4096 + read(good_bundle))
    with open(path, "rb") as fh:
        fh.seek(4096)
        bundle = open_bundle(fh)
        bundle.verify(pki.keyring())
        assert b"".join(bundle.iter_chunks(start_chunk=1)) == read(image)[CHUNK:]


def test_signer_may_not_be_broken(good_bundle, pki, image, tmp_path):
    class LyingSigner:
        algorithm = "ed25519"
        certificate = pki.leaves["ed25519"].cert
        chain = ()

        def sign(self, message: bytes) -> bytes:
            return bytes(64)

    with pytest.raises(BundleCreateError, match="signature its own certificate does not verify"):
        create_bundle(image, str(tmp_path / "x.edgeb"), LyingSigner(), compatible=["a"], version="1.0.0")
    assert os.listdir(tmp_path) == []


def _small_delta(tmp_path) -> tuple[str, ImageRef, ImageRef]:
    from edge.delta import make_delta
    from tests.delta.helpers import base_entries, edit
    from tests.delta.helpers import write as write_image

    old = write_image(base_entries(7, files=8), str(tmp_path / "old.sqfs"))
    new = write_image(edit(base_entries(7, files=8), 7), str(tmp_path / "new.sqfs"))
    delta_file = str(tmp_path / "delta.bin")
    make_delta(old, new, delta_file)
    refs = [ImageRef(hashlib.sha256(read(p)).hexdigest(), os.path.getsize(p)) for p in (old, new)]
    return delta_file, refs[0], refs[1]


def test_delta_bundle_through_the_api(pki, tmp_path):
    delta_file, source, target = _small_delta(tmp_path)
    out = str(tmp_path / "d.edgeb")
    create_bundle(delta_file, out, pki.leaves["ed25519"].signer(), payload_type="delta", compatible=["qemu"],
                  version="2.0.0-rc.1", security_version=3, source=(source.sha256, source.size), target=target,
                  compressor="zstd", delta={"engine": "edge-delta", "version": 1, "block_size": 4096, "ops": [1, 2]},
                  chunk_size=8192)
    with open_bundle(out) as bundle:
        bundle.verify(pki.keyring(), board="qemu", installed_security_version=3)
        m = bundle.manifest
        assert m.payload_type == "delta" and m.source == source and m.target == target
        assert m.delta == {"engine": "edge-delta", "version": 1, "block_size": 4096, "ops": [1, 2]}
        assert b"".join(bundle.iter_chunks()) == read(delta_file)


def test_delta_bundle_must_name_the_images_its_delta_names(pki, tmp_path):
    """The signature covers the manifest and the payload, not that they agree: create refuses a
    manifest whose source or target is not the one in the delta's own header, and a payload that is
    not a delta at all."""
    delta_file, source, target = _small_delta(tmp_path)
    other = ImageRef("b" * 64, target.size)
    kw = dict(payload_type="delta", compatible=["qemu"], version="2.0.0", compressor="zstd")
    signer = pki.leaves["ed25519"].signer()
    with pytest.raises(ImageMismatchError, match=f"the delta's target image is sha256 {target.sha256}"):
        create_bundle(delta_file, str(tmp_path / "a.edgeb"), signer, source=source, target=other, **kw)
    with pytest.raises(ImageMismatchError, match="the delta's source image"):
        create_bundle(delta_file, str(tmp_path / "b.edgeb"), signer, source=ImageRef(source.sha256, source.size + 1),
                      target=target, **kw)
    noise = write(str(tmp_path / "noise.bin"), os.urandom(5000))
    with pytest.raises(BundleCreateError, match="not a usable delta: .*not an Edge delta"):
        create_bundle(noise, str(tmp_path / "c.edgeb"), signer, source=source, target=target, **kw)
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".edgeb")]


def test_verify_payload_checks_that_the_delta_names_the_manifests_images(pki, tmp_path, monkeypatch):
    """A signed delta bundle built around the wrong delta (another tool, a pipeline mix-up: create
    refuses it, see above) is refused by verify_payload, after every chunk checked out."""
    from edge.bundle import writer

    delta_file, source, target = _small_delta(tmp_path)
    monkeypatch.setattr(writer, "_check_delta_images", lambda *a: None)
    kw = dict(payload_type="delta", compatible=["qemu"], version="2.0.0", compressor="zstd", chunk_size=4096, delta={})
    signer = pki.leaves["ed25519"].signer()
    other = ImageRef("c" * 64, target.size + 1)
    noise = write(str(tmp_path / "noise.bin"), os.urandom(5000))
    cases = [(delta_file, source, target, None),
             (delta_file, source, other, f"the delta's target image is sha256 {target.sha256} \\({target.size} bytes\\), "
                                         f"the signed manifest names {'c' * 64} \\({target.size + 1} bytes\\)"),
             (delta_file, other, target, "the delta's source image"),
             (noise, source, target, "not a usable delta: .*not an Edge delta")]
    for i, (payload, src, tgt, pattern) in enumerate(cases):
        out = str(tmp_path / f"{i}.edgeb")
        create_bundle(payload, out, signer, source=src, target=tgt, **kw)
        with open_bundle(out) as bundle:
            bundle.verify(pki.keyring(), board="qemu")
            if pattern is None:
                assert bundle.verify_payload() == os.path.getsize(payload)
            else:
                with pytest.raises(DeltaPayloadError, match=pattern):
                    bundle.verify_payload()


@pytest.mark.parametrize("kwargs, pattern", [
    ({"payload_type": "delta", "compressor": "zstd", "target": ("b" * 64, 5)}, "needs source"),
    ({"payload_type": "full", "source": ("a" * 64, 5)}, "takes no source"),
    ({"payload_type": "sideways"}, "not 'full' or 'delta'"),
    ({"chunk_size": 1000}, "power of two"),
])
def test_create_refuses_inconsistent_arguments(image, pki, tmp_path, kwargs, pattern):
    with pytest.raises(BundleCreateError, match=pattern):
        create_bundle(image, str(tmp_path / "x.edgeb"), pki.leaves["ed25519"].signer(), compatible=["a"], version="1.0.0", **kwargs)
    assert os.listdir(tmp_path) == []


def test_full_payload_must_be_squashfs_and_fields_valid(pki, tmp_path, image):
    junk = write(str(tmp_path / "junk.sqfs"), os.urandom(10_000))
    signer = pki.leaves["ed25519"].signer()
    with pytest.raises(SquashfsError):
        create_bundle(junk, str(tmp_path / "x.edgeb"), signer, compatible=["a"], version="1.0.0")
    with pytest.raises(ManifestError, match="version '1.0' is not a semantic version"):
        create_bundle(image, str(tmp_path / "x.edgeb"), signer, compatible=["a"], version="1.0")
    with pytest.raises(ManifestError, match="compatible entry 'has space'"):
        create_bundle(image, str(tmp_path / "x.edgeb"), signer, compatible=["has space"], version="1.0.0")
    with pytest.raises(BundleCreateError, match="compressed with zstd, not xz"):
        create_bundle(image, str(tmp_path / "x.edgeb"), signer, compatible=["a"], version="1.0.0", compressor="xz")
    assert sorted(os.listdir(tmp_path)) == ["junk.sqfs"]


def test_semver():
    assert parse_semver("1.2.3-rc.1+build.5").prerelease == ("rc", "1")
    order = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
             "1.0.0-rc.1", "1.0.0", "1.0.1", "1.10.0", "2.0.0"]
    keys = [parse_semver(v).precedence() for v in order]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    for bad in ("1.2", "01.2.3", "1.2.3-", "1.2.3-01", "v1.2.3", "1.2.3 "):
        with pytest.raises(ManifestError):
            parse_semver(bad)


def test_a_stream_cannot_be_rewound(good_bundle, pki):
    bundle = open_bundle(Stream(read(good_bundle)))
    bundle.verify(pki.keyring())
    assert len(b"".join(bundle.iter_chunks())) > 0
    with pytest.raises(BundleError, match="cannot be rewound"):
        next(bundle.iter_chunks(start_chunk=1))


def test_missing_bundle_file(tmp_path):
    with pytest.raises(InputFileError, match="nope.edgeb: cannot open bundle"):
        open_bundle(str(tmp_path / "nope.edgeb"))
