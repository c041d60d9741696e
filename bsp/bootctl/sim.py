"""Simulated bootloaders: each board's real slot-selection algorithm, run on its real env file format.

The virtual board (``edge sim``) boots with these instead of firmware:

* ``grub``, ``uboot``, ``file``: :func:`bsp.bootctl.counting.bootloader_step`,
  the algorithm ``grub.cfg`` and ``boot.cmd`` implement, applied to the GRUB
  env block / U-Boot env copies / text env file, saved the way GRUB's
  ``save_env`` / U-Boot's ``saveenv`` / an atomic rename would, then the kernel
  command line (``edge.slot=X``) written to the ``cmdline`` file the backend reads.
* ``rpi``: the firmware reads ``autoboot.txt``, uses ``[tryboot]`` only when
  the one-shot tryboot flag (a file standing in for the firmware register
  ``reboot "0 tryboot"`` sets) exists, deletes the flag before booting, and
  writes ``chosen/bootloader/partition`` and ``.../tryboot`` into the
  device-tree directory.
* ``jetson``: :func:`bsp.bootctl.fake_nvbootctrl.uefi_boot` on the fake
  nvbootctrl's state file.

:func:`simulate_power_loss` drops what does not survive a power cut (the RPi
tryboot flag, the Jetson retry counts in the scratch register);
:func:`simulate_reboot_command` records what running the backend's
``reboot_command()`` does to the firmware.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import autoboot, counting, grubenv, ubootenv
from . import fake_nvbootctrl as nv
from . import filebackend, jetson, make_backend, resolve_settings, uboot
from .base import SLOTS, check_attempts
from .errors import BootControlError
from .fileio import read_file, replace_atomically, rewrite_in_place

# The default environment of the simulated U-Boot (what a real U-Boot has compiled in).
SIM_UBOOT_DEFAULT_ENV = {
    "bootdelay": "0",
    "bootcmd": "load mmc 0:1 ${scriptaddr} boot.scr; source ${scriptaddr}",
}
UBOOT_ENV_SIZE = 0x4000


@dataclass(frozen=True)
class BootOutcome:
    """One simulated boot: the slot started and whether it is an unconfirmed trial of that slot."""

    slot: str
    trial: bool
    detail: str


def _write_cmdline(settings: Mapping[str, Any], slot: str, name: str) -> None:
    path = Path(settings["cmdline"])
    replace_atomically(path, f"edge.slot={slot} edge.sim={name}\n".encode())


def _counting_outcome(name: str, settings: Mapping[str, Any], step: counting.BootStep) -> BootOutcome:
    _write_cmdline(settings, step.slot, name)
    trial = make_backend(name, settings).slot_state(step.slot) == "trying"
    left = step.updates[counting.left_var(step.slot)]
    detail = f"booted {step.slot} ({left} attempts left)"
    if step.counters_reset:
        detail += "; no slot had attempts left, counters reset"
    return BootOutcome(step.slot, trial, detail)


def _boot_grub(settings: Mapping[str, Any]) -> BootOutcome:
    path = Path(settings["grubenv"])
    try:
        old = read_file(path, "GRUB environment block", grubenv.MAX_SIZE)
        block: grubenv.GrubEnvBlock | None = grubenv.GrubEnvBlock(old, str(path))
    except BootControlError:
        old, block = b"", None  # GRUB's load_env fails: the script runs on an empty environment
    env = block.variables() if block is not None else {}
    step = counting.bootloader_step(env)
    if block is not None:
        # grub.cfg ends with `save_env -f $edge_env BOOT_A_LEFT BOOT_B_LEFT`: each listed variable is set
        # to its value, or deleted when unset, in that order.
        new_env = counting.apply_updates(env, step.updates)
        for var in (counting.left_var("A"), counting.left_var("B")):
            if var in new_env:
                block.set(var, new_env[var])
            else:
                block.unset(var)
        rewrite_in_place(path, 0, old, bytes(block), require_single_sector=True)
    return _counting_outcome("grub", settings, step)


def _boot_uboot(settings: Mapping[str, Any]) -> BootOutcome:
    config = Path(settings["fw_env_config"])
    default = Path(settings["default_env"]) if settings.get("default_env") else None
    # With no valid copy U-Boot runs on its built-in default environment: default_env stands in for it.
    env = uboot.load(config, default)
    step = counting.bootloader_step(env.variables)
    uboot.store(env, counting.apply_updates(env.variables, step.updates))  # saveenv
    return _counting_outcome("uboot", settings, step)


def _boot_file(settings: Mapping[str, Any]) -> BootOutcome:
    path = Path(settings["env"])
    env = filebackend.read_env_file(path) if path.exists() else {}
    step = counting.bootloader_step(env)
    filebackend.write_env_file(path, counting.apply_updates(env, step.updates))
    return _counting_outcome("file", settings, step)


def _dt_dir(settings: Mapping[str, Any]) -> Path:
    return Path(settings["device_tree"]) / "chosen" / "bootloader"


def _tryboot_flag(settings: Mapping[str, Any]) -> Path:
    flag = settings.get("tryboot_flag")
    if not flag:
        raise BootControlError("rpi simulator: the 'tryboot_flag' setting (a file standing in for the firmware flag) is required")
    return Path(flag)


def _boot_rpi(settings: Mapping[str, Any]) -> BootOutcome:
    flag = _tryboot_flag(settings)
    tryboot = flag.exists()
    if tryboot:
        flag.unlink()  # the firmware clears the one-shot flag before it boots anything
    path = Path(settings["autoboot"])
    text = read_file(path, "autoboot.txt", 4096).decode("utf-8", "replace")
    partition = autoboot.Autoboot(text, str(path)).boot_partition(tryboot)
    slot = next((s for s, p in settings["slot_partitions"].items() if p == partition), None)
    if slot is None:
        raise BootControlError(f"{path}: the firmware would boot partition {partition}, which holds no slot")
    dt = _dt_dir(settings)
    dt.mkdir(parents=True, exist_ok=True)
    replace_atomically(dt / "partition", partition.to_bytes(4, "big"))
    replace_atomically(dt / "tryboot", (1 if tryboot else 0).to_bytes(4, "big"))
    return BootOutcome(slot, tryboot, f"booted partition {partition} (slot {slot}){' in tryboot mode' if tryboot else ''}")


def _jetson_state_path(settings: Mapping[str, Any]) -> Path:
    env = settings.get("nvbootctrl_env") or {}
    if nv.STATE_ENV not in env:
        raise BootControlError(f"jetson simulator: nvbootctrl_env must name the fake's state file ({nv.STATE_ENV})")
    return Path(env[nv.STATE_ENV])


def _boot_jetson(settings: Mapping[str, Any]) -> BootOutcome:
    path = _jetson_state_path(settings)
    state = nv.NvState.load(path)
    before = state.active
    index = nv.uefi_boot(state, cold=False)
    state.save(path)
    slot = SLOTS[index]
    info = jetson.SlotsInfo(SLOTS[state.current], SLOTS[state.active],
                            {SLOTS[i]: s.retry_count for i, s in enumerate(state.slots)},
                            {SLOTS[i]: s.status for i, s in enumerate(state.slots)})
    trial = jetson._state(info, slot, state.max_retry) == "trying"
    detail = f"booted slot {index} ({slot}), retry_count now {state.slots[index].retry_count}"
    if index != before:
        detail += f"; slot {before} was unbootable, UEFI switched"
    return BootOutcome(slot, trial, detail)


_BOOTERS = {"grub": _boot_grub, "uboot": _boot_uboot, "file": _boot_file, "rpi": _boot_rpi, "jetson": _boot_jetson}


def simulate_boot(name: str, settings: Mapping[str, Any]) -> BootOutcome:
    """Boot the virtual board once: run the bootloader's algorithm on its files and record what it booted."""
    s = resolve_settings(name, settings)
    return _BOOTERS[name](s)


def simulate_reboot_command(name: str, settings: Mapping[str, Any], argv: Sequence[str]) -> None:
    """What running ``argv`` (a backend's ``reboot_command()``) leaves in the firmware before the reboot."""
    s = resolve_settings(name, settings)
    if not argv or argv[0] != "reboot":
        raise BootControlError(f"not a reboot command: {list(argv)!r}")
    if name == "rpi" and len(argv) > 1 and "tryboot" in argv[1].split():
        flag = _tryboot_flag(s)
        flag.parent.mkdir(parents=True, exist_ok=True)
        flag.write_bytes(b"1\n")


def simulate_power_loss(name: str, settings: Mapping[str, Any]) -> None:
    """Drop the state that does not survive losing power."""
    s = resolve_settings(name, settings)
    if name == "rpi":
        _tryboot_flag(s).unlink(missing_ok=True)
    elif name == "jetson":
        path = _jetson_state_path(s)
        state = nv.NvState.load(path)
        for slot in state.slots:
            slot.retry_count = state.max_retry  # a cold boot reloads the scratch register
        state.save(path)


def prepare_board(name: str, directory: Path, *, attempts: int = counting.RESET_ATTEMPTS,
                  redundant: bool = True) -> dict[str, Any]:
    """Create the bootloader-side files of a fresh virtual board (slot A committed) and return its settings.

    The settings work for both :func:`bsp.bootctl.make_backend` and the
    simulator.  Nothing is booted yet: call :func:`simulate_boot` first.
    """
    check_attempts(attempts)
    directory.mkdir(parents=True, exist_ok=True)
    d = directory.resolve()
    if name == "grub":
        path = d / "grubenv"
        replace_atomically(path, grubenv.render(counting.initial_env(attempts)))
        return {"grubenv": str(path), "cmdline": str(d / "cmdline"), "attempts": attempts}
    if name == "uboot":
        image = d / "uboot-env.bin"
        config = d / "fw_env.config"
        default = d / "u-boot-initial-env"
        variables = {**SIM_UBOOT_DEFAULT_ENV, **counting.initial_env(attempts)}
        if redundant:
            data = ubootenv.render_copy(variables, UBOOT_ENV_SIZE, 1) + b"\xff" * UBOOT_ENV_SIZE
            lines = f"{image} 0x0 {UBOOT_ENV_SIZE:#x}\n{image} {UBOOT_ENV_SIZE:#x} {UBOOT_ENV_SIZE:#x}\n"
        else:
            data = ubootenv.render_copy(variables, UBOOT_ENV_SIZE, None)
            lines = f"{image} 0x0 {UBOOT_ENV_SIZE:#x}\n"
        replace_atomically(image, data)
        replace_atomically(config, f"# simulated board: device offset size\n{lines}".encode())
        replace_atomically(default, "".join(f"{k}={v}\n" for k, v in SIM_UBOOT_DEFAULT_ENV.items()).encode())
        return {"fw_env_config": str(config), "default_env": str(default), "lockfile": None,
                "cmdline": str(d / "cmdline"), "attempts": attempts}
    if name == "file":
        path = d / "bootenv"
        filebackend.write_env_file(path, counting.initial_env(attempts))
        return {"env": str(path), "cmdline": str(d / "cmdline"), "attempts": attempts}
    if name == "rpi":
        path = d / "autoboot.txt"
        replace_atomically(path, autoboot.render(2, 2).encode())
        return {"autoboot": str(path), "device_tree": str(d / "device-tree"),
                "slot_partitions": {"A": 2, "B": 3}, "tryboot_flag": str(d / "tryboot-flag")}
    if name == "jetson":
        path = d / "nvbootctrl-state.json"
        nv.NvState(max_retry=attempts, slots=[nv.SlotInfo(attempts), nv.SlotInfo(attempts)]).save(path)
        return {"nvbootctrl": [sys.executable, "-m", "bsp.bootctl.fake_nvbootctrl"],
                "nvbootctrl_env": {nv.STATE_ENV: str(path)}, "attempts": attempts}
    raise BootControlError(f"unknown boot-control backend {name!r}")
