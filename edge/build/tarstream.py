"""A strict tar reader over a region of an uncompressed file: headers only, content by offset.

Python's ``tarfile`` treats a bad header checksum after the first member as
the end of the archive and does not notice a member whose data runs past the
end of the file, so a corrupt layer would silently lose files.  This reader
checks every header, bounds every extension header it keeps in memory
(PAX records, GNU long names), never reads file content (it reports where the
content lies, for :class:`~edge.squashfs.tree.SliceContent`), and refuses
names that climb out of the root.

Formats: v7, ustar (prefix field), GNU (``L``/``K`` long names, base-256
numbers) and POSIX pax (local and global headers, ``SCHILY.xattr.*``,
``LIBARCHIVE.xattr.*``).  Sparse members are refused: the OCI image spec
tells producers not to use them.  An archive may end with zero blocks or
simply at a header boundary (umoci writes layers without the two trailing
zero blocks).
"""

from __future__ import annotations

import base64
import binascii
import os
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

from edge.squashfs.tree import Kind

from .errors import SourceError

BLOCK = 512
MAX_PAX_BYTES = 1 << 20  # one pax extended header; real ones are a few hundred bytes
MAX_LONGNAME_BYTES = 1 << 16  # GNU long name/link; PATH_MAX is 4096
MAX_XATTR_BYTES = 1 << 16  # squashfs and Linux cap one value at 64 KiB
MAX_PATH_BYTES = 4096  # Linux PATH_MAX: deeper paths are of no use in a root filesystem

_TYPES = {
    b"0": Kind.FILE, b"\0": Kind.FILE, b"7": Kind.FILE,
    b"1": Kind.HARDLINK, b"2": Kind.SYMLINK, b"3": Kind.CHAR, b"4": Kind.BLOCK,
    b"5": Kind.DIR, b"6": Kind.FIFO,
}


@dataclass(frozen=True, slots=True)
class Member:
    """One tar member.  ``path`` is relative to the root ("" is the root itself).

    Regular file content is ``size`` bytes at absolute offset ``data_offset``
    of the file the archive was read from.  ``linkname`` is a symlink's text
    as written, or a hard link's target normalised like ``path``.
    """

    path: str
    kind: Kind
    mode: int
    uid: int
    gid: int
    mtime: int
    size: int
    data_offset: int
    linkname: str = ""
    major: int = 0
    minor: int = 0
    xattrs: tuple[tuple[str, bytes], ...] = ()
    raw_name: str = ""


def normalize_member_path(name: str, where: str) -> str:
    """Tar name -> relative image path.  A leading '/' is anchored at the root; '..' is refused."""
    if "\0" in name:
        raise SourceError(f"{where}: name {name[:80]!r} contains a NUL byte")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise SourceError(f"{where}: name {name[:80]!r}... is longer than {MAX_PATH_BYTES} bytes (PATH_MAX)")
    parts = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise SourceError(f"{where}: name {name[:200]!r} climbs out of the root ('..'); refusing the archive")
        if len(part.encode("utf-8", "surrogateescape")) > 255:
            raise SourceError(f"{where}: name {name[:80]!r}... has a component longer than 255 bytes")
        parts.append(part)
    return "/".join(parts)


def iter_members(path: str, start: int = 0, end: int | None = None, *, label: str | None = None) -> Iterator[Member]:
    """Every member of the tar archive occupying bytes ``[start, end)`` of ``path``.

    ``label`` names the archive in errors (e.g. the layer digest).  Raises
    :class:`SourceError` on a bad checksum, a truncated header or member, an
    oversized extension header, a hostile name or an unsupported member type.
    """
    label = label or path
    try:
        fh = open(path, "rb", buffering=0)
    except OSError as exc:
        raise SourceError(f"{label}: cannot open {path}: {exc.strerror}") from None
    with fh:
        if end is None:
            end = os.fstat(fh.fileno()).st_size
        yield from _Reader(fh.fileno(), start, end, label).members()


class _Reader:
    def __init__(self, fd: int, start: int, end: int, label: str) -> None:
        self.fd = fd
        self.start = start
        self.end = end
        self.label = label
        self.global_pax: dict[str, bytes] = {}

    def _err(self, offset: int, message: str) -> SourceError:
        return SourceError(f"{self.label}: {message} (tar header at byte {offset - self.start})")

    def _read(self, offset: int, size: int) -> bytes:
        data = os.pread(self.fd, size, offset)
        if len(data) != size:
            raise self._err(offset, f"truncated: wanted {size} bytes, the file ends after {len(data)}")
        return data

    def members(self) -> Iterator[Member]:
        pos = self.start
        pax: dict[str, bytes] = {}
        long_name: bytes | None = None
        long_link: bytes | None = None
        while True:
            pending = bool(pax) or long_name is not None or long_link is not None
            if pos >= self.end:
                if pending:
                    raise self._err(pos, "truncated: an extension header is not followed by its member")
                return  # clean end at a header boundary (no trailing zero blocks)
            if self.end - pos < BLOCK:
                tail = self._read(pos, self.end - pos)
                if tail.strip(b"\0") or pending:
                    raise self._err(pos, f"truncated: {len(tail)} stray bytes where a 512-byte header should start")
                return
            header = self._read(pos, BLOCK)
            if header == bytes(BLOCK):
                if pending:
                    raise self._err(pos, "an extension header is followed by the end of the archive")
                return  # end-of-archive marker; whatever follows is padding
            self._check_checksum(header, pos)
            typeflag = header[156:157]
            size = self._number(header[124:136], pos, "size")
            data_offset = pos + BLOCK
            if "size" in pax and typeflag not in (b"x", b"g", b"L", b"K"):
                size = self._pax_int(pax["size"], pos, "size")
            padded = (size + BLOCK - 1) // BLOCK * BLOCK
            if typeflag in (b"x", b"g", b"L", b"K"):
                limit = MAX_PAX_BYTES if typeflag in (b"x", b"g") else MAX_LONGNAME_BYTES
                if size > limit:
                    raise self._err(pos, f"a {typeflag.decode()!r} extension header of {size} bytes exceeds the limit of {limit}")
                if data_offset + size > self.end:
                    raise self._err(pos, f"truncated: the extension header claims {size} bytes, {self.end - data_offset} remain")
                data = self._read(data_offset, size)
                pos = data_offset + padded
                if typeflag == b"x":
                    pax = self._parse_pax(data, pos, base=pax)
                elif typeflag == b"g":
                    self.global_pax = self._parse_pax(data, pos, base=self.global_pax)
                elif typeflag == b"L":
                    long_name = data.split(b"\0", 1)[0]
                else:
                    long_link = data.split(b"\0", 1)[0]
                continue
            if typeflag == b"S" or any(key.startswith("GNU.sparse.") for key in pax):
                raise self._err(pos, "sparse members are not supported (the OCI image spec says not to use them)")
            if typeflag == b"V":  # a GNU volume label: not a file
                pos = data_offset
                continue
            kind = _TYPES.get(typeflag)
            if kind is None:
                raise self._err(pos, f"unsupported member type {typeflag!r}")
            has_data = kind is Kind.FILE
            if has_data and data_offset + size > self.end:
                raise self._err(pos, f"truncated: member {self._name(header, pax, long_name)!r} claims {size} bytes, only {max(self.end - data_offset, 0)} remain")
            member = self._member(header, pos, kind, size if has_data else 0, data_offset, pax, long_name, long_link)
            pos = data_offset + (padded if has_data else 0)
            pax, long_name, long_link = {}, None, None
            yield member

    # ------------------------------------------------------------ fields
    def _check_checksum(self, header: bytes, pos: int) -> None:
        stored_field = header[148:156]
        try:
            stored = int(stored_field.replace(b"\0", b" ").strip() or b"-1", 8)
        except ValueError:
            raise self._err(pos, f"not a tar header (checksum field {stored_field!r}); corrupt or not a tar archive") from None
        unsigned = sum(header) - sum(stored_field) + 8 * 32
        if stored == unsigned:
            return
        high = sum(1 for b in header[:148] if b > 127) + sum(1 for b in header[156:] if b > 127)
        if stored != unsigned - 256 * high:  # some old tars summed signed chars
            raise self._err(pos, f"bad header checksum ({stored} stored, {unsigned} computed); the archive is corrupt")

    def _number(self, raw: bytes, pos: int, what: str) -> int:
        if raw and raw[0] & 0x80:  # GNU base-256
            if raw[0] == 0xFF:
                raise self._err(pos, f"negative {what}")
            value = raw[0] & 0x3F
            for byte in raw[1:]:
                value = (value << 8) | byte
            return value
        text = raw.replace(b"\0", b" ").strip()
        if not text:
            return 0
        try:
            return int(text, 8)
        except ValueError:
            raise self._err(pos, f"{what} field {raw!r} is not an octal number; the archive is corrupt") from None

    def _pax_int(self, value: bytes, pos: int, what: str, *, allow_fraction: bool = False) -> int:
        text = value.decode("ascii", "replace").strip()
        if allow_fraction:
            text = text.split(".", 1)[0] or "0"
            negative = text.startswith("-")
            digits = text[1:] if negative else text
            if digits.isdigit():
                return 0 if negative else int(digits)
        elif text.isdigit():
            return int(text)
        raise self._err(pos, f"pax {what}={text[:40]!r} is not a non-negative integer")

    def _parse_pax(self, data: bytes, pos: int, base: dict[str, bytes]) -> dict[str, bytes]:
        """``LEN key=value\\n`` records; an empty value deletes the key."""
        out = dict(base)
        i = 0
        while i < len(data):
            if data[i:].strip(b"\0") == b"":
                break
            space = data.find(b" ", i, i + 20)
            if space < 0 or not data[i:space].isdigit():
                raise self._err(pos, f"malformed pax record at byte {i} of the extension header")
            length = int(data[i:space])
            record = data[i : i + length]
            if length < space - i + 3 or len(record) != length or not record.endswith(b"\n") or b"=" not in record:
                raise self._err(pos, f"malformed pax record at byte {i} of the extension header")
            key_raw, value = record[space - i + 1 : -1].split(b"=", 1)
            key = key_raw.decode("utf-8", "surrogateescape")
            if value:
                out[key] = value
            else:
                out.pop(key, None)
            i += length
        return out

    def _name(self, header: bytes, pax: dict[str, bytes], long_name: bytes | None) -> str:
        if "path" in pax:
            return pax["path"].decode("utf-8", "surrogateescape")
        if long_name is not None:
            return long_name.decode("utf-8", "surrogateescape")
        if "path" in self.global_pax:
            return self.global_pax["path"].decode("utf-8", "surrogateescape")
        name = header[0:100].split(b"\0", 1)[0]
        if header[257:263] == b"ustar\0":  # POSIX ustar: the prefix field extends the name
            prefix = header[345:500].split(b"\0", 1)[0]
            if prefix:
                name = prefix + b"/" + name
        return name.decode("utf-8", "surrogateescape")

    def _member(self, header: bytes, pos: int, kind: Kind, size: int, data_offset: int,
                pax: dict[str, bytes], long_name: bytes | None, long_link: bytes | None) -> Member:
        fields = self.global_pax | pax
        raw_name = self._name(header, pax, long_name)
        where = f"{self.label}: member {raw_name[:200]!r}"
        if kind is Kind.FILE and header[156:157] == b"\0" and raw_name.endswith("/"):
            kind = Kind.DIR  # pre-POSIX archives mark directories by a trailing slash only
            size = 0
        path = normalize_member_path(raw_name, where)
        if "linkpath" in fields:
            link = fields["linkpath"].decode("utf-8", "surrogateescape")
        elif long_link is not None:
            link = long_link.decode("utf-8", "surrogateescape")
        else:
            link = header[157:257].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        if kind is Kind.SYMLINK:
            if not link:
                raise SourceError(f"{where}: symlink with an empty target")
            if "\0" in link:
                raise SourceError(f"{where}: symlink target contains a NUL byte")
        elif kind is Kind.HARDLINK:
            link = normalize_member_path(link, f"{where}: hard link target")
            if not link:
                raise SourceError(f"{where}: hard link to the root directory")
        else:
            link = ""
        mode = self._number(header[100:108], pos, "mode") & 0o7777
        uid = self._pax_int(fields["uid"], pos, "uid") if "uid" in fields else self._number(header[108:116], pos, "uid")
        gid = self._pax_int(fields["gid"], pos, "gid") if "gid" in fields else self._number(header[116:124], pos, "gid")
        if uid > 0xFFFFFFFF or gid > 0xFFFFFFFF:
            raise SourceError(f"{where}: uid/gid {uid}/{gid} does not fit 32 bits")
        if "mtime" in fields:
            mtime = self._pax_int(fields["mtime"], pos, "mtime", allow_fraction=True)
        else:
            raw = header[136:148]
            mtime = 0 if raw[:1] == b"\xff" else self._number(raw, pos, "mtime")
        major = minor = 0
        if kind in (Kind.CHAR, Kind.BLOCK):
            major = self._number(header[329:337], pos, "devmajor")
            minor = self._number(header[337:345], pos, "devminor")
            if "SCHILY.devmajor" in fields:
                major = self._pax_int(fields["SCHILY.devmajor"], pos, "devmajor")
            if "SCHILY.devminor" in fields:
                minor = self._pax_int(fields["SCHILY.devminor"], pos, "devminor")
        xattrs = self._xattrs(fields, where)
        return Member(path, kind, mode, uid, gid, mtime, size, data_offset, link, major, minor, xattrs, raw_name)

    def _xattrs(self, fields: dict[str, bytes], where: str) -> tuple[tuple[str, bytes], ...]:
        out: dict[str, bytes] = {}
        for key, value in fields.items():
            if key.startswith("SCHILY.xattr."):
                name = key[len("SCHILY.xattr."):]
            elif key.startswith("LIBARCHIVE.xattr."):
                name = urllib.parse.unquote(key[len("LIBARCHIVE.xattr."):], errors="surrogateescape")
                try:
                    value = base64.b64decode(value + b"=" * (-len(value) % 4), validate=True)
                except (binascii.Error, ValueError):
                    raise SourceError(f"{where}: xattr {name!r} is not valid base64") from None
            else:
                continue
            if not name or len(value) > MAX_XATTR_BYTES:
                raise SourceError(f"{where}: xattr {name!r} is empty-named or larger than {MAX_XATTR_BYTES} bytes")
            out[name] = value
        return tuple(sorted(out.items()))
