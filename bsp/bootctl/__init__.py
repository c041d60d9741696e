"""Boot control: which A/B slot runs, which boots next, trial boots, confirm and reject.

One interface (:class:`BootControl`), five backends chosen by name with
:func:`make_backend`:

``grub``    GRUB environment block + the x86 ``grub.cfg`` (attempt counting)
``uboot``   U-Boot environment (fw_env.config) + ``scripts/boot.cmd`` (attempt counting)
``file``    a text env file + the simulated bootloader (attempt counting)
``rpi``     Raspberry Pi ``autoboot.txt`` + one-shot tryboot (no counter)
``jetson``  ``nvbootctrl -t rootfs`` (UEFI retry counter)

:mod:`bsp.bootctl.sim` runs each bootloader's algorithm on the same files, for
the virtual board.  docs/boot-control.md explains the algorithms, the
settings and what a power cut at any point leaves behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from .base import DEFAULT_ATTEMPTS, MAX_ATTEMPTS, MIN_ATTEMPTS, SLOTS, BootControl, SlotState
from .errors import BootControlError

BACKENDS: Final = ("grub", "uboot", "file", "rpi", "jetson")

# Settings each backend accepts (from the device YAML), with their defaults.
SETTINGS: Final[dict[str, dict[str, Any]]] = {
    "grub": {"grubenv": "/boot/efi/EFI/BOOT/grubenv", "cmdline": "/proc/cmdline", "attempts": DEFAULT_ATTEMPTS},
    "uboot": {"fw_env_config": "/etc/fw_env.config", "default_env": None, "lockfile": "/var/lock/fw_printenv.lock",
              "cmdline": "/proc/cmdline", "attempts": DEFAULT_ATTEMPTS},
    "file": {"env": None, "cmdline": "/proc/cmdline", "attempts": DEFAULT_ATTEMPTS},
    "rpi": {"autoboot": "/boot/firmware/autoboot.txt", "device_tree": "/proc/device-tree",
            "slot_partitions": {"A": 2, "B": 3}, "tryboot_flag": None},
    "jetson": {"nvbootctrl": "nvbootctrl", "nvbootctrl_env": {}, "attempts": DEFAULT_ATTEMPTS},
}
# Keys only the simulator reads (accepted so one settings dict serves both).
SIM_ONLY: Final = {"tryboot_flag"}


def resolve_settings(name: str, settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """``settings`` merged over the backend's defaults; BootControlError for an unknown backend or key."""
    if name not in SETTINGS:
        raise BootControlError(f"unknown boot-control backend {name!r}: choose one of {', '.join(BACKENDS)}")
    given = dict(settings or {})
    unknown = sorted(set(given) - set(SETTINGS[name]))
    if unknown:
        raise BootControlError(f"boot-control backend {name}: unknown setting(s) {', '.join(unknown)} "
                               f"(known: {', '.join(sorted(SETTINGS[name]))})")
    merged = {**SETTINGS[name], **given}
    if name == "uboot" and merged["default_env"] is None and Path("/etc/u-boot-initial-env").is_file():
        merged["default_env"] = "/etc/u-boot-initial-env"
    if name == "file" and not merged["env"]:
        raise BootControlError("boot-control backend file: the 'env' setting (path of the env file) is required")
    return merged


def _path(value: Any, key: str) -> Path:
    if not isinstance(value, (str, Path)) or not str(value):
        raise BootControlError(f"boot-control setting {key!r} must be a path, got {value!r}")
    return Path(value)


def _int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BootControlError(f"boot-control setting {key!r} must be an integer, got {value!r}")
    return value


def make_backend(name: str, settings: Mapping[str, Any] | None = None) -> BootControl:
    """The backend called ``name`` configured from ``settings`` (keys in :data:`SETTINGS`)."""
    s = resolve_settings(name, settings)
    if name == "grub":
        from .grub import GrubBackend
        return GrubBackend(grubenv_path=_path(s["grubenv"], "grubenv"), cmdline=_path(s["cmdline"], "cmdline"),
                           attempts=_int(s["attempts"], "attempts"))
    if name == "uboot":
        from .uboot import UBootBackend
        return UBootBackend(fw_env_config=_path(s["fw_env_config"], "fw_env_config"),
                            cmdline=_path(s["cmdline"], "cmdline"), attempts=_int(s["attempts"], "attempts"),
                            default_env=_path(s["default_env"], "default_env") if s["default_env"] else None,
                            lockfile=_path(s["lockfile"], "lockfile") if s["lockfile"] else None)
    if name == "file":
        from .filebackend import FileBackend
        return FileBackend(env_path=_path(s["env"], "env"), cmdline=_path(s["cmdline"], "cmdline"),
                           attempts=_int(s["attempts"], "attempts"))
    if name == "rpi":
        from .rpi import RpiBackend
        parts = s["slot_partitions"]
        if not isinstance(parts, Mapping):
            raise BootControlError(f"boot-control setting 'slot_partitions' must map A and B to partitions, got {parts!r}")
        return RpiBackend(autoboot_path=_path(s["autoboot"], "autoboot"), device_tree=_path(s["device_tree"], "device_tree"),
                          slot_partitions={str(k): _int(v, f"slot_partitions.{k}") for k, v in parts.items()})
    from .jetson import JetsonBackend
    cmd = s["nvbootctrl"]
    command = [cmd] if isinstance(cmd, str) else list(cmd) if isinstance(cmd, (list, tuple)) else None
    if not command or not all(isinstance(c, str) and c for c in command):
        raise BootControlError(f"boot-control setting 'nvbootctrl' must be a command (string or list), got {cmd!r}")
    env = s["nvbootctrl_env"]
    if not isinstance(env, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise BootControlError(f"boot-control setting 'nvbootctrl_env' must map names to strings, got {env!r}")
    return JetsonBackend(command=command, extra_env=env, attempts=_int(s["attempts"], "attempts"))


__all__ = ["BACKENDS", "SETTINGS", "SLOTS", "MIN_ATTEMPTS", "MAX_ATTEMPTS", "DEFAULT_ATTEMPTS", "BootControl",
           "BootControlError", "SlotState", "make_backend", "resolve_settings"]
