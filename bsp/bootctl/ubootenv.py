"""The U-Boot environment: ``fw_env.config`` and the binary env copies (pure: text/bytes in and out).

Facts from U-Boot (``include/env.h``, ``env/common.c``) and libubootenv 0.3.2
(``src/uboot_env.c``), the library behind Debian's ``fw_printenv``/``fw_setenv``:

* A copy is ``{uint32 crc; char data[]}`` (single) or ``{uint32 crc; uint8 flags;
  char data[]}`` (redundant).  The CRC is zlib's CRC-32 of the whole data area,
  stored little-endian (the byte order of every board we support).
* ``data`` is ``name=value\\0`` entries ended by one more ``\\0``; the rest of the
  area is padding covered by the CRC.  U-Boot pads with zeros; libubootenv 0.3.2
  leaves whatever its ``malloc`` returned (observed), so padding carries no
  meaning.  libubootenv keeps variables sorted by ``strcmp`` and writes them in
  that order; an entry without ``=`` is skipped when reading.
* Redundant copies: a copy whose CRC fails is ignored.  When both are valid,
  the one with the larger ``flags`` byte is current, except that 0 beats 255
  (the counter wrapped).  A save writes the other copy with ``flags`` one above
  the current copy's.  That is U-Boot's rule for block devices and files
  (``FLAGS_INCREMENTAL``); the boolean active/obsolete scheme belongs to raw NOR
  MTD devices, which Edge does not support.
* ``fw_env.config``: ``device offset size [sector-size [sectors]]`` per line,
  lines starting with ``#`` are comments, lines with fewer than three fields
  are ignored, the offset is a C integer (``0x``, leading ``0`` = octal,
  negative = from the end of the device), the sizes are hexadecimal with or
  without ``0x``, a size of 0 is an error, a second line makes the environment
  redundant (both copies must have the same size), further lines are ignored.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from .errors import BootControlError

SINGLE_HEADER: Final = 4
REDUNDANT_HEADER: Final = 5
MAX_ENV_SIZE: Final = 16 << 20  # bounds memory on a hostile config


class UBootEnvError(BootControlError):
    """A U-Boot environment or fw_env.config is malformed, or a change does not fit."""


@dataclass(frozen=True)
class EnvLocation:
    """One line of fw_env.config: where one copy of the environment lives."""

    device: str
    offset: int  # may be negative: counted from the end of the device
    size: int
    sector_size: int | None = None
    sectors: int | None = None


_C_INT = re.compile(r"^[+-]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$")
_HEX = re.compile(r"^(0[xX])?[0-9a-fA-F]+$")


def _c_integer(token: str) -> int | None:
    if not _C_INT.match(token):
        return None
    sign = -1 if token.startswith("-") else 1
    body = token.lstrip("+-")
    if body[:2] in ("0x", "0X"):
        return sign * int(body[2:], 16)
    if body.startswith("0") and len(body) > 1:
        return sign * int(body[1:], 8)
    return sign * int(body, 10)


def _hex(token: str) -> int | None:
    if not _HEX.match(token):
        return None
    return int(token[2:] if token[:2] in ("0x", "0X") else token, 16)


def parse_fw_env_config(text: str, source: str = "fw_env.config") -> list[EnvLocation]:
    """The one or two env copies a fw_env.config describes."""
    locations: list[EnvLocation] = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) < 3:
            continue
        where = f"{source}:{lineno}"
        if len(fields) > 5:
            raise UBootEnvError(f"{where}: too many fields (device offset size [sector-size [sectors]])")
        offset = _c_integer(fields[1])
        if offset is None:
            raise UBootEnvError(f"{where}: offset {fields[1]!r} is not an integer")
        numbers: list[int] = []
        for label, token in zip(("size", "sector size", "sector count"), fields[2:]):
            value = _hex(token)
            if value is None:
                raise UBootEnvError(f"{where}: {label} {token!r} is not a hexadecimal number")
            numbers.append(value)
        size = numbers[0]
        if size == 0:
            raise UBootEnvError(f"{where}: environment size is 0")
        if size <= REDUNDANT_HEADER + 1 or size > MAX_ENV_SIZE:
            raise UBootEnvError(f"{where}: environment size {size:#x} is not plausible (at most {MAX_ENV_SIZE:#x})")
        if fields[0].startswith(("/dev/mtd", "/dev/ubi")):
            raise UBootEnvError(f"{where}: {fields[0]}: MTD/UBI environments are not supported (block devices and files only)")
        locations.append(EnvLocation(fields[0], offset, size,
                                     numbers[1] if len(numbers) > 1 else None,
                                     numbers[2] if len(numbers) > 2 else None))
        if len(locations) == 2:
            break
    if not locations:
        raise UBootEnvError(f"{source}: no environment location (expected 'device offset size')")
    if len(locations) == 2 and locations[0].size != locations[1].size:
        raise UBootEnvError(f"{source}: the two environment copies have different sizes "
                            f"({locations[0].size:#x} and {locations[1].size:#x})")
    return locations


@dataclass(frozen=True)
class EnvCopy:
    """One copy as read from its device."""

    crc_ok: bool
    flags: int | None  # None for a single copy
    variables: dict[str, str] | None  # None when the CRC fails
    stored_crc: int
    computed_crc: int


def _decode_data(data: bytes, source: str) -> dict[str, str]:
    variables: dict[str, str] = {}
    pos = 0
    while True:
        if pos >= len(data):
            raise UBootEnvError(f"{source}: environment data is not terminated (no empty entry before offset {pos})")
        nul = data.find(b"\0", pos)
        if nul < 0:
            raise UBootEnvError(f"{source}: environment entry at data offset {pos} runs past the end of the area")
        if nul == pos:
            return variables
        entry = data[pos:nul]
        eq = entry.find(b"=")
        if eq > 0:  # like libubootenv: an entry without '=' is skipped
            variables[entry[:eq].decode("utf-8", "surrogateescape")] = entry[eq + 1:].decode("utf-8", "surrogateescape")
        pos = nul + 1


def parse_copy(raw: bytes, redundant: bool, source: str = "<env>") -> EnvCopy:
    """Read one copy of ``len(raw)`` bytes; a CRC mismatch is reported, not raised."""
    header = REDUNDANT_HEADER if redundant else SINGLE_HEADER
    if len(raw) <= header:
        raise UBootEnvError(f"{source}: {len(raw)} bytes is too small for a U-Boot environment")
    (stored,) = struct.unpack_from("<I", raw, 0)
    data = raw[header:]
    computed = zlib.crc32(data)
    flags = raw[4] if redundant else None
    if stored != computed:
        return EnvCopy(False, flags, None, stored, computed)
    return EnvCopy(True, flags, _decode_data(data, source), stored, computed)


def encode_data(variables: Mapping[str, str], area: int, source: str = "<env>") -> bytes:
    """The data area: entries sorted like libubootenv, the terminating NUL, zero padding."""
    out = bytearray()
    for name in sorted(variables, key=lambda n: n.encode("utf-8", "surrogateescape")):
        key = name.encode("utf-8", "surrogateescape")
        value = variables[name].encode("utf-8", "surrogateescape")
        if not key or b"=" in key or b"\0" in key:
            raise UBootEnvError(f"{source}: invalid U-Boot variable name {name!r}")
        if b"\0" in value:
            raise UBootEnvError(f"{source}: value of {name!r} contains NUL")
        out += key + b"=" + value + b"\0"
    out += b"\0"
    if len(out) > area:
        raise UBootEnvError(f"{source}: environment needs {len(out)} bytes, the area holds {area}")
    return bytes(out) + bytes(area - len(out))


def render_copy(variables: Mapping[str, str], size: int, flags: int | None, source: str = "<env>") -> bytes:
    """One complete copy of ``size`` bytes (``flags`` None: single-copy layout)."""
    header = SINGLE_HEADER if flags is None else REDUNDANT_HEADER
    data = encode_data(variables, size - header, source)
    crc = struct.pack("<I", zlib.crc32(data))
    return crc + (b"" if flags is None else bytes([flags & 0xFF])) + data


def current_copy(copies: list[EnvCopy]) -> int | None:
    """Index of the copy U-Boot and libubootenv use, or None when no copy is valid."""
    if len(copies) == 1:
        return 0 if copies[0].crc_ok else None
    a, b = copies
    if a.crc_ok and not b.crc_ok:
        return 0
    if b.crc_ok and not a.crc_ok:
        return 1
    if not a.crc_ok and not b.crc_ok:
        return None
    fa, fb = a.flags or 0, b.flags or 0
    if fa == 0xFF and fb == 0:
        return 1
    if fb == 0xFF and fa == 0:
        return 0
    return 1 if fb > fa else 0


def parse_default_env(text: str) -> dict[str, str]:
    """A default-environment file (``/etc/u-boot-initial-env``, ``fw_setenv -f``): ``name=value`` lines, ``#`` comments."""
    out: dict[str, str] = {}
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, value = line.split("=", 1)
        if value:
            out[name] = value
        else:
            out.pop(name, None)
    return out
