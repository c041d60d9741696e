"""Reading a bundle on the device side: open, verify the signed manifest, then stream verified chunks.

Order of work, so nothing is trusted before it is checked:

1. :func:`open_bundle` reads the header, manifest bytes, signature block and
   payload tag (bounded: at most 32 B + 16 MiB + 1 MiB + 32 B) and checks
   their framing.  No JSON is parsed and no payload byte is read.
2. :meth:`Bundle.verify` checks the signature over the manifest bytes with
   the signing certificate's key, then parses the manifest, checks the header
   and payload tag agree with it (and, on a seekable source, the file size),
   validates the certificate chain at the manifest's signing time against
   the keyring and CRLs, and finally the device policy (board, security
   version).
3. :meth:`Bundle.iter_chunks` / :meth:`Bundle.stream_payload` read the
   payload chunk by chunk and hand a chunk out only after its SHA-256 matched
   the manifest; the first bad chunk stops the stream with an error naming
   it, and bytes after the payload are an error.

A source is a path or any readable binary stream.  On a seekable source,
``start_chunk`` seeks straight to a chunk so an interrupted install resumes
without re-reading what it already wrote.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import queue
import stat
import threading
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from cryptography import x509

from edge.errors import InputFileError, short_digests
from edge.fsutil import atomic_output
from signing.certs import MALFORMED_CERTIFICATE, common_name, fingerprint, parse_der_certificate
from signing.chain import validate_signing_chain
from signing.errors import TrustError
from signing.keyring import Keyring, RevocationList
from signing.keys import verify_message

from .errors import (
    BundleError,
    BundleHeaderError,
    ChunkMismatchError,
    DeltaPayloadError,
    IncompatibleBoardError,
    NotABundleError,
    PayloadMismatchError,
    SecurityVersionError,
    SignatureBlockError,
    TrailingDataError,
    TruncatedBundleError,
    as_bundle_error,
)
from .format import HEADER_SIZE, MAGIC, PAYLOAD_TAG_SIZE, Header, SignatureBlock, payload_tag
from .manifest import Manifest, decode_manifest, delta_image_mismatch
from .writeback import WritebackWriter

ProgressCallback = Callable[[int, int], None]
ChunkSink = Callable[[int, memoryview], None]

_READ_PIECE = 1024 * 1024  # metadata regions are read in pieces, so a lying length never allocates at once
_MAX_BUFFER_BYTES = 32 * 1024 * 1024  # total chunk buffers in flight while streaming


@dataclass(frozen=True)
class Verification:
    """What :meth:`Bundle.verify` established."""

    signer: str  # common name of the signing certificate
    chain: tuple[str, ...]  # common names, signer first, trusted root last
    root_fingerprint: str  # SHA-256 of the trusted root certificate (hex)
    signing_time: datetime.datetime
    manifest_sha256: str
    certificates: tuple[x509.Certificate, ...]  # the validated path, signer first


class _Head:
    """The first ``limit`` bytes of a payload, gathered chunk by chunk by ``stream_payload``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()

    def take(self, _: int, chunk: memoryview) -> None:
        if len(self.data) < self.limit:
            self.data += chunk[: self.limit - len(self.data)]


class Bundle:
    """An opened bundle.  Create with :func:`open_bundle`; use as a context manager to close the source."""

    def __init__(self, fh: BinaryIO, name: str, owns: bool) -> None:
        self.name = name
        self._fh = fh
        self._owns = owns
        self._seekable = _is_seekable(fh)
        self._base = fh.tell() if self._seekable else 0
        self._pos = 0  # bytes consumed relative to the bundle start (streams)
        self._manifest: Manifest | None = None
        self._certificates: tuple[x509.Certificate, ...] | None = None
        self._verification: Verification | None = None
        try:
            head = self._read_exact(HEADER_SIZE, "header", 0, check_magic=True)
            self.header = Header.unpack(head, name)
            h = self.header
            self.manifest_bytes = self._read_exact(h.manifest_length, "manifest", h.manifest_offset)
            self._manifest_digest = payload_tag(self.manifest_bytes)  # its sha256, as the payload tag names it
            sig = self._read_exact(h.signature_length, "signature block", h.signature_offset)
            self.signature_block = SignatureBlock.unpack(sig, name, h.signature_offset)
            self.payload_tag = self._read_exact(PAYLOAD_TAG_SIZE, "payload tag", h.tag_offset)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if self._owns:
            self._fh.close()

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------- geometry
    @property
    def manifest(self) -> Manifest:
        """The manifest; before :meth:`verify` succeeded it is parsed but NOT trusted (for inspection)."""
        if self._manifest is None:
            self._manifest = decode_manifest(self.manifest_bytes, self.name)
        return self._manifest

    @property
    def manifest_sha256(self) -> str:
        return self._manifest_digest.hex()

    @property
    def verification(self) -> Verification | None:
        """The result of the last successful :meth:`verify`, else None."""
        return self._verification

    @property
    def payload_offset(self) -> int:
        """Offset of payload byte 0 from the start of the bundle."""
        return self.header.payload_offset

    @property
    def payload_size(self) -> int:
        return self.header.payload_length

    @property
    def total_size(self) -> int:
        return self.header.total_size

    @property
    def chunk_size(self) -> int:
        return self.manifest.chunk_size

    @property
    def chunk_count(self) -> int:
        return self.manifest.chunk_count

    def chunk_span(self, index: int) -> tuple[int, int]:
        """(offset within the payload, length) of chunk ``index``."""
        return index * self.manifest.chunk_size, self.manifest.chunk_length(index)

    @property
    def certificates(self) -> tuple[x509.Certificate, ...]:
        """The embedded certificates (signer first), parsed but not validated."""
        if self._certificates is None:
            certs = []
            for n, der in enumerate(self.signature_block.certificates):
                try:
                    certs.append(parse_der_certificate(der))
                except MALFORMED_CERTIFICATE as exc:
                    raise SignatureBlockError(f"{self.name}: certificate {n} in the signature block is not valid DER X.509 ({exc})") from None
            self._certificates = tuple(certs)
        return self._certificates

    # --------------------------------------------------------------- verify
    def verify(self, keyring: Keyring, crl: RevocationList | None = None, board: str | None = None,
               installed_security_version: int | None = None, allowed_cns: Collection[str] | None = None) -> Verification:
        """Check signature, manifest, framing, chain and device policy; read no payload byte.

        ``board``: the device's board string, which must be in the manifest's
        ``compatible`` list.  ``installed_security_version``: the device's
        anti-rollback floor; the bundle's ``security_version`` must not be
        lower.  ``allowed_cns``: if given, the signer's common name must be
        in it.  Raises a :class:`BundleError` subclass on any failure.
        """
        self._verification = None
        try:
            certs = self.certificates
            try:
                leaf_key = certs[0].public_key()
            except MALFORMED_CERTIFICATE as exc:
                raise SignatureBlockError(f"{self.name}: the signing certificate's public key is unusable ({exc})") from None
            verify_message(leaf_key, self.signature_block.algorithm, self.signature_block.signature,
                           self.signature_block.signed_message(self.manifest_bytes))
            manifest = decode_manifest(self.manifest_bytes, self.name)
            self._manifest = manifest
            self._check_agreement(manifest)
            chain = validate_signing_chain(certs[0], certs[1:], keyring, at=manifest.signing_time, crls=crl,
                                           allowed_cns=allowed_cns)
        except BundleError:
            raise
        except TrustError as exc:
            raise as_bundle_error(exc, self.name) from None
        if board is not None and board not in manifest.compatible:
            raise IncompatibleBoardError(
                f"{self.name}: bundle is for {', '.join(manifest.compatible)}, not for this board {board}"
            )
        if installed_security_version is not None and manifest.security_version < installed_security_version:
            raise SecurityVersionError(
                f"{self.name}: security_version {manifest.security_version} is below this device's floor "
                f"{installed_security_version} (anti-rollback)"
            )
        self._verification = Verification(
            signer=chain.signer_name,
            chain=chain.names,
            root_fingerprint=fingerprint(chain.root),
            signing_time=chain.signing_time,
            manifest_sha256=self.manifest_sha256,
            certificates=chain.path,
        )
        return self._verification

    def _check_agreement(self, manifest: Manifest) -> None:
        h = self.header
        if manifest.format_version != h.format_version:
            raise BundleHeaderError(f"{self.name}: header says format version {h.format_version}, the manifest {manifest.format_version}")
        if manifest.payload_size != h.payload_length:
            raise BundleHeaderError(
                f"{self.name}: header says the payload is {h.payload_length} bytes, the signed manifest says {manifest.payload_size}"
            )
        if self.payload_tag != self._manifest_digest:
            named, this = short_digests(self.payload_tag.hex(), self.manifest_sha256)
            raise PayloadMismatchError(
                f"{self.name}: the payload at offset {h.payload_offset} belongs to another bundle "
                f"(its tag names manifest {named}, this manifest is {this})"
            )
        if self._seekable:
            size = self._source_size()
            if size is not None and size < h.total_size:
                raise TruncatedBundleError(
                    f"{self.name}: truncated: the file ends at offset {size}, inside the payload "
                    f"(bytes {h.payload_offset}-{h.total_size - 1})", "payload", size)
            if size is not None and size > h.total_size:
                raise TrailingDataError(f"{self.name}: {size - h.total_size} unexpected bytes after the payload end at offset {h.total_size}")

    # -------------------------------------------------------------- payload
    def iter_chunks(self, start_chunk: int = 0) -> Iterator[bytes]:
        """Yield payload chunks ``start_chunk``, ``start_chunk + 1``, ... each only after its hash matched.

        Requires a successful :meth:`verify`.  On a seekable source it seeks to
        the chunk; on a stream it reads forward (discarding) to it.  After the
        last chunk, any further byte raises :class:`TrailingDataError`.
        """
        manifest = self._verified_manifest()
        self._seek_payload(start_chunk, manifest)
        for index in range(start_chunk, manifest.chunk_count):
            offset, length = self.chunk_span(index)
            data = self._read_exact(length, f"payload (chunk {index})", self.payload_offset + offset)
            if hashlib.sha256(data).digest() != manifest.chunk_hashes[index]:
                raise self._chunk_error(index, offset)
            yield data
        self._check_end()

    def stream_payload(self, sink: ChunkSink | None, *, start_chunk: int = 0,
                       progress: ProgressCallback | None = None) -> int:
        """Verify chunks from ``start_chunk`` on and pass each to ``sink(index, data)``; returns bytes verified.

        The fast path behind ``extract`` and ``verify``: chunks are read into
        reused buffers and hashed on this thread while ``sink`` runs on a
        writer thread, in chunk order.  ``data`` is only valid during the call.
        A sink is never given a chunk that did not match.  Requires a
        successful :meth:`verify`.
        """
        manifest = self._verified_manifest()
        self._seek_payload(start_chunk, manifest)
        total = self.payload_size
        done = start_chunk * manifest.chunk_size
        count = manifest.chunk_count
        readinto = getattr(self._fh, "readinto", None)
        # One buffer to check only; with a sink, several so reading+hashing overlaps writing (<= 32 MiB in all).
        nbuf = 1 if sink is None else max(2, min(8, _MAX_BUFFER_BYTES // manifest.chunk_size))
        nbuf = min(nbuf, max(1, count - start_chunk))
        buffers = [bytearray(manifest.chunk_size) for _ in range(nbuf)]
        free: queue.Queue[int] = queue.Queue()
        for i in range(len(buffers)):
            free.put(i)
        full: queue.Queue[tuple[int, int, int] | None] = queue.Queue()
        failures: list[BaseException] = []

        def write_loop() -> None:
            assert sink is not None
            try:
                while (item := full.get()) is not None:
                    slot, index, length = item
                    sink(index, memoryview(buffers[slot])[:length])
                    free.put(slot)
            except BaseException as exc:  # handed to the reading thread, raised there
                failures.append(exc)
                free.put(-1)

        writer = threading.Thread(target=write_loop, name="edge-bundle-writer", daemon=True) if sink else None
        if writer is not None:
            writer.start()
        try:
            for index in range(start_chunk, count):
                slot = free.get()
                if slot < 0 or failures:
                    break
                offset, length = self.chunk_span(index)
                view = memoryview(buffers[slot])[:length]
                self._read_into(view, readinto, f"payload (chunk {index})", self.payload_offset + offset)
                if hashlib.sha256(view).digest() != manifest.chunk_hashes[index]:
                    raise self._chunk_error(index, offset)
                if writer is not None:
                    full.put((slot, index, length))
                else:
                    free.put(slot)
                done += length
                if progress is not None:
                    progress(done, total)
            if not failures:
                self._check_end()
        finally:
            if writer is not None:
                full.put(None)
                writer.join()
        if failures:
            raise failures[0]
        return done - start_chunk * manifest.chunk_size

    def verify_payload(self, progress: ProgressCallback | None = None) -> int:
        """Read and check every payload chunk and the end of the bundle, writing nothing.

        For a delta bundle, also check that the delta's own header names the
        manifest's source and target images (the signature covers the manifest
        and each chunk, not that the two agree): :class:`DeltaPayloadError`.
        """
        manifest = self._verified_manifest()
        if manifest.payload_type != "delta":
            return self.stream_payload(None, progress=progress)
        from edge.delta import format as dfmt

        head = _Head(dfmt.PREAMBLE.size + dfmt.MAX_HEADER + 4 + dfmt.MAX_SAMPLE)  # all that preamble() may read
        done = self.stream_payload(head.take, progress=progress)
        self._check_delta_head(bytes(head.data), manifest)
        return done

    def _check_delta_head(self, head: bytes, manifest: Manifest) -> None:
        import io

        from edge.delta import DeltaError
        from edge.delta.format import DeltaReader

        try:
            header = DeltaReader(io.BytesIO(head), "payload").preamble()[0]
        except DeltaError as exc:
            raise DeltaPayloadError(f"{self.name}: the payload of this delta bundle is not a usable delta: {exc}") from None
        assert manifest.source is not None
        mismatch = delta_image_mismatch(header, manifest.source, manifest.target)
        if mismatch is not None:
            what, found, want = mismatch
            raise DeltaPayloadError(f"{self.name}: the delta's {what} image is sha256 {found.sha256} ({found.size} "
                                    f"bytes), the signed manifest names {want.sha256} ({want.size} bytes): the bundle "
                                    "was built wrong; rebuild it")

    def extract_to(self, dest: str | os.PathLike[str] | BinaryIO, *, progress: ProgressCallback | None = None,
                   sync: bool = True) -> int:
        """Write the verified payload to ``dest``; returns the bytes written.

        A path is written through a temporary file in the same directory
        (with writeback started behind the writer, see
        :mod:`edge.bundle.writeback`), fsynced (unless ``sync=False``) and
        renamed into place only after the
        last chunk and the end of the bundle checked out: a bad bundle never
        leaves a partial image behind.  A file object is written sequentially
        from its current position (the caller owns its atomicity).
        """
        if not isinstance(dest, (str, os.PathLike)):
            write = dest.write

            def to_stream(_: int, data: memoryview) -> None:
                write(data)

            written = self.stream_payload(to_stream, progress=progress)
            dest.flush()
            return written
        with atomic_output(dest, prefix=".edge-extract-", sync=sync) as fh:
            out = WritebackWriter(fh.fileno())
            return self.stream_payload(lambda _, data: out.write(data), progress=progress)

    # ------------------------------------------------------------ internals
    def _verified_manifest(self) -> Manifest:
        if self._verification is None or self._manifest is None:
            raise RuntimeError("Bundle.verify() must succeed before the payload is read")
        return self._manifest

    def _chunk_error(self, index: int, offset: int) -> ChunkMismatchError:
        return ChunkMismatchError(
            f"{self.name}: payload chunk {index} (bundle offset {self.payload_offset + offset}) does not match its "
            "SHA-256 in the signed manifest", index, self.payload_offset + offset)

    def _seek_payload(self, start_chunk: int, manifest: Manifest) -> None:
        if not 0 <= start_chunk <= manifest.chunk_count:
            raise ValueError(f"start_chunk {start_chunk} is outside 0..{manifest.chunk_count}")
        target = self.payload_offset + start_chunk * manifest.chunk_size
        if self._seekable:
            self._fh.seek(self._base + target)
            self._pos = target
            return
        if self._pos > target:
            raise BundleError(f"{self.name}: the stream is already past chunk {start_chunk} and cannot be rewound")
        while self._pos < target:  # a stream cannot seek: read forward without keeping anything
            step = min(_READ_PIECE, target - self._pos)
            data = self._fh.read(step)
            if not data:
                raise TruncatedBundleError(f"{self.name}: truncated: the stream ends at offset {self._pos}, inside the payload",
                                           "payload", self._pos)
            self._pos += len(data)

    def _check_end(self) -> None:
        extra = self._fh.read(1)
        if extra:
            end = self.header.total_size
            count = ""
            if self._seekable:
                size = self._source_size()
                if size is not None:
                    count = f"{size - end} "
            raise TrailingDataError(f"{self.name}: {count}unexpected bytes after the payload end at offset {end}")

    def _source_size(self) -> int | None:
        """Bytes from the bundle start to the end of the source: known for regular files and in-memory
        buffers; None for block devices, pipes and other streams (their end is found by reading)."""
        try:
            st = os.fstat(self._fh.fileno())
        except (OSError, AttributeError, ValueError):
            st = None
        if st is not None:
            return st.st_size - self._base if stat.S_ISREG(st.st_mode) else None
        try:
            here = self._fh.tell()
            end = self._fh.seek(0, os.SEEK_END)
            self._fh.seek(here)
            return end - self._base
        except (OSError, ValueError):
            return None

    def _read_exact(self, size: int, region: str, offset: int, check_magic: bool = False) -> bytes:
        """Exactly ``size`` bytes of ``region`` (which starts at bundle ``offset``), or a truncation error."""
        first = self._fh.read(min(size, _READ_PIECE)) or b""
        if len(first) == size:
            self._pos += size
            return first
        parts = [first]
        got = len(first)
        while got < size:
            piece = self._fh.read(min(size - got, _READ_PIECE))
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
        self._pos += got
        data = b"".join(parts)
        if got < size:
            if check_magic and not MAGIC.startswith(data[:len(MAGIC)]):
                raise NotABundleError(f"{self.name}: not an Edge bundle (the file does not start with {MAGIC.decode()!r})")
            raise TruncatedBundleError(
                f"{self.name}: truncated: the file ends at offset {offset + got}, inside the {region} "
                f"(bytes {offset}-{offset + size - 1})", region, offset + got)
        return data

    def _read_into(self, view: memoryview, readinto: Callable[[memoryview], int | None] | None, region: str, offset: int) -> None:
        size = len(view)
        got = 0
        while got < size:
            if readinto is not None:
                n = readinto(view[got:]) or 0
            else:
                piece = self._fh.read(size - got) or b""
                n = len(piece)
                view[got:got + n] = piece
            if n == 0:
                break
            got += n
        self._pos += got
        if got < size:
            raise TruncatedBundleError(
                f"{self.name}: truncated: the file ends at offset {offset + got}, inside the {region} "
                f"(bytes {offset}-{offset + size - 1})", region, offset + got)


def _is_seekable(fh: BinaryIO) -> bool:
    try:
        if not fh.seekable():
            return False
        fh.tell()
        return True
    except (AttributeError, OSError, ValueError):
        return False


def open_bundle(source: str | os.PathLike[str] | BinaryIO, *, name: str | None = None) -> Bundle:
    """Open a bundle from a path or a readable binary stream and read everything up to the payload.

    A stream is read from its current position (seekable or not); it is not
    closed by :meth:`Bundle.close`, a path's file is.
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:
            fh: BinaryIO = open(path, "rb", buffering=0)
        except OSError as exc:
            raise InputFileError(f"{path}: cannot open bundle: {exc.strerror or exc}") from None
        return Bundle(fh, name or path, owns=True)
    return Bundle(source, name or str(getattr(source, "name", "bundle")), owns=False)


def signer_summary(bundle: Bundle) -> list[str]:
    """Common names of the embedded certificates (unverified), for ``inspect``."""
    return [common_name(c) for c in bundle.certificates]
