"""The ``file`` backend: the counting variables in a small text file, replaced atomically.

For the virtual board (``edge sim``), demos, and boards whose bootloader can
read a text file.  Format: a comment header, then ``NAME=value`` lines; values
cannot contain newlines.  Every change writes a new file and renames it over
the old one, so a power cut leaves the old or the new file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from . import counting
from .base import DEFAULT_ATTEMPTS
from .counting_backend import CountingBackend
from .errors import BootControlError
from .fileio import read_file, replace_atomically

HEADER: Final = "# Edge boot-control environment (file backend): NAME=value lines\n"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
MAX_SIZE: Final = 64 * 1024


def parse(text: str, source: str = "<env>") -> dict[str, str]:
    out: dict[str, str] = {}
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not _NAME.match(name):
            raise BootControlError(f"{source}:{lineno}: {line!r} is not NAME=value")
        out[name] = value
    return out


def render(variables: Mapping[str, str], source: str = "<env>") -> str:
    lines = [HEADER]
    for name in sorted(variables):
        value = variables[name]
        if not _NAME.match(name):
            raise BootControlError(f"{source}: invalid variable name {name!r}")
        if "\n" in value or "\r" in value:
            raise BootControlError(f"{source}: value of {name} contains a line break")
        lines.append(f"{name}={value}\n")
    return "".join(lines)


def read_env_file(path: Path) -> dict[str, str]:
    raw = read_file(path, "boot-control environment file", MAX_SIZE)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BootControlError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse(text, str(path))


def write_env_file(path: Path, variables: Mapping[str, str]) -> None:
    replace_atomically(path, render(variables, str(path)).encode("utf-8"))


class FileBackend(CountingBackend):
    name = "file"

    def __init__(self, *, env_path: Path, cmdline: Path, attempts: int = DEFAULT_ATTEMPTS) -> None:
        super().__init__(cmdline=cmdline, attempts=attempts)
        self.env_path = env_path

    def read_env(self) -> dict[str, str]:
        return read_env_file(self.env_path)

    def write_updates(self, updates: Mapping[str, str | None]) -> None:
        write_env_file(self.env_path, counting.apply_updates(self.read_env(), updates))

    def _describe_extra(self) -> dict[str, Any]:
        return {**super()._describe_extra(), "env": str(self.env_path)}
