"""The signed manifest: a typed :class:`Manifest`, its canonical JSON encoding, and strict decoding (pure).

Canonical JSON here means: UTF-8, object keys sorted, no insignificant
whitespace (``json.dumps(..., sort_keys=True, separators=(",", ":"),
ensure_ascii=False)``), integers only (no floats, NaN or Infinity), no
duplicate keys.  A decoder re-encodes what it parsed and refuses the manifest
unless the bytes are identical, so one manifest has exactly one byte
representation and what was signed is exactly what is interpreted.

Unknown keys are refused: a field a device does not understand could be one
it must obey, so adding fields means a new format version.
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import ManifestError
from .format import FORMAT_VERSION, MAX_PAYLOAD_SIZE

DEFAULT_CHUNK_SIZE = 1024 * 1024
MIN_CHUNK_SIZE = 4096
MAX_CHUNK_SIZE = 16 * 1024 * 1024


def is_valid_chunk_size(size: int) -> bool:
    """A power of two from MIN_CHUNK_SIZE to MAX_CHUNK_SIZE."""
    return MIN_CHUNK_SIZE <= size <= MAX_CHUNK_SIZE and not size & (size - 1)
PAYLOAD_TYPES = ("full", "delta")
MAX_SECURITY_VERSION = 0xFFFFFFFF
MAX_CREATED = 253402300799  # 9999-12-31T23:59:59Z
MAX_COMPATIBLE = 64
MAX_MAP_ENTRIES = 256
MAX_STRING = 4096
MAX_JSON_DEPTH = 16

_BOARD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+,-]{0,127}")
_MAP_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_COMPRESSOR = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")

# SemVer 2.0.0 (semver.org): MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]
_NUM = r"(?:0|[1-9][0-9]*)"
_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_BUILD_ID = r"[0-9A-Za-z-]+"
_SEMVER = re.compile(rf"({_NUM})\.({_NUM})\.({_NUM})(?:-({_PRE_ID}(?:\.{_PRE_ID})*))?(?:\+({_BUILD_ID}(?:\.{_BUILD_ID})*))?")

_KEYS = {"build", "compatible", "compressor", "created", "delta", "format_version", "meta", "payload",
         "security_version", "source", "target", "version"}
_PAYLOAD_KEYS = {"chunk_size", "chunks", "size", "type"}
_IMAGE_KEYS = {"sha256", "size"}


@dataclass(frozen=True, order=False)
class SemVer:
    """A parsed semantic version; compare with :meth:`precedence`."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: tuple[str, ...] = ()

    def precedence(self) -> tuple[Any, ...]:
        """A sort key implementing SemVer precedence (build metadata ignored)."""
        if not self.prerelease:
            return (self.major, self.minor, self.patch, 1, ())
        ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0, ids)


def parse_semver(text: str) -> SemVer:
    """Parse ``MAJOR.MINOR.PATCH[-PRE][+BUILD]``; :class:`ManifestError` if it is not SemVer 2.0.0."""
    m = _SEMVER.fullmatch(text) if isinstance(text, str) and len(text) <= 128 else None
    if m is None:
        raise ManifestError(f"version {text!r} is not a semantic version (MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD])")
    pre = tuple(m.group(4).split(".")) if m.group(4) else ()
    build = tuple(m.group(5).split(".")) if m.group(5) else ()
    return SemVer(int(m.group(1)), int(m.group(2)), int(m.group(3)), pre, build)


@dataclass(frozen=True)
class ImageRef:
    """An image by content: its SHA-256 (lowercase hex) and size in bytes."""

    sha256: str
    size: int


def delta_image_mismatch(header: Any, source: ImageRef, target: ImageRef) -> tuple[str, ImageRef, ImageRef] | None:
    """The first image ("source", then "target") that a delta's header (``edge.delta.format.Header``)
    names differently from the bundle: (which, the header's, the bundle's); None when both agree.
    The signature covers the manifest and each payload chunk, not that the two agree."""
    for what, found, wanted in (("source", ImageRef(header.source_sha256, header.source_size), source),
                                ("target", ImageRef(header.target_sha256, header.target_size), target)):
        if found != wanted:
            return what, found, wanted
    return None


@dataclass(frozen=True)
class Manifest:
    """Everything the signature covers.  Mappings are plain dicts: treat them as read-only."""

    compatible: tuple[str, ...]
    version: str
    security_version: int
    payload_type: str
    payload_size: int
    chunk_size: int
    chunk_hashes: tuple[bytes, ...]  # SHA-256 digests (32 bytes each) of every payload chunk, in order
    compressor: str  # the target image's squashfs compressor
    target: ImageRef
    source: ImageRef | None  # the image a delta applies to; None for full bundles
    created: int  # signing time, UTC seconds since the epoch; certificates are judged at this time
    build: dict[str, str] = field(default_factory=dict)  # recipe, edge_version...
    meta: dict[str, str] = field(default_factory=dict)  # free-form, for hooks and fleet tooling
    delta: dict[str, Any] | None = None  # delta-engine parameters (delta bundles only)
    format_version: int = FORMAT_VERSION

    @property
    def chunk_count(self) -> int:
        return len(self.chunk_hashes)

    def chunk_length(self, index: int) -> int:
        """Length of chunk ``index`` (all are ``chunk_size`` but the last)."""
        if not 0 <= index < self.chunk_count:
            raise IndexError(f"chunk {index} out of range (0..{self.chunk_count - 1})")
        return min(self.chunk_size, self.payload_size - index * self.chunk_size)

    @property
    def signing_time(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.created, datetime.timezone.utc)

    @property
    def semver(self) -> SemVer:
        return parse_semver(self.version)

    # ------------------------------------------------------------ encoding
    def to_json(self) -> dict[str, Any]:
        return {
            "build": dict(self.build),
            "compatible": list(self.compatible),
            "compressor": self.compressor,
            "created": self.created,
            "delta": self.delta,
            "format_version": self.format_version,
            "meta": dict(self.meta),
            "payload": {
                "chunk_size": self.chunk_size,
                "chunks": [h.hex() for h in self.chunk_hashes],
                "size": self.payload_size,
                "type": self.payload_type,
            },
            "security_version": self.security_version,
            "source": None if self.source is None else {"sha256": self.source.sha256, "size": self.source.size},
            "target": {"sha256": self.target.sha256, "size": self.target.size},
            "version": self.version,
        }

    def encode(self) -> bytes:
        """The canonical bytes (after validating every field)."""
        self.validate()
        return canonical_json(self.to_json())

    def validate(self) -> None:
        """Check every field's type and range; :class:`ManifestError` names the first bad one."""
        if type(self.format_version) is not int or self.format_version != FORMAT_VERSION:
            raise ManifestError(f"format_version {self.format_version!r} is not {FORMAT_VERSION}")
        if not isinstance(self.compatible, tuple) or not 1 <= len(self.compatible) <= MAX_COMPATIBLE:
            raise ManifestError(f"compatible must list 1 to {MAX_COMPATIBLE} board strings")
        for board in self.compatible:
            if not isinstance(board, str) or not _BOARD.fullmatch(board):
                raise ManifestError(f"compatible entry {board!r} is not a board string (letters, digits, . _ + , -)")
        if len(set(self.compatible)) != len(self.compatible):
            raise ManifestError("compatible lists a board twice")
        parse_semver(self.version)
        _check_int("security_version", self.security_version, 0, MAX_SECURITY_VERSION)
        if self.payload_type not in PAYLOAD_TYPES:
            raise ManifestError(f"payload.type {self.payload_type!r} is not one of {', '.join(PAYLOAD_TYPES)}")
        _check_int("payload.size", self.payload_size, 1, MAX_PAYLOAD_SIZE)
        _check_int("payload.chunk_size", self.chunk_size, MIN_CHUNK_SIZE, MAX_CHUNK_SIZE)
        if self.chunk_size & (self.chunk_size - 1):
            raise ManifestError(f"payload.chunk_size {self.chunk_size} is not a power of two")
        expected = -(-self.payload_size // self.chunk_size)
        if len(self.chunk_hashes) != expected:
            raise ManifestError(f"payload.chunks has {len(self.chunk_hashes)} hashes, a {self.payload_size}-byte payload "
                                f"in {self.chunk_size}-byte chunks needs {expected}")
        for n, digest in enumerate(self.chunk_hashes):
            if not isinstance(digest, bytes) or len(digest) != 32:
                raise ManifestError(f"payload.chunks[{n}] is not a SHA-256 digest")
        if not isinstance(self.compressor, str) or not _COMPRESSOR.fullmatch(self.compressor):
            raise ManifestError(f"compressor {self.compressor!r} is not a compressor name")
        _check_image("target", self.target)
        _check_int("created", self.created, 0, MAX_CREATED)
        _check_map("build", self.build)
        _check_map("meta", self.meta)
        if self.payload_type == "full":
            if self.source is not None:
                raise ManifestError("a full bundle has no source image (source must be null)")
            if self.delta is not None:
                raise ManifestError("a full bundle has no delta parameters (delta must be null)")
            if self.target.size != self.payload_size:
                raise ManifestError(f"a full bundle's target.size {self.target.size} differs from payload.size {self.payload_size}")
        else:
            if self.source is None:
                raise ManifestError("a delta bundle needs the source image's sha256 and size")
            _check_image("source", self.source)
            if not isinstance(self.delta, dict):
                raise ManifestError("a delta bundle needs a delta object (may be empty)")
            _check_json_value("delta", self.delta, 0)


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def decode_manifest(data: bytes, name: str = "manifest") -> Manifest:
    """Parse, type-check and canonical-check manifest bytes; every failure is a :class:`ManifestError` naming ``name``."""
    try:
        return _decode(data)
    except ManifestError as exc:
        raise ManifestError(f"{name}: manifest: {exc.message}") from None


def _decode(data: bytes) -> Manifest:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"not UTF-8 (byte {exc.start})") from None
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_float=_no_float, parse_constant=_no_float)
    except ManifestError:
        raise
    except RecursionError:
        raise ManifestError("nested too deeply") from None
    except ValueError as exc:
        raise ManifestError(f"malformed JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ManifestError("not a JSON object")
    _exact_keys("", obj, _KEYS)
    payload = obj["payload"]
    if not isinstance(payload, dict):
        raise ManifestError("payload is not an object")
    _exact_keys("payload.", payload, _PAYLOAD_KEYS)
    chunks = payload["chunks"]
    if not isinstance(chunks, list):
        raise ManifestError("payload.chunks is not a list")
    hashes: list[bytes] = []
    for n, item in enumerate(chunks):
        if not isinstance(item, str) or not _SHA256_HEX.fullmatch(item):
            raise ManifestError(f"payload.chunks[{n}] is not 64 lowercase hex digits")
        hashes.append(bytes.fromhex(item))
    compatible = obj["compatible"]
    if not isinstance(compatible, list):
        raise ManifestError("compatible is not a list")
    for key in ("build", "meta"):
        if not isinstance(obj[key], dict):
            raise ManifestError(f"{key} is not an object")
    manifest = Manifest(
        compatible=tuple(compatible),
        version=_typed("version", obj["version"], str),
        security_version=obj["security_version"],
        payload_type=_typed("payload.type", payload["type"], str),
        payload_size=payload["size"],
        chunk_size=payload["chunk_size"],
        chunk_hashes=tuple(hashes),
        compressor=_typed("compressor", obj["compressor"], str),
        target=_image("target", obj["target"]),
        source=None if obj["source"] is None else _image("source", obj["source"]),
        created=obj["created"],
        build=obj["build"],
        meta=obj["meta"],
        delta=obj["delta"],
        format_version=obj["format_version"],
    )
    manifest.validate()
    if canonical_json(manifest.to_json()) != data:
        raise ManifestError("not in canonical form (sorted keys, no whitespace, UTF-8, as Edge writes it)")
    return manifest


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ManifestError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_float(text: str) -> Any:
    raise ManifestError(f"non-integer number {text!r} (manifests hold integers only)")


def _exact_keys(prefix: str, obj: dict[str, Any], keys: set[str]) -> None:
    missing = sorted(keys - obj.keys())
    if missing:
        raise ManifestError(f"missing field {prefix}{missing[0]}")
    unknown = sorted(obj.keys() - keys)
    if unknown:
        raise ManifestError(f"unknown field {prefix}{unknown[0]}")


def _typed(where: str, value: Any, kind: type) -> Any:
    if not isinstance(value, kind):
        raise ManifestError(f"{where} is not a {kind.__name__}")
    return value


def _image(where: str, value: Any) -> ImageRef:
    if not isinstance(value, dict):
        raise ManifestError(f"{where} is not an object")
    _exact_keys(f"{where}.", value, _IMAGE_KEYS)
    return ImageRef(sha256=value["sha256"], size=value["size"])


def _check_int(where: str, value: Any, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise ManifestError(f"{where} {value!r} is not an integer from {low} to {high}")


def _check_image(where: str, ref: Any) -> None:
    if not isinstance(ref, ImageRef):
        raise ManifestError(f"{where} is not an image reference")
    if not isinstance(ref.sha256, str) or not _SHA256_HEX.fullmatch(ref.sha256):
        raise ManifestError(f"{where}.sha256 is not 64 lowercase hex digits")
    _check_int(f"{where}.size", ref.size, 1, MAX_PAYLOAD_SIZE)


def _check_map(where: str, value: Any) -> None:
    if not isinstance(value, dict) or len(value) > MAX_MAP_ENTRIES:
        raise ManifestError(f"{where} must be an object of at most {MAX_MAP_ENTRIES} string entries")
    for key, item in value.items():
        if not isinstance(key, str) or not _MAP_KEY.fullmatch(key):
            raise ManifestError(f"{where} key {key!r} must be letters, digits, '.', '_' or '-' (at most 64)")
        if not isinstance(item, str) or len(item) > MAX_STRING:
            raise ManifestError(f"{where}.{key} must be a string of at most {MAX_STRING} characters")


def _check_json_value(where: str, value: Any, depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        raise ManifestError(f"{where} is nested more than {MAX_JSON_DEPTH} levels")
    if value is None or isinstance(value, (bool, str)):
        return
    if type(value) is int:
        return
    if isinstance(value, list):
        for n, item in enumerate(value):
            _check_json_value(f"{where}[{n}]", item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ManifestError(f"{where} has a non-string key {key!r}")
            _check_json_value(f"{where}.{key}", item, depth + 1)
        return
    raise ManifestError(f"{where} holds a {type(value).__name__}; only JSON objects, lists, strings, integers, booleans and null")
