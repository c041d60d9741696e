"""Helpers for boot-control tests: running the real GRUB (grub-emu) and real U-Boot (QEMU) on our scripts."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import bsp
from bsp.bootctl import ubootenv
from tests.conftest import require_tool, run

GRUB_CFG = Path(bsp.__file__).parent / "x86-64-efi" / "boot" / "grub.cfg"
BOOT_CMD = Path(bsp.__file__).parent / "bootctl" / "scripts" / "boot.cmd"
UBOOT_BIN = Path("/usr/lib/u-boot/qemu_arm64/u-boot.bin")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass(frozen=True)
class GrubBoot:
    linux_args: list[str]  # the arguments grub.cfg passed to `linux`
    env_after: bytes | None  # the env block file after GRUB ran (None: there was none)
    console: str

    @property
    def slot(self) -> str:
        slots = [a.split("=", 1)[1] for a in self.linux_args if a.startswith("edge.slot=")]
        assert len(slots) == 1, self.linux_args
        return slots[0]


def grub_boot(workdir: Path, env_block: bytes | None) -> GrubBoot:
    """Run the real grub.cfg once in grub-emu with ``env_block`` as the grubenv file on a FAT disk.

    grub-emu (Debian package grub-emu) is GRUB itself, built to run as a Linux
    process.  ``save_env`` needs a real disk (it refuses host files), so the
    block sits on a small FAT image mapped as (hd0).  grub-emu has no ``linux``
    command, so a wrapper defines functions ``linux``/``initrd`` that print
    their arguments and halt; everything else is the unmodified grub.cfg.
    """
    emu = require_tool("grub-emu")
    workdir.mkdir(parents=True, exist_ok=True)
    disk = workdir / "esp.img"
    disk.unlink(missing_ok=True)
    with open(disk, "wb") as fh:
        fh.truncate(2 * 1024 * 1024)
    run(require_tool("mkfs.vfat"), str(disk))
    if env_block is not None:
        src = workdir / "grubenv.in"
        src.write_bytes(env_block)
        run(require_tool("mcopy"), "-i", str(disk), str(src), "::/grubenv")
    (workdir / "device.map").write_text(f"(hd0) {disk}\n")
    prefix = workdir / "prefix"
    prefix.mkdir(exist_ok=True)
    (prefix / "grub.cfg").write_text(
        "set edge_env=(hd0)/grubenv\n"
        'function linux { echo "EDGE-LINUX $*"; }\n'
        'function initrd { echo "EDGE-INITRD $*"; halt; }\n'
        f"source (host){GRUB_CFG}\n"
    )
    proc = subprocess.run([emu, "-d", str(prefix), "-m", str(workdir / "device.map")], stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=60)
    console = _ANSI.sub("", proc.stdout.decode("utf-8", "replace")).replace("\r", "")
    lines = [line for line in console.splitlines() if line.startswith("EDGE-LINUX ")]
    assert len(lines) == 1, f"grub-emu did not boot a kernel:\n{console}\n{proc.stderr.decode(errors='replace')}"
    after = None
    if env_block is not None:
        out = workdir / "grubenv.out"
        out.unlink(missing_ok=True)
        run(require_tool("mcopy"), "-i", str(disk), "::/grubenv", str(out))
        after = out.read_bytes()
    return GrubBoot(lines[0].split()[1:], after, console)


@dataclass(frozen=True)
class UBootRun:
    env_after: dict[str, str]  # the environment when the script hands over to the kernel
    console: str

    @property
    def slot(self) -> str:
        return self.env_after["edge_slot"]


def uboot_run(workdir: Path, env: dict[str, str], *, hook: bool = True) -> UBootRun:
    """Boot real U-Boot (Debian u-boot-qemu, qemu_arm64) in QEMU once, running our compiled boot.cmd.

    The environment is a valid single copy at the start of the second flash
    bank, where this U-Boot build keeps it.  The script image is placed in RAM
    at ${scriptaddr} by QEMU's generic loader and ``bootcmd`` sources it.  The
    board hook ``edge_boot`` (documented in boot.cmd) prints the environment
    between markers instead of loading a kernel; the script then resets and
    ``-no-reboot`` ends QEMU.
    """
    qemu = require_tool("qemu-system-aarch64")
    mkimage = require_tool("mkimage")
    if not UBOOT_BIN.is_file():
        import pytest
        pytest.fail(f"{UBOOT_BIN} is missing: install the Debian package u-boot-qemu (make test does)")
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "boot.scr"
    run(mkimage, "-A", "arm64", "-O", "linux", "-T", "script", "-C", "none", "-d", str(BOOT_CMD), str(script))
    full = {"bootdelay": "0", "bootcmd": "source 0x40200000", **env}
    if hook:
        full["edge_boot"] = "echo EDGE-ENV-BEGIN; env print; echo EDGE-ENV-END"
    flash = workdir / "flash1.img"
    with open(flash, "wb") as fh:
        fh.write(ubootenv.render_copy(full, 0x40000, None))
        fh.truncate(64 * 1024 * 1024)
    proc = subprocess.run([qemu, "-M", "virt", "-cpu", "cortex-a57", "-m", "512", "-nographic", "-no-reboot",
                           "-nic", "none", "-bios", str(UBOOT_BIN),
                           "-drive", f"if=pflash,format=raw,index=1,file={flash}",
                           "-device", f"loader,file={script},addr=0x40200000,force-raw=on"],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    console = proc.stdout.decode("utf-8", "replace").replace("\r", "")
    assert "Loading Environment from Flash... OK" in console, console
    if not hook:
        return UBootRun({}, console)
    begin, end = console.find("\nEDGE-ENV-BEGIN\n"), console.find("\nEDGE-ENV-END\n")
    assert 0 <= begin < end, f"the script did not reach the boot hook:\n{console}"
    assert console.find("Saving Environment") < begin, "the script must save the environment before booting"
    after: dict[str, str] = {}
    for line in console[begin + 1:end].split("\n")[1:]:
        if "=" in line and not line.startswith("Environment size"):
            name, value = line.split("=", 1)
            after[name] = value
    return UBootRun(after, console)
