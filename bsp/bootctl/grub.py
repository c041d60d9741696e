"""GRUB backend: the counting variables live in a GRUB environment block that ``grub.cfg`` loads and saves.

The block is rewritten in place (same size, same disk blocks) because GRUB's
``save_env`` can only write sectors the file already occupies; every change
Edge makes falls inside the first 512-byte sector of the block, which storage
writes atomically.  The x86 ``grub.cfg`` (``bsp/x86-64-efi/boot/grub.cfg``)
implements the bootloader half.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import grubenv
from .base import DEFAULT_ATTEMPTS
from .counting_backend import CountingBackend
from .fileio import read_file, rewrite_in_place


class GrubBackend(CountingBackend):
    name = "grub"

    def __init__(self, *, grubenv_path: Path, cmdline: Path, attempts: int = DEFAULT_ATTEMPTS) -> None:
        super().__init__(cmdline=cmdline, attempts=attempts)
        self.grubenv_path = grubenv_path

    def _block(self) -> tuple[bytes, grubenv.GrubEnvBlock]:
        raw = read_file(self.grubenv_path, "GRUB environment block", grubenv.MAX_SIZE)
        return raw, grubenv.GrubEnvBlock(raw, str(self.grubenv_path))

    def read_env(self) -> dict[str, str]:
        return self._block()[1].variables()

    def write_updates(self, updates: Mapping[str, str | None]) -> None:
        old, block = self._block()
        block.update(updates)
        rewrite_in_place(self.grubenv_path, 0, old, bytes(block), require_single_sector=True)

    def _describe_extra(self) -> dict[str, Any]:
        return {**super()._describe_extra(), "grubenv": str(self.grubenv_path)}
