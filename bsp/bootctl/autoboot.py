"""Raspberry Pi ``autoboot.txt`` (pure: text in, text out).

From the Raspberry Pi documentation (``config_txt/autoboot.adoc``,
``config_txt/conditional.adoc``) and the config.txt rules:

* At most 512 bytes, read from the first FAT partition before ``config.txt``.
* ``name=value`` lines, no spaces around ``=``, ``#`` comments at the start
  of a line; later lines override earlier ones.
* Conditional filters: ``[all]`` (always), ``[tryboot]`` (only when the
  one-shot tryboot flag was set by ``reboot "0 tryboot"``), ``[none]``
  (never).  Lines before the first filter apply always.
* ``boot_partition=N`` picks the partition the firmware boots;
  ``tryboot_a_b=1`` makes tryboot switch partitions (loading the normal
  ``config.txt`` from the tryboot partition) instead of loading ``tryboot.txt``.

Edge's convention (see docs/boot-control.md): ``[all]`` holds the committed
partition, ``[tryboot]`` the partition of an armed trial, and the two are equal
when no trial is armed.  The Raspberry Pi example swaps them on commit; keeping
them equal makes "a trial is armed" readable from the file alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from .errors import BootControlError

MAX_SIZE: Final = 512
_FILTER = re.compile(r"^\[([^\]]*)\]\s*$")
_SETTING = re.compile(r"^([A-Za-z0-9_]+)=(.*)$")


class AutobootError(BootControlError):
    """autoboot.txt is malformed, too large, or cannot express the change."""


@dataclass(frozen=True)
class _Line:
    text: str
    section: str  # the filter in force: "all", "tryboot", "none" or another filter name
    key: str | None
    value: str | None


def _lines(text: str) -> list[str]:
    """Lines split at newlines only (the firmware knows no other line breaks), without a trailing CR."""
    parts = text.split("\n")
    if parts and parts[-1] == "":
        parts.pop()
    return [p[:-1] if p.endswith("\r") else p for p in parts]


def _scan(text: str, source: str) -> list[_Line]:
    if len(text.encode("utf-8")) > MAX_SIZE:
        raise AutobootError(f"{source}: {len(text.encode('utf-8'))} bytes: autoboot.txt is limited to {MAX_SIZE} bytes")
    lines: list[_Line] = []
    section = "all"
    for lineno, raw in enumerate(_lines(text), 1):
        stripped = raw.strip()
        m = _FILTER.match(stripped)
        if m:
            section = m.group(1).strip().lower()
            lines.append(_Line(raw, section, None, None))
            continue
        if not stripped or stripped.startswith("#"):
            lines.append(_Line(raw, section, None, None))
            continue
        s = _SETTING.match(stripped)
        if not s:
            raise AutobootError(f"{source}:{lineno}: {raw!r} is not 'name=value', a [filter] or a comment")
        lines.append(_Line(raw, section, s.group(1), s.group(2)))
    return lines


def _applies(section: str, tryboot: bool) -> bool:
    if section == "all":
        return True
    if section == "tryboot":
        return tryboot
    return False  # [none] and filters for other models/conditions: never assumed


class Autoboot:
    """An autoboot.txt: evaluate it as the firmware does, change ``boot_partition`` keeping every other line."""

    def __init__(self, text: str, source: str = "autoboot.txt") -> None:
        self.source = source
        self._lines = _scan(text, source)

    def text(self) -> str:
        out = "".join(line.text + "\n" for line in self._lines)
        if len(out.encode("utf-8")) > MAX_SIZE:
            raise AutobootError(f"{self.source}: the result would be {len(out.encode('utf-8'))} bytes, "
                                f"autoboot.txt is limited to {MAX_SIZE}")
        return out

    def effective(self, tryboot: bool) -> dict[str, str]:
        """The settings the firmware uses in normal (``tryboot=False``) or tryboot mode."""
        out: dict[str, str] = {}
        for line in self._lines:
            if line.key is not None and _applies(line.section, tryboot):
                out[line.key] = line.value or ""
        return out

    def boot_partition(self, tryboot: bool) -> int:
        value = self.effective(tryboot).get("boot_partition")
        if value is None:
            raise AutobootError(f"{self.source}: no boot_partition for {'tryboot' if tryboot else 'normal'} boots")
        if not value.isdigit():
            raise AutobootError(f"{self.source}: boot_partition={value!r} is not a partition number")
        return int(value)

    def tryboot_a_b(self) -> bool:
        return self.effective(False).get("tryboot_a_b") == "1"

    def _set_in(self, section: str, key: str, value: str) -> None:
        last = None
        for i, line in enumerate(self._lines):
            if line.section == section and line.key == key:
                last = i
        if last is not None:
            old = self._lines[last]
            self._lines[last] = _Line(f"{key}={value}", old.section, key, value)
            return
        # No such line in that section: add it at the end of the last block of that section,
        # or open a new block at the end of the file.
        insert_at = None
        for i, line in enumerate(self._lines):
            if line.section == section:
                insert_at = i + 1
        new = _Line(f"{key}={value}", section, key, value)
        if insert_at is None and section == "all":
            self._lines.insert(0, new)  # lines before the first filter always apply
        elif insert_at is None:
            self._lines.append(_Line(f"[{section}]", section, None, None))
            self._lines.append(new)
        else:
            self._lines.insert(insert_at, new)

    def set_partitions(self, normal: int, tryboot: int) -> None:
        """Make normal boots use ``normal`` and tryboot boots use ``tryboot``; verified by re-evaluating."""
        self._set_in("all", "boot_partition", str(normal))
        self._set_in("tryboot", "boot_partition", str(tryboot))
        if self.boot_partition(False) != normal or self.boot_partition(True) != tryboot:
            raise AutobootError(f"{self.source}: cannot set boot_partition: other lines override it "
                                "(expected one boot_partition under [all] and one under [tryboot])")


def render(normal: int, tryboot: int) -> str:
    """A fresh autoboot.txt in Edge's layout."""
    return f"[all]\ntryboot_a_b=1\nboot_partition={normal}\n[tryboot]\nboot_partition={tryboot}\n"
