"""U-Boot backend: the counting variables live in the U-Boot environment described by fw_env.config.

Reads and writes exactly like libubootenv's ``fw_printenv``/``fw_setenv`` (and
takes the same lock file), so the tools and this backend can be mixed.  With a
redundant environment every change is one write of the inactive copy carrying
a higher ``flags`` counter: until that write is complete its CRC fails and
U-Boot keeps using the old copy, so a power cut leaves the old or the new
state, never a mix.  A single-copy environment is rewritten in place and a
power cut during that write leaves a copy with a bad CRC, on which U-Boot uses
its built-in default environment (see docs/boot-control.md): use two copies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import counting, ubootenv
from .base import DEFAULT_ATTEMPTS
from .counting_backend import CountingBackend
from .errors import BootControlError
from .fileio import absolute_offset, locked, read_at, read_file, write_at


@dataclass(frozen=True)
class LoadedEnv:
    """The environment as found on its device(s)."""

    locations: list[ubootenv.EnvLocation]
    copies: list[ubootenv.EnvCopy]
    current: int | None  # None: no valid copy
    variables: dict[str, str]  # of the current copy, or the default environment

    @property
    def redundant(self) -> bool:
        return len(self.locations) == 2


def load(config_path: Path, default_env: Path | None = None) -> LoadedEnv:
    """Read every copy fw_env.config names and pick the current one as U-Boot does."""
    text = read_file(config_path, "fw_env.config", 64 * 1024).decode("utf-8", "replace")
    locations = ubootenv.parse_fw_env_config(text, str(config_path))
    redundant = len(locations) == 2
    copies = []
    for i, loc in enumerate(locations):
        raw = read_at(Path(loc.device), loc.offset, loc.size, f"U-Boot environment copy {i}")
        copies.append(ubootenv.parse_copy(raw, redundant, f"{loc.device}@{loc.offset:#x}"))
    current = ubootenv.current_copy(copies)
    if current is not None:
        variables = copies[current].variables or {}
    elif default_env is not None:
        variables = ubootenv.parse_default_env(read_file(default_env, "default U-Boot environment").decode("utf-8", "surrogateescape"))
    else:
        where = ", ".join(f"{loc.device}@{loc.offset:#x}" for loc in locations)
        raise BootControlError(f"{config_path}: no U-Boot environment copy has a valid CRC ({where}) and no default "
                               "environment (default_env) is configured to start from")
    return LoadedEnv(locations, copies, current, variables)


def store(env: LoadedEnv, variables: Mapping[str, str]) -> None:
    """Write ``variables`` the way libubootenv does: the other copy with flags+1, or the single copy in place."""
    if env.redundant:
        current = env.current if env.current is not None else 0
        target = 1 - current
        flags = ((env.copies[current].flags or 0) + 1) & 0xFF
    else:
        target, flags = 0, None
    loc = env.locations[target]
    image = ubootenv.render_copy(variables, loc.size, flags, f"{loc.device}@{loc.offset:#x}")
    device = Path(loc.device)
    write_at(device, absolute_offset(device, loc.offset), image)


class UBootBackend(CountingBackend):
    name = "uboot"

    def __init__(self, *, fw_env_config: Path, cmdline: Path, attempts: int = DEFAULT_ATTEMPTS,
                 default_env: Path | None = None, lockfile: Path | None = None) -> None:
        super().__init__(cmdline=cmdline, attempts=attempts)
        self.fw_env_config = fw_env_config
        self.default_env = default_env
        self.lockfile = lockfile

    def read_env(self) -> dict[str, str]:
        with locked(self.lockfile):
            return dict(load(self.fw_env_config, self.default_env).variables)

    def write_updates(self, updates: Mapping[str, str | None]) -> None:
        with locked(self.lockfile):
            env = load(self.fw_env_config, self.default_env)
            store(env, counting.apply_updates(env.variables, updates))

    def _describe_extra(self) -> dict[str, Any]:
        env = load(self.fw_env_config, self.default_env)
        return {**super()._describe_extra(), "fw_env_config": str(self.fw_env_config),
                "redundant": env.redundant, "current_copy": env.current}
