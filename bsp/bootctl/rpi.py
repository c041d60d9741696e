"""Raspberry Pi firmware backend: ``autoboot.txt`` with ``[tryboot]`` and the one-shot tryboot reboot.

There is no boot counter in the Raspberry Pi firmware.  A trial is one boot:
``reboot "0 tryboot"`` sets a flag the firmware clears before it starts the
``[tryboot]`` partition, so any crash, watchdog reset or power cut during the
trial falls back to the committed partition.  What the firmware cannot do is
judge a trial that *boots*: the agent's health check is the guard, and it
must commit (:meth:`RpiBackend.mark_good`) or the next reboot returns to the
old slot.  A committed slot that later breaks has no automatic fallback.

The booted partition and the tryboot flag come from the device tree the
firmware passes (``/proc/device-tree/chosen/bootloader/partition`` and
``.../tryboot``, 32-bit big-endian integers); slots map to partitions through
the ``slot_partitions`` setting (default A=2, B=3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import autoboot
from .base import DEFAULT_ATTEMPTS, SLOTS, BootControl, SlotState, check_slot
from .errors import BootControlError
from .fileio import read_file, replace_atomically

DEFAULT_SLOT_PARTITIONS = {"A": 2, "B": 3}


def read_dt_u32(path: Path) -> int:
    """A 32-bit big-endian device-tree integer property."""
    raw = read_file(path, "device-tree property", 64)
    if len(raw) != 4:
        raise BootControlError(f"{path}: expected a 4-byte device-tree integer, found {len(raw)} bytes")
    return int.from_bytes(raw, "big")


class RpiBackend(BootControl):
    name = "rpi"

    def __init__(self, *, autoboot_path: Path, device_tree: Path,
                 slot_partitions: dict[str, int] | None = None) -> None:
        self.autoboot_path = autoboot_path
        self.device_tree = device_tree
        parts = dict(slot_partitions or DEFAULT_SLOT_PARTITIONS)
        if sorted(parts) != sorted(SLOTS) or len(set(parts.values())) != len(SLOTS) \
                or not all(isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 255 for p in parts.values()):
            raise BootControlError(f"slot_partitions must map A and B to two different partition numbers 1..255, got {parts!r}")
        self.slot_partitions = parts

    # --- reading -------------------------------------------------------------------------------
    def _autoboot(self) -> autoboot.Autoboot:
        raw = read_file(self.autoboot_path, "autoboot.txt", 4096)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BootControlError(f"{self.autoboot_path}: not UTF-8 text (byte {exc.start})") from None
        return autoboot.Autoboot(text, str(self.autoboot_path))

    def _slot_of(self, partition: int, what: str) -> str:
        for slot, part in self.slot_partitions.items():
            if part == partition:
                return slot
        raise BootControlError(f"{what}: partition {partition} is not a slot partition ({self.slot_partitions})")

    def _partitions(self) -> tuple[str, str]:
        """(committed slot, slot a tryboot would start)."""
        ab = self._autoboot()
        committed = self._slot_of(ab.boot_partition(False), f"{self.autoboot_path} [all] boot_partition")
        trial = self._slot_of(ab.boot_partition(True), f"{self.autoboot_path} [tryboot] boot_partition")
        return committed, trial

    def booted_slot(self) -> str:
        path = self.device_tree / "chosen" / "bootloader" / "partition"
        return self._slot_of(read_dt_u32(path), str(path))

    def booted_in_tryboot(self) -> bool:
        """True when the firmware started this boot in tryboot mode."""
        path = self.device_tree / "chosen" / "bootloader" / "tryboot"
        return read_dt_u32(path) == 1

    def primary_slot(self) -> str:
        committed, trial = self._partitions()
        return trial if trial != committed else committed

    def attempts_left(self, slot: str) -> int | None:
        check_slot(slot)
        return None

    def slot_state(self, slot: str) -> SlotState:
        check_slot(slot)
        committed, trial = self._partitions()
        if slot == committed:
            return "good"
        if slot == trial:
            return "trying"
        return "bad"  # the firmware will not start it: neither committed nor armed

    def reboot_command(self) -> list[str]:
        committed, trial = self._partitions()
        return ["reboot", "0 tryboot"] if trial != committed else ["reboot"]

    # --- writing -------------------------------------------------------------------------------
    def _write(self, ab: autoboot.Autoboot, committed: str, trial: str) -> None:
        ab.set_partitions(self.slot_partitions[committed], self.slot_partitions[trial])
        replace_atomically(self.autoboot_path, ab.text().encode("utf-8"))

    def set_primary(self, slot: str, attempts: int = DEFAULT_ATTEMPTS) -> None:
        """Arm a one-shot trial of ``slot`` (``attempts`` is ignored: the firmware tries once)."""
        check_slot(slot)
        ab = self._autoboot()
        if not ab.tryboot_a_b():
            raise BootControlError(f"{self.autoboot_path}: tryboot_a_b=1 is not set under [all]: tryboot would load "
                                   "tryboot.txt instead of switching partitions")
        committed = self._slot_of(ab.boot_partition(False), f"{self.autoboot_path} [all] boot_partition")
        self._write(ab, committed, slot)

    def mark_good(self, slot: str) -> None:
        """Commit ``slot`` (it must be the running slot): normal boots start it from now on."""
        check_slot(slot)
        booted = self.booted_slot()
        if booted != slot:
            raise BootControlError(f"refusing to commit slot {slot}: the running slot is {booted}; the Raspberry Pi "
                                   "firmware has no fallback, so only a slot that has booted can be committed")
        self._write(self._autoboot(), slot, slot)

    def mark_bad(self, slot: str) -> None:
        """Disarm a trial of ``slot``; refused for the committed slot (the firmware has nothing to fall back to)."""
        check_slot(slot)
        ab = self._autoboot()
        committed = self._slot_of(ab.boot_partition(False), f"{self.autoboot_path} [all] boot_partition")
        if slot == committed:
            raise BootControlError(f"refusing to mark slot {slot} bad: it is the committed partition in "
                                   f"{self.autoboot_path} and the firmware has no other slot to boot")
        self._write(ab, committed, committed)

    def _describe_extra(self) -> dict[str, Any]:
        committed, trial = self._partitions()
        info: dict[str, Any] = {"autoboot": str(self.autoboot_path), "committed": committed,
                                "trial_armed": trial != committed, "slot_partitions": dict(self.slot_partitions)}
        try:
            info["booted_in_tryboot"] = self.booted_in_tryboot()
        except BootControlError:
            info["booted_in_tryboot"] = None
        return info
