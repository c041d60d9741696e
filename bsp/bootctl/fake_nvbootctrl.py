"""A stand-in for NVIDIA's ``nvbootctrl -t rootfs`` (rootfs A/B on L4T R35+ with UEFI), for tests and ``edge sim``.

``nvbootctrl`` only runs on a Jetson, so the Jetson backend is tested against
this program.  It keeps the slot state in a JSON file named by the environment
variable ``EDGE_FAKE_NVBOOTCTRL_STATE`` and reproduces the documented command
set and output; docs/boot-control.md lists the source of every behaviour and
what is inferred rather than documented.

Run it as ``python -m bsp.bootctl.fake_nvbootctrl [-t rootfs] COMMAND [SLOT]``.
:func:`uefi_boot` is the firmware side (UEFI/L4TLauncher choosing a slot),
which the simulator calls to "boot" the board.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final

from .errors import BootControlError
from .fileio import read_file, replace_atomically

STATE_ENV: Final = "EDGE_FAKE_NVBOOTCTRL_STATE"
SLOT_LETTERS: Final = ("A", "B")
DEFAULT_RETRY: Final = 3
# Seen in NVIDIA's forum posts of `nvbootctrl -t rootfs dump-slots-info` (13 spaces after each comma).
_GAP: Final = " " * 13

USAGE: Final = """\
Usage: nvbootctrl [-t <target>] <command> [<slot>]
Target: rootfs (this fake models the rootfs target only)
Commands:
  get-current-slot          print the slot the system booted from
  get-number-slots          print the number of slots
  set-active-boot-slot S    boot slot S from the next boot on
  mark-boot-successful      reset the retry count of the current slot
  set-slot-as-unbootable S  mark slot S unbootable
  is-slot-bootable S        exit 0 when slot S is bootable
  dump-slots-info           print the state of every slot
"""


@dataclass
class SlotInfo:
    retry_count: int = DEFAULT_RETRY
    status: str = "normal"  # "normal" or "unbootable"


@dataclass
class NvState:
    """What the fake keeps: the UEFI variables and scratch register the real tool reads."""

    max_retry: int = DEFAULT_RETRY
    current: int = 0  # slot the running system booted from
    active: int = 0  # slot UEFI boots next
    slots: list[SlotInfo] = field(default_factory=lambda: [SlotInfo(), SlotInfo()])

    @classmethod
    def load(cls, path: Path) -> NvState:
        raw = read_file(path, "fake nvbootctrl state", 64 * 1024)
        try:
            obj = json.loads(raw)
            state = cls(max_retry=int(obj["max_retry"]), current=int(obj["current"]), active=int(obj["active"]),
                        slots=[SlotInfo(int(s["retry_count"]), str(s["status"])) for s in obj["slots"]])
        except (ValueError, KeyError, TypeError, OverflowError) as exc:
            raise BootControlError(f"{path}: not a fake nvbootctrl state file: {exc}") from None
        except RecursionError:
            raise BootControlError(f"{path}: not a fake nvbootctrl state file: nested too deeply") from None
        if len(state.slots) != 2 or state.current not in (0, 1) or state.active not in (0, 1) \
                or any(s.status not in ("normal", "unbootable") for s in state.slots):
            raise BootControlError(f"{path}: inconsistent fake nvbootctrl state")
        return state

    def save(self, path: Path) -> None:
        replace_atomically(path, (json.dumps(asdict(self), indent=2) + "\n").encode("utf-8"))


def dump_slots_info(state: NvState) -> str:
    lines = [f"Current rootfs slot: {SLOT_LETTERS[state.current]}",
             f"Active rootfs slot: {SLOT_LETTERS[state.active]}",
             f"num_slots: {len(state.slots)}"]
    for i, s in enumerate(state.slots):
        lines.append(f"slot: {i},{_GAP}retry_count: {s.retry_count},{_GAP}status: {s.status}")
    return "\n".join(lines) + "\n"


def uefi_boot(state: NvState, *, cold: bool) -> int:
    """One boot as UEFI does it; returns the slot started and updates ``state``.

    A cold boot (power on) reloads every retry count with the maximum (the count
    lives in a scratch register); a warm reboot keeps it.  The active slot is
    started when it is normal and has retries left, its count decremented; at
    0 it becomes unbootable and UEFI switches to the other slot.
    """
    if cold:
        for s in state.slots:
            s.retry_count = state.max_retry
    target = state.active
    for _ in range(2):
        slot = state.slots[target]
        if slot.status == "normal" and slot.retry_count > 0:
            break
        slot.status = "unbootable"
        target = 1 - target
    else:
        raise BootControlError("UEFI found no bootable rootfs slot (both unbootable): the device would not boot")
    state.active = target
    state.current = target
    state.slots[target].retry_count -= 1
    return target


def _slot_arg(args: list[str]) -> int:
    if len(args) != 1 or args[0] not in ("0", "1"):
        raise ValueError("expected one slot number, 0 or 1")
    return int(args[0])


def run(argv: list[str], state_path: Path) -> tuple[int, str, str]:
    """Execute one command line; returns (exit code, stdout, stderr)."""
    target = "bootloader"
    words: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "-t":
            if i + 1 >= len(argv):
                return 1, "", USAGE
            target = argv[i + 1]
            i += 2
        else:
            words.append(argv[i])
            i += 1
    if not words:
        return 1, "", USAGE
    if target != "rootfs":
        return 1, "", f"fake nvbootctrl: target {target!r} is not modelled (use -t rootfs)\n"
    command, args = words[0], words[1:]
    try:
        state = NvState.load(state_path)
    except BootControlError as exc:
        return 1, "", f"{exc}\n"
    try:
        if command == "get-current-slot" and not args:
            return 0, f"{state.current}\n", ""
        if command == "get-number-slots" and not args:
            return 0, f"{len(state.slots)}\n", ""
        if command == "dump-slots-info" and not args:
            return 0, dump_slots_info(state), ""
        if command == "is-slot-bootable":
            return (0 if state.slots[_slot_arg(args)].status == "normal" else 1), "", ""
        if command == "set-active-boot-slot":
            state.active = _slot_arg(args)
        elif command == "set-slot-as-unbootable":
            state.slots[_slot_arg(args)].status = "unbootable"
        elif command == "mark-boot-successful" and not args:
            state.slots[state.current].retry_count = state.max_retry
        else:
            return 1, "", USAGE
    except ValueError as exc:
        return 1, "", f"{exc}\n{USAGE}"
    try:
        state.save(state_path)
    except BootControlError as exc:
        return 1, "", f"{exc}\n"
    return 0, "", ""


def main(argv: list[str] | None = None) -> int:
    path = os.environ.get(STATE_ENV)
    if not path:
        print(f"fake nvbootctrl: set {STATE_ENV} to the state file", file=sys.stderr)
        return 1
    code, out, err = run(list(sys.argv[1:] if argv is None else argv), Path(path))
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
