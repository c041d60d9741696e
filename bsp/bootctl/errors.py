"""The one error type boot control raises: exit code 12.

Every problem with a bootloader environment (a GRUB env block that does not
parse or does not have room, a U-Boot env copy with a bad CRC, a malformed
``fw_env.config`` or ``autoboot.txt``, an ``nvbootctrl`` that fails) and every
refused operation (marking the last bootable slot bad) ends in a
:class:`BootControlError` whose message names the file and, where it helps,
the line or byte offset.
"""

from __future__ import annotations

from edge.errors import EdgeError


class BootControlError(EdgeError):
    """A boot-control file, tool or operation failed; the message says which and where."""

    exit_code = 12
