"""The part of the GRUB, U-Boot and ``file`` backends that does not depend on the env format."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import counting
from .base import DEFAULT_ATTEMPTS, BootControl, SlotState, check_attempts, check_slot, read_cmdline_slot


class CountingBackend(BootControl):
    """A :class:`BootControl` over a key/value environment that the counting bootloader script reads.

    Subclasses read the whole environment and write a set of changes to it in
    one atomic update; everything else is :mod:`bsp.bootctl.counting`.
    """

    def __init__(self, *, cmdline: Path, attempts: int = DEFAULT_ATTEMPTS) -> None:
        self.cmdline = cmdline
        self.attempts = check_attempts(attempts)

    @abc.abstractmethod
    def read_env(self) -> dict[str, str]:
        """Every variable of the environment as the bootloader would read it now."""

    @abc.abstractmethod
    def write_updates(self, updates: Mapping[str, str | None]) -> None:
        """Apply ``updates`` (None deletes) to the environment in one atomic write."""

    def _view(self) -> counting.CountingView:
        return counting.CountingView.from_env(self.read_env())

    def booted_slot(self) -> str:
        return read_cmdline_slot(self.cmdline)

    def primary_slot(self) -> str:
        return self._view().primary

    def set_primary(self, slot: str, attempts: int = DEFAULT_ATTEMPTS) -> None:
        self.write_updates(counting.set_primary(self.read_env(), slot, attempts))

    def mark_good(self, slot: str) -> None:
        self.write_updates(counting.mark_good(self.read_env(), slot, self.attempts))

    def mark_bad(self, slot: str) -> None:
        self.write_updates(counting.mark_bad(self.read_env(), slot))

    def attempts_left(self, slot: str) -> int | None:
        return self._view().attempts_left(check_slot(slot))

    def slot_state(self, slot: str) -> SlotState:
        return self._view().state(check_slot(slot))

    def _describe_extra(self) -> dict[str, Any]:
        view = self._view()
        return {"order": list(view.order), "trial": view.trial, "attempts": self.attempts}
