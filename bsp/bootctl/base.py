"""The boot-control interface every backend implements, and helpers they share.

A device has two root-filesystem slots, "A" and "B".  The update agent asks
the backend which slot is running (:meth:`BootControl.booted_slot`), which one
the bootloader will start next (:meth:`BootControl.primary_slot`), arms a
trial boot of a freshly written slot (:meth:`BootControl.set_primary`), and,
after its health check, confirms (:meth:`BootControl.mark_good`) or rejects
(:meth:`BootControl.mark_bad`) a slot.  What "a trial" means differs per
bootloader (a counter in GRUB/U-Boot/the ``file`` backend, a one-shot firmware
flag on the Raspberry Pi, UEFI's retry counter on Jetson); docs/boot-control.md
has the table.
"""

from __future__ import annotations

import abc
import re
from pathlib import Path
from typing import Any, Final, Literal

from .errors import BootControlError

SLOTS: Final = ("A", "B")
SlotState = Literal["good", "bad", "trying"]

# The number of boot attempts the counting backends allow.  The GRUB and U-Boot
# scripts decrement with an if/elif chain (GRUB has no arithmetic), which covers
# 1..9; keep the OS side to the same range.
MIN_ATTEMPTS: Final = 1
MAX_ATTEMPTS: Final = 9
DEFAULT_ATTEMPTS: Final = 3

_CMDLINE_SLOT = re.compile(r"^edge\.slot=(.*)$")


def check_slot(slot: str) -> str:
    """``slot`` itself if it names a slot, else a :class:`BootControlError`."""
    if slot not in SLOTS:
        raise BootControlError(f"unknown slot {slot!r}: slots are {', '.join(SLOTS)}")
    return slot


def other_slot(slot: str) -> str:
    return "B" if check_slot(slot) == "A" else "A"


def check_attempts(attempts: int) -> int:
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not MIN_ATTEMPTS <= attempts <= MAX_ATTEMPTS:
        raise BootControlError(f"attempts must be an integer from {MIN_ATTEMPTS} to {MAX_ATTEMPTS}, got {attempts!r}")
    return attempts


def slot_from_cmdline(text: str, source: str) -> str:
    """The slot named by ``edge.slot=X`` on a kernel command line (the last one wins, as in the kernel)."""
    found: str | None = None
    for word in text.split():
        m = _CMDLINE_SLOT.match(word)
        if m:
            found = m.group(1)
    if found is None:
        raise BootControlError(f"{source}: no edge.slot= parameter on the kernel command line: cannot tell the booted slot")
    if found not in SLOTS:
        raise BootControlError(f"{source}: edge.slot={found!r} is not a slot ({', '.join(SLOTS)})")
    return found


def read_cmdline_slot(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise BootControlError(f"{path}: cannot read the kernel command line: {exc.strerror or exc}") from None
    return slot_from_cmdline(text, str(path))


class BootControl(abc.ABC):
    """One bootloader's view of the A/B slots.

    Every method that changes state does so with one atomic write (see
    docs/boot-control.md for why each intermediate state after a power cut
    still boots a good slot) and raises :class:`BootControlError` on failure.
    """

    name: str = ""

    @abc.abstractmethod
    def booted_slot(self) -> str:
        """The slot the running system was booted from."""

    @abc.abstractmethod
    def primary_slot(self) -> str:
        """The slot the bootloader will try first on the next (normal or trial) boot."""

    @abc.abstractmethod
    def set_primary(self, slot: str, attempts: int = DEFAULT_ATTEMPTS) -> None:
        """Arm a trial boot: the next boot tries ``slot``, up to ``attempts`` times, then falls back.

        Backends without a counter (Raspberry Pi: one shot; Jetson: the retry
        count is fixed when the board is flashed) accept and ignore ``attempts``.
        """

    @abc.abstractmethod
    def mark_good(self, slot: str) -> None:
        """Confirm ``slot``: it becomes (or stays) a good slot with a full attempt budget."""

    @abc.abstractmethod
    def mark_bad(self, slot: str) -> None:
        """Reject ``slot``: the bootloader will not start it again until it is set primary anew.

        Refused (BootControlError) when it would leave nothing bootable.
        """

    @abc.abstractmethod
    def attempts_left(self, slot: str) -> int | None:
        """Boot attempts the bootloader still grants ``slot``; None when the mechanism has no counter."""

    @abc.abstractmethod
    def slot_state(self, slot: str) -> SlotState:
        """"good" (bootable, confirmed), "trying" (a trial not yet confirmed) or "bad" (the bootloader will not start it)."""

    def reboot_command(self) -> list[str]:
        """The command the device runs to reboot into whatever is armed."""
        return ["reboot"]

    def describe(self) -> dict[str, Any]:
        """Everything above in one dict, for ``edge status --json``; never raises for an unknown booted slot."""
        info: dict[str, Any] = {"backend": self.name}
        try:
            info["booted"] = self.booted_slot()
        except BootControlError as exc:
            info["booted"] = None
            info["booted_error"] = str(exc)
        info["primary"] = self.primary_slot()
        info["slots"] = {s: {"state": self.slot_state(s), "attempts_left": self.attempts_left(s)} for s in SLOTS}
        info["reboot_command"] = self.reboot_command()
        info.update(self._describe_extra())
        return info

    def _describe_extra(self) -> dict[str, Any]:
        return {}
