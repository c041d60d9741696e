"""Jetson backend: ``nvbootctrl -t rootfs`` (rootfs A/B redundancy, L4T R35+ with UEFI).

Slot 0 is A (partition ``APP``), slot 1 is B (``APP_b``).  UEFI keeps a retry
count per slot; each boot of the active slot that the OS does not confirm with
``mark-boot-successful`` uses one retry, and at 0 UEFI marks the slot
unbootable and switches to the other one.  The count is fixed when the board
is flashed, so :meth:`JetsonBackend.set_primary` ignores ``attempts``.
An unbootable slot stays unbootable (a UEFI variable): ``nvbootctrl`` cannot
make it bootable again, so arming it is refused with an explanation.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .base import DEFAULT_ATTEMPTS, SLOTS, BootControl, SlotState, check_attempts, check_slot, other_slot
from .errors import BootControlError

_HEADER = re.compile(r"^(Current|Active) rootfs slot:\s*([AB])\s*$")
_SLOT = re.compile(r"^slot:\s*([01]),\s*retry_count:\s*(\d+),\s*status:\s*(\w+)\s*$")


@dataclass(frozen=True)
class SlotsInfo:
    current: str
    active: str
    retry_count: dict[str, int]
    status: dict[str, str]


def parse_dump_slots_info(text: str) -> SlotsInfo:
    """The output of ``nvbootctrl -t rootfs dump-slots-info``."""
    found: dict[str, str] = {}
    retry: dict[str, int] = {}
    status: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        m = _HEADER.match(line)
        if m:
            found[m.group(1)] = m.group(2)
            continue
        m = _SLOT.match(line)
        if m:
            slot = SLOTS[int(m.group(1))]
            retry[slot] = int(m.group(2))
            status[slot] = m.group(3)
    if "Current" not in found or "Active" not in found or sorted(retry) != sorted(SLOTS):
        raise BootControlError(f"nvbootctrl dump-slots-info: unexpected output: {text.strip()[:200]!r}")
    return SlotsInfo(found["Current"], found["Active"], retry, status)


class JetsonBackend(BootControl):
    name = "jetson"

    def __init__(self, *, command: Sequence[str] = ("nvbootctrl",), extra_env: Mapping[str, str] | None = None,
                 attempts: int = DEFAULT_ATTEMPTS) -> None:
        if not command:
            raise BootControlError("the nvbootctrl command is empty")
        self.command = list(command)
        self.extra_env = dict(extra_env or {})
        self.max_retry = check_attempts(attempts)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [*self.command, "-t", "rootfs", *args]
        env = {**os.environ, **self.extra_env} if self.extra_env else None
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", env=env, timeout=60)
        except FileNotFoundError:
            raise BootControlError(f"{self.command[0]}: not found (nvbootctrl is part of L4T's nvidia-l4t-tools)") from None
        except subprocess.TimeoutExpired:
            raise BootControlError(f"{' '.join(argv)}: timed out") from None
        if check and proc.returncode != 0:
            msg = (proc.stderr or proc.stdout).strip().splitlines()
            raise BootControlError(f"{' '.join(argv)} failed (exit {proc.returncode}): {msg[0] if msg else 'no output'}")
        return proc

    def info(self) -> SlotsInfo:
        return parse_dump_slots_info(self._run("dump-slots-info").stdout)

    def booted_slot(self) -> str:
        out = self._run("get-current-slot").stdout.strip()
        if out not in ("0", "1"):
            raise BootControlError(f"nvbootctrl get-current-slot: unexpected output {out!r}")
        return SLOTS[int(out)]

    def primary_slot(self) -> str:
        return self.info().active

    def set_primary(self, slot: str, attempts: int = DEFAULT_ATTEMPTS) -> None:
        check_slot(slot)
        check_attempts(attempts)
        if self.info().status[slot] != "normal":
            raise BootControlError(
                f"slot {slot} is marked unbootable by UEFI (RootfsStatusSlot{slot}); nvbootctrl cannot make it "
                "bootable again: reset that UEFI variable or reflash (docs/boot-control.md)")
        self._run("set-active-boot-slot", str(SLOTS.index(slot)))

    def mark_good(self, slot: str) -> None:
        check_slot(slot)
        booted = self.booted_slot()
        if booted != slot:
            raise BootControlError(f"cannot mark slot {slot} good: nvbootctrl mark-boot-successful acts on the "
                                   f"running slot, which is {booted}")
        self._run("mark-boot-successful")

    def mark_bad(self, slot: str) -> None:
        """Make the other slot active first (if needed), then mark ``slot`` unbootable.

        Two commands: a power cut between them leaves the other slot active and
        ``slot`` still bootable, which boots the other (good) slot.
        """
        check_slot(slot)
        info = self.info()
        other = other_slot(slot)
        if info.status[other] != "normal":
            raise BootControlError(f"refusing to mark slot {slot} unbootable: slot {other} is unbootable too and the "
                                   "device would have nothing to boot")
        if info.active == slot:
            self._run("set-active-boot-slot", str(SLOTS.index(other)))
        self._run("set-slot-as-unbootable", str(SLOTS.index(slot)))

    def attempts_left(self, slot: str) -> int | None:
        check_slot(slot)
        info = self.info()
        return info.retry_count[slot] if info.status[slot] == "normal" else 0

    def slot_state(self, slot: str) -> SlotState:
        check_slot(slot)
        return _state(self.info(), slot, self.max_retry)

    def _describe_extra(self) -> dict[str, Any]:
        info = self.info()
        return {"nvbootctrl": self.command, "current": info.current, "active": info.active,
                "status": info.status, "max_retry": self.max_retry}


def _state(info: SlotsInfo, slot: str, max_retry: int) -> SlotState:
    if info.status[slot] != "normal":
        return "bad"
    if slot == info.active and slot != info.current:
        return "trying"  # armed: the next boot switches to it
    if slot == info.current and info.retry_count[slot] < max_retry:
        return "trying"  # running, not yet confirmed with mark-boot-successful
    return "good"
