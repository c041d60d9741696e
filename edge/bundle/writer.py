"""Writing a bundle: hash the payload in chunks, sign the manifest, write header + manifest + signature + payload.

The payload is read twice (once to hash, once to copy) and never held in
memory; the copy pass re-hashes every chunk, so a payload that changes while
the bundle is written is an error, not a bundle whose chunks do not match.
The output appears atomically (temporary file, fsync, rename).

Full bundles carry the squashfs image as-is; delta bundles carry whatever
file the delta engine produced, plus the source/target image references and
the engine's parameters (``delta``), all under the signature.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from cryptography.hazmat.primitives import serialization

from edge import __version__ as edge_version
from edge.fsutil import atomic_output
from edge.errors import InputFileError
from edge.squashfs import SquashfsImage
from signing.errors import TrustError
from signing.keys import verify_message
from signing.signer import Signer

from .errors import BundleCreateError, ImageMismatchError, ManifestError
from .format import FORMAT_VERSION, Header, SignatureBlock, payload_tag, signed_message
from .manifest import (
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNK_SIZE,
    MIN_CHUNK_SIZE,
    ImageRef,
    Manifest,
    delta_image_mismatch,
    is_valid_chunk_size,
)

ProgressCallback = Callable[[int, int], None]
ImageSpec = ImageRef | tuple[str, int]


@dataclass(frozen=True)
class CreatedBundle:
    path: str
    manifest: Manifest
    manifest_sha256: str
    size: int  # bytes of the whole bundle


def _check_delta_images(payload: str, source: ImageRef, target: ImageRef) -> None:
    """The delta's own header names the images it goes from and to: they must be the manifest's."""
    from edge.delta import DeltaError, read_header

    try:
        header = read_header(payload)[0]
    except DeltaError as exc:
        raise BundleCreateError(f"{payload}: not a usable delta: {exc}") from None
    mismatch = delta_image_mismatch(header, source, target)
    if mismatch is not None:
        what, found, ref = mismatch
        raise ImageMismatchError(f"{payload}: the delta's {what} image is sha256 {found.sha256} ({found.size} bytes), "
                                 f"the bundle names {ref.sha256} ({ref.size} bytes)")


def create_bundle(
    payload_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    signer: Signer,
    *,
    payload_type: str = "full",
    compatible: Sequence[str],
    version: str,
    security_version: int = 0,
    target: ImageSpec | None = None,
    source: ImageSpec | None = None,
    compressor: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    build: Mapping[str, str] | None = None,
    meta: Mapping[str, str] | None = None,
    delta: Mapping[str, Any] | None = None,
    created: int | None = None,
    progress: ProgressCallback | None = None,
) -> CreatedBundle:
    """Write a signed bundle of ``payload_path`` to ``out_path``.

    ``payload_type="full"``: the payload must be a squashfs image; its
    compressor is read from it (``compressor``, if given, must agree) and
    ``target`` defaults to the payload's own SHA-256 and size (if given, it
    must match).  ``payload_type="delta"``: ``source`` and ``target`` (the
    images the delta goes from and to, as :class:`ImageRef` or
    ``(sha256_hex, size)``) and ``compressor`` (the target image's) are
    required, and ``delta`` holds the engine's parameters (JSON values, no
    floats).  ``created`` is the signing time (default: now); certificates
    are judged at this time on the device.
    """
    payload = os.fspath(payload_path)
    out = os.fspath(out_path)
    try:
        payload_size = os.stat(payload).st_size
    except OSError as exc:
        raise InputFileError(f"{payload}: {exc.strerror or exc}") from None
    if payload_size == 0:
        raise BundleCreateError(f"{payload}: the payload is empty")
    if os.path.exists(out) and os.path.samefile(out, payload):
        raise BundleCreateError(f"{out}: the output would overwrite the payload")
    if not is_valid_chunk_size(chunk_size):
        raise BundleCreateError(f"chunk size {chunk_size} must be a power of two from {MIN_CHUNK_SIZE} to {MAX_CHUNK_SIZE}")
    target_ref = _image_ref(target, "target")
    source_ref = _image_ref(source, "source")
    if payload_type == "full":
        if source_ref is not None or delta is not None:
            raise BundleCreateError("a full bundle takes no source image and no delta parameters")
        with SquashfsImage(payload) as img:
            image_compressor = img.superblock.compressor_name
        if compressor is not None and compressor != image_compressor:
            raise BundleCreateError(f"{payload}: the image is compressed with {image_compressor}, not {compressor}")
        compressor = image_compressor
    elif payload_type == "delta":
        if source_ref is None or target_ref is None or compressor is None:
            raise BundleCreateError("a delta bundle needs source=(sha256, size), target=(sha256, size) and the target's compressor")
        _check_delta_images(payload, source_ref, target_ref)
    else:
        raise BundleCreateError(f"payload type {payload_type!r} is not 'full' or 'delta'")

    total_work = 2 * payload_size
    chunk_hashes, whole = _hash_payload(payload, payload_size, chunk_size,
                                        None if progress is None else lambda done: progress(done, total_work))
    if payload_type == "full":
        actual = ImageRef(whole, payload_size)
        if target_ref is not None and target_ref != actual:
            raise ImageMismatchError(f"{payload}: expected sha256 {target_ref.sha256} ({target_ref.size} bytes), "
                                    f"the image has sha256 {actual.sha256} ({actual.size} bytes)")
        target_ref = actual
    assert target_ref is not None

    manifest = Manifest(
        compatible=tuple(compatible),
        version=version,
        security_version=security_version,
        payload_type=payload_type,
        payload_size=payload_size,
        chunk_size=chunk_size,
        chunk_hashes=tuple(chunk_hashes),
        compressor=compressor,
        target=target_ref,
        source=source_ref,
        created=int(time.time()) if created is None else created,
        build=dict(build) if build is not None else {"edge_version": edge_version},
        meta=dict(meta or {}),
        delta=None if delta is None else dict(delta),
        format_version=FORMAT_VERSION,
    )
    manifest_bytes = manifest.encode()
    certificates = tuple(c.public_bytes(serialization.Encoding.DER) for c in (signer.certificate, *signer.chain))
    message = signed_message(manifest_bytes, signer.algorithm, certificates)
    signature = signer.sign(message)
    try:
        verify_message(signer.certificate.public_key(), signer.algorithm, signature, message)
    except TrustError as exc:
        raise BundleCreateError(f"the signer produced a signature its own certificate does not verify ({exc})") from None
    block = SignatureBlock(signer.algorithm, signature, certificates).pack()
    header = Header(FORMAT_VERSION, len(manifest_bytes), len(block), payload_size)

    with atomic_output(out, prefix=".edge-bundle-") as fh:
        fh.write(header.pack())
        fh.write(manifest_bytes)
        fh.write(block)
        tag = payload_tag(manifest_bytes)
        fh.write(tag)
        _copy_payload(payload, fh, manifest, None if progress is None else lambda done: progress(payload_size + done, total_work))
    return CreatedBundle(out, manifest, tag.hex(), header.total_size)


def _image_ref(spec: ImageSpec | None, what: str) -> ImageRef | None:
    if spec is None or isinstance(spec, ImageRef):
        return spec
    try:
        sha, size = spec
    except (TypeError, ValueError):
        raise ManifestError(f"{what} must be (sha256_hex, size)") from None
    return ImageRef(str(sha), size)


def _payload_chunks(fh: BinaryIO, path: str, size: int, chunk_size: int, when: str) -> Iterator[memoryview]:
    """Exactly ``size`` bytes of ``fh`` in ``chunk_size`` pieces, read into one reused buffer (each view is
    valid until the next is yielded); BundleCreateError when the file is shorter or longer than ``size``."""
    buf = bytearray(chunk_size)
    done = 0
    while done < size:
        want = min(chunk_size, size - done)
        view = memoryview(buf)[:want]
        got = 0
        while got < want:
            n = fh.readinto(view[got:])
            if not n:
                raise BundleCreateError(f"{path}: the payload shrank {when} ({done + got} of {size} bytes)")
            got += n
        yield view
        done += want
    if fh.read(1):
        raise BundleCreateError(f"{path}: the payload grew {when}")


def _hash_payload(path: str, size: int, chunk_size: int, progress: Callable[[int], None] | None) -> tuple[list[bytes], str]:
    hashes: list[bytes] = []
    whole = hashlib.sha256()
    done = 0
    with open(path, "rb", buffering=0) as fh:
        for view in _payload_chunks(fh, path, size, chunk_size, "while it was read"):
            hashes.append(hashlib.sha256(view).digest())
            whole.update(view)
            done += len(view)
            if progress is not None:
                progress(done)
    return hashes, whole.hexdigest()


def _copy_payload(path: str, out: Any, manifest: Manifest, progress: Callable[[int], None] | None) -> None:
    with open(path, "rb", buffering=0) as fh:
        chunks = _payload_chunks(fh, path, manifest.payload_size, manifest.chunk_size, "while the bundle was written")
        for index, view in enumerate(chunks):
            if hashlib.sha256(view).digest() != manifest.chunk_hashes[index]:
                raise BundleCreateError(f"{path}: the payload changed while the bundle was written (chunk {index})")
            out.write(view)
            if progress is not None:
                progress(index * manifest.chunk_size + len(view))
