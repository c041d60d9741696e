"""The virtual board: a device made of files, so the whole update cycle runs without hardware.

```
DIR/device.yaml      the device configuration (relative paths: the board is relocatable)
DIR/slots/A.img      slot A and B: files standing in for the rootfs partitions
DIR/slots/B.img
DIR/boot/            the bootloader's files (a GRUB env block, U-Boot env copies, autoboot.txt, ...)
DIR/booted/          the booted rootfs view: the booted slot's image, extracted
DIR/data/edge/       the device state (what the persistent data partition holds)
DIR/sim.json         power state and boot count of the simulation
```

``reboot`` runs the board's bootloader algorithm on its real env files
(:mod:`bsp.bootctl.sim`), "mounts" the slot it picked (a slot without a valid
image is a kernel panic: the watchdog resets the board and the bootloader
counts another attempt), then runs ``edge boot-check`` against the booted
view; a boot-check that asks for a reboot (a failed trial) gets one.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bsp.bootctl import BACKENDS
from bsp.bootctl.sim import prepare_board, simulate_boot, simulate_power_loss, simulate_reboot_command
from edge.fsutil import replace_file

from .config import load_config
from .control import BootCheckResult, boot_check
from .errors import DeviceError
from .slots import hash_slot
from .state import DeviceState, SlotRecord, save_state

MECHANISM_BACKENDS = {"grub-env": "grub", "rpi-tryboot": "rpi", "nvbootctrl": "jetson", "uboot-env": "uboot"}
MAX_BOOTS = 20
DEFAULT_HEALTH = ['if [ -e "$EDGE_ROOT/usr/lib/edge/health-check" ]; then sh "$EDGE_ROOT/usr/lib/edge/health-check"; fi']


@dataclass
class BootReport:
    slot: str
    trial: bool
    detail: str
    mounted: bool
    check: BootCheckResult | None = None

    def line(self) -> str:
        what = f"boot: {self.detail}"
        if not self.mounted:
            return f"{what}; slot {self.slot} holds no bootable image (kernel panic, watchdog reset)"
        if self.check is not None:
            what += f"; boot-check: {self.check.outcome}: {self.check.message}"
        return what


@dataclass
class Sim:
    directory: Path
    board: str
    backend: str
    power: str = "on"
    boots: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def save(self) -> None:
        data = {"board": self.board, "backend": self.backend, "power": self.power, "boots": self.boots}
        replace_file(self.directory / "sim.json", (json.dumps(data, indent=1) + "\n").encode())

    @classmethod
    def load(cls, directory: str | Path) -> "Sim":
        d = Path(directory)
        try:
            data = json.loads((d / "sim.json").read_text())
            if not isinstance(data, dict):
                raise ValueError(f"a JSON {type(data).__name__}, not an object")
            sim = cls(d, data["board"], data["backend"], data.get("power", "on"), data.get("boots", 0))
            for name, ok in (("board", isinstance(sim.board, str)),
                             ("backend", isinstance(sim.backend, str) and sim.backend in BACKENDS),
                             ("power", sim.power in ("on", "off")),
                             ("boots", type(sim.boots) is int and sim.boots >= 0)):
                if not ok:
                    raise ValueError(f"{name}: {getattr(sim, name)!r} is not valid")
            return sim
        except FileNotFoundError:
            raise DeviceError(f"{d}: not a virtual board (no sim.json); create one with 'edge sim create'") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise DeviceError(f"{d}/sim.json is damaged ({exc})") from None
        except RecursionError:
            raise DeviceError(f"{d}/sim.json is damaged (nested too deeply)") from None


def _image_metadata(image: str) -> dict[str, Any]:
    """The version and security_version of IMAGE from the JSON file beside it (V1.json or V1.sqfs.json),
    if there is a readable one."""
    for candidate in (os.path.splitext(image)[0] + ".json", image + ".json"):
        try:
            with open(candidate) as fh:
                meta = json.load(fh)
        except (OSError, ValueError, RecursionError):
            continue
        if not isinstance(meta, dict):
            continue
        security = meta.get("security_version")
        if security is not None and (type(security) is not int or security < 0):
            raise DeviceError(f"{candidate}: security_version must be a whole number >= 0, not {security!r}")
        if not isinstance(meta.get("version", ""), str):
            raise DeviceError(f"{candidate}: version must be a string, not {meta['version']!r}")
        return meta
    return {}


def _parse_size(text: str | int | None, default: int) -> int:
    from edge.squashfs import SquashfsError, parse_block_size

    if text is None:
        return default
    try:
        size = text if isinstance(text, int) else parse_block_size(str(text))
    except SquashfsError:
        raise DeviceError(f"--slot-size {text!r} is not a size (e.g. 256M, 2G)") from None
    if size >= 1 << 63:
        raise DeviceError(f"--slot-size {text}: larger than any file can be")
    return size


def create(directory: str, board: str, image: str, *, keyring: str | None = None, backend: str | None = None,
           slot_size: str | int | None = None, health: list[str] | None = None, bsp_paths: tuple[str, ...] = (),
           checkpoint_every: str = "1M") -> list[BootReport]:
    """Make a virtual board holding ``image`` in slot A, and boot it."""
    from bsp.boards import BoardRegistry

    from edge.squashfs import SquashfsError, SquashfsImage

    d = Path(directory)
    if d.exists() and any(d.iterdir()):
        raise DeviceError(f"{d}: exists and is not empty")
    b = BoardRegistry(list(bsp_paths)).get(board)
    name = backend or MECHANISM_BACKENDS.get(b.boot_control.mechanism)
    if name is None:
        raise DeviceError(f"board {board}: no simulator for boot-control mechanism {b.boot_control.mechanism!r}")
    try:
        with SquashfsImage(image):
            pass
    except SquashfsError as exc:
        raise DeviceError(f"{image}: not an image to boot ({exc})") from None
    meta = _image_metadata(image)
    size = os.path.getsize(image)
    capacity = _parse_size(slot_size, max(4 * size, 64 << 20))
    if capacity < size:
        raise DeviceError(f"--slot-size {capacity} is smaller than the image ({size} bytes)")
    (d / "slots").mkdir(parents=True)
    for slot in ("A", "B"):
        with open(d / "slots" / f"{slot}.img", "wb") as fh:
            fh.truncate(capacity)
    with open(image, "rb") as src, open(d / "slots" / "A.img", "r+b") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    settings = prepare_board(name, d / "boot", attempts=3)
    if keyring:
        shutil.copyfile(keyring, d / "keyring.pem")
    config = {
        "board": board,
        "device_id": f"sim-{d.name}",
        "compatible": b.compatible,
        "slots": {"A": "slots/A.img", "B": "slots/B.img"},
        "boot_control": {"backend": name, "settings": _relative(settings, d.resolve())},
        "keyring": "keyring.pem",
        "state_dir": "data/edge",
        "boot_attempts": 3,
        "checkpoint_every": checkpoint_every,
        "health": {"timeout": 30, "commands": health if health is not None else DEFAULT_HEALTH},
    }
    import yaml

    (d / "device.yaml").write_text("# A virtual board made by 'edge sim create'; paths are relative to this file.\n"
                                   + yaml.safe_dump(config, sort_keys=False))
    cfg = load_config(str(d / "device.yaml"))
    state = DeviceState(committed="A", security_floor=int(meta.get("security_version") or 0))
    state.slots["A"] = SlotRecord(status="good", version=meta.get("version", "unknown"), sha256=hash_slot(image, size),
                                  size=size, security_version=meta.get("security_version"))
    state.event("provisioned", slot="A", version=state.slots["A"].version)
    save_state(cfg.state_file, state)
    Sim(d, board, name).save()
    return reboot(str(d), cold=True)


def _relative(settings: dict[str, Any], base: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, str) and value.startswith(str(base)):
            out[key] = os.path.relpath(value, base)
        elif isinstance(value, dict):
            out[key] = _relative(value, base)
        else:
            out[key] = value
    return out


def _mount(cfg_slots: dict[str, str], slot: str, view: Path) -> bool:
    """Extract the booted slot into the view; False if it holds no valid image."""
    from edge.squashfs import SquashfsError, SquashfsImage
    from edge.squashfs.extract import extract

    if view.exists():
        shutil.rmtree(view)
    try:
        with SquashfsImage(cfg_slots[slot]) as img:
            extract(img, view, owners=False)
        return True
    except (SquashfsError, OSError):
        if view.exists():
            shutil.rmtree(view)
        return False


def reboot(directory: str, *, cold: bool = False) -> list[BootReport]:
    """Reboot the board (or power it on): boot, mount, boot-check; again while a boot asks for it."""
    sim = Sim.load(directory)
    cfg = load_config(str(sim.directory / "device.yaml"))
    settings = cfg.backend_settings
    if sim.power == "off" or cold:
        sim.power = "on"
    else:
        from .install import backend_for

        simulate_reboot_command(sim.backend, settings, backend_for(cfg).reboot_command())
    reports: list[BootReport] = []
    view = sim.directory / "booted"
    for _ in range(MAX_BOOTS):
        outcome = simulate_boot(sim.backend, settings)
        sim.boots += 1
        sim.save()
        mounted = _mount(cfg.slots, outcome.slot, view)
        report = BootReport(outcome.slot, outcome.trial, outcome.detail, mounted)
        reports.append(report)
        if not mounted:
            continue  # the watchdog resets the board
        report.check = boot_check(cfg, env={"EDGE_ROOT": str(view)})
        if report.check.reboot:
            simulate_reboot_command(sim.backend, settings, report.check.reboot)
            continue
        return reports
    raise DeviceError(f"the virtual board did not come up within {MAX_BOOTS} boots")


def power_cut(directory: str) -> None:
    """Lose power: whatever was running stops, volatile firmware state is lost; the next reboot is a cold boot."""
    sim = Sim.load(directory)
    cfg = load_config(str(sim.directory / "device.yaml"))
    simulate_power_loss(sim.backend, cfg.backend_settings)
    sim.power = "off"
    sim.save()
