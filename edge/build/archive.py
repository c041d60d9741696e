"""Named files inside a directory or a tar archive: how OCI layouts and docker-save archives are read.

An OCI image layout may be a directory or a tarball of one; a ``docker save``
archive is a tarball.  Either way the build needs "the bytes of
``blobs/sha256/abc``" as a location (file, offset, length), never an
extracted copy: inside an uncompressed tar that location is the member's
data; a compressed outer archive is decompressed once into the blob cache
first.  Symlinks and hard links between members (skopeo's docker archives
have ``<id>/layer.tar -> ../<diff_id>.tar``) are followed inside the archive
only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from edge.squashfs.tree import Kind

from .blobs import BlobCache, Region, detect_compression
from .errors import SourceError
from .tarstream import Member, iter_members, normalize_member_path

MAX_JSON_BYTES = 4 << 20  # manifests, indexes and configs are a few KiB


@dataclass(frozen=True)
class Location:
    path: str
    start: int
    length: int


class Archive:
    """Files by relative name, in a directory or an (optionally compressed) tar archive."""

    def __init__(self, path: str, cache: BlobCache, label: str) -> None:
        self.path = path
        self.label = label
        self.is_dir = os.path.isdir(path)
        self._members: dict[str, Member] = {}
        self._tar_path = ""
        if not self.is_dir:
            size = os.path.getsize(path)
            try:
                with open(path, "rb") as fh:
                    head = fh.read(8)
            except OSError as exc:
                raise SourceError(f"{label}: cannot read: {exc.strerror}") from None
            if detect_compression(head) is None:
                region = Region(path, 0, size)  # read in place; its members are checked where they are used
            else:
                region = cache.uncompressed(path, 0, size, label=label, key=f"archive:{os.path.abspath(path)}").region
            self._tar_path = region.path
            for member in iter_members(region.path, region.start, region.end, label=label):
                if member.path:
                    self._members[member.path] = member  # a later member of the same name wins, as in tar
            if not self._members:
                raise SourceError(f"{label}: the archive is empty")

    def locate(self, name: str) -> Location | None:
        """Where the regular file ``name`` lies, or None if the archive has no such file."""
        rel = normalize_member_path(name, f"{self.label}: {name!r}")
        if self.is_dir:
            full = os.path.join(self.path, rel)
            if not os.path.isfile(full):
                return None
            return Location(full, 0, os.path.getsize(full))
        member = self._members.get(rel)
        hops = 0
        while member is not None and member.kind in (Kind.SYMLINK, Kind.HARDLINK):
            hops += 1
            if hops > 16:
                raise SourceError(f"{self.label}: {name}: too many levels of links inside the archive")
            target = member.linkname
            if member.kind is Kind.SYMLINK:
                base = member.path.rsplit("/", 1)[0] if "/" in member.path else ""
                collapsed = _collapse(member.linkname if member.linkname.startswith("/") else f"{base}/{member.linkname}")
                if collapsed is None:
                    raise SourceError(f"{self.label}: {member.path} links outside the archive ({member.linkname})")
                target = collapsed
            member = self._members.get(target)
        if member is None or member.kind is not Kind.FILE:
            return None
        return Location(self._tar_path, member.data_offset, member.size)

    def read_json(self, name: str, *, what: str) -> Any:
        """A small JSON document (index.json, manifest.json) by name."""
        location = self.locate(name)
        if location is None:
            raise SourceError(f"{self.label}: no {name} ({what}) in the {'directory' if self.is_dir else 'archive'}")
        return parse_json(read_location(location, f"{self.label}: {name}"), f"{self.label}: {name}")


def _collapse(path: str) -> str | None:
    """Normalise a path with '..' inside the archive; None if it climbs above the archive root."""
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


def read_location(location: Location, label: str, limit: int = MAX_JSON_BYTES) -> bytes:
    if location.length > limit:
        raise SourceError(f"{label}: {location.length} bytes is too large for a JSON document (limit {limit})")
    try:
        with open(location.path, "rb") as fh:
            fh.seek(location.start)
            data = fh.read(location.length)
    except OSError as exc:
        raise SourceError(f"{label}: cannot read: {exc.strerror}") from None
    if len(data) != location.length:
        raise SourceError(f"{label}: truncated ({len(data)} of {location.length} bytes)")
    return data


def parse_json(data: bytes, label: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SourceError(f"{label}: not valid JSON ({exc})") from None
