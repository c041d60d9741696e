"""Does the root filesystem run on the board's CPU?  ELF headers of ``/bin/sh`` and the init.

A container image built for the wrong platform gives an image that boots to
"exec format error" at best.  The build reads the ELF header (``e_machine``)
of ``/bin/sh`` and of the init (``init=`` on the kernel command line, else
``/sbin/init``), following symlinks *inside the image tree* (never on the
host), and of the interpreter of a ``#!`` script.  At least one of them must
exist; every one that exists must match.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from edge.squashfs.tree import Kind

from .errors import ArchMismatchError, BuildError
from .merge import RootfsTree

EM_NAMES = {3: "i386", 8: "mips", 20: "ppc", 21: "ppc64", 22: "s390", 40: "arm (32-bit)", 62: "x86_64",
            183: "aarch64", 243: "riscv", 258: "loongarch"}
BOARD_MACHINES = {"x86_64": 62, "aarch64": 183}
MAX_SCRIPT_DEPTH = 4


@dataclass(frozen=True)
class CheckedBinary:
    path: str  # as asked, e.g. "/bin/sh"
    resolved: str  # after symlinks, e.g. "/usr/bin/busybox"
    machine: int  # ELF e_machine
    arch: str  # its name


def elf_machine(header: bytes) -> int | None:
    """``e_machine`` of an ELF header, or None if ``header`` is not one."""
    if len(header) < 20 or header[:4] != b"\x7fELF" or header[4] not in (1, 2) or header[5] not in (1, 2):
        return None
    fmt = "<H" if header[5] == 1 else ">H"
    (machine,) = struct.unpack_from(fmt, header, 18)
    return int(machine)


def init_path(cmdline: list[str] | tuple[str, ...]) -> str:
    """The init the kernel will run: the last ``init=`` argument, else ``/sbin/init``."""
    init = "/sbin/init"
    for arg in cmdline:
        if arg.startswith("init="):
            init = arg[len("init="):]
    return init


def check_architecture(tree: RootfsTree, arch: str, board: str, cmdline: list[str] | tuple[str, ...]) -> list[CheckedBinary]:
    """Check ``/bin/sh`` and the init against ``arch``; return what was checked, raise on a mismatch."""
    want = BOARD_MACHINES[arch]
    checked: list[CheckedBinary] = []
    for path in dict.fromkeys(("/bin/sh", init_path(cmdline))):
        found = _binary(tree, path, depth=0)
        if found is None:
            continue
        if found.machine != want:
            via = f" ({found.resolved})" if found.resolved != path else ""
            raise ArchMismatchError(
                f"board {board} runs {arch} binaries, but {path}{via} is an ELF for {found.arch} (e_machine {found.machine}); "
                f"build the source for {arch} or choose a board of that architecture")
        checked.append(found)
    if not checked:
        raise BuildError(
            f"board {board}: cannot check the architecture, the image has neither /bin/sh nor {init_path(cmdline)} "
            "(an image without them cannot boot; set arch_check: false in the recipe or pass --no-arch-check to skip)")
    return checked


def _binary(tree: RootfsTree, path: str, depth: int) -> CheckedBinary | None:
    found = tree.resolve(path.lstrip("/"))
    if found is None:
        return None
    resolved, node = found
    entry = node.entry
    if entry.kind is not Kind.FILE or entry.content is None:
        return None
    with entry.content.open() as fh:
        header = fh.read(256)
    machine = elf_machine(header)
    if machine is not None:
        return CheckedBinary(path, "/" + resolved, machine, EM_NAMES.get(machine, f"machine {machine}"))
    if header.startswith(b"#!") and depth < MAX_SCRIPT_DEPTH:
        line = header[2:].split(b"\n", 1)[0].strip().split()
        if line:
            interpreter = line[0].decode("utf-8", "surrogateescape")
            inner = _binary(tree, interpreter, depth + 1)
            if inner is not None:
                return CheckedBinary(path, f"/{resolved} -> {inner.resolved}", inner.machine, inner.arch)
        return None
    raise BuildError(f"{path} ({'/' + resolved}) is neither an ELF executable nor a #! script")


def main(argv: list[str] | None = None) -> int:
    """``python -m edge.build.elfcheck FILE``: print the CPU an ELF file is for."""
    import sys

    paths = sys.argv[1:] if argv is None else argv
    status = 0
    for path in paths:
        with open(path, "rb") as fh:
            machine = elf_machine(fh.read(64))
        if machine is None:
            print(f"{path}: not an ELF file", file=sys.stderr)
            status = 1
        else:
            print(f"{EM_NAMES.get(machine, 'unknown')} ELF (e_machine {machine})" if len(paths) == 1
                  else f"{path}: {EM_NAMES.get(machine, 'unknown')} ELF (e_machine {machine})")
    return status


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
