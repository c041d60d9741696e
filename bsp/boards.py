"""Board definitions: ``bsp/<board>/board.yaml`` loaded, validated and looked up by name.

A board folder holds ``board.yaml`` (the facts: CPU architecture, compatible
string, kernel command line, serial console, boot-control mechanism,
partition layout, which files are boot files), ``boot/`` (boot partition
files, some of them templates) and ``rootfs/`` (files laid over every image
built for the board).  Users add boards by adding folders, here or in a
directory passed with ``--bsp-path`` (see ``docs/boards.md``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from edge.build.errors import BuildError
from edge.build.yamldoc import Document, Node, field_path

BUILTIN_DIR = os.path.dirname(os.path.abspath(__file__))
BOARD_FILE = "board.yaml"
ARCHES = ("aarch64", "x86_64")
ROLES = ("boot", "boot-select", "rootfs", "data", "firmware", "other")
SLOTS = ("A", "B")
MECHANISMS = {
    # mechanism: (required option keys, optional option keys)
    "rpi-tryboot": (("partition", "file"), ()),
    "nvbootctrl": (("target",), ()),
    "grub-env": (("partition", "file"), ("tries",)),
}
FILESYSTEMS = ("vfat", "ext4", "squashfs", "raw")
TABLES = ("mbr", "gpt")
BOARD_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
PART_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,35}")
PLACEHOLDER = re.compile(r"@EDGE_[A-Z0-9_]+@")
# Filled in by the build; the slot ones only in files for a per-slot boot partition.
GLOBAL_PLACEHOLDERS = ("@EDGE_KERNEL_CMDLINE@", "@EDGE_BOARD@", "@EDGE_COMPATIBLE@", "@EDGE_ARCH@",
                       "@EDGE_IMAGE_NAME@", "@EDGE_IMAGE_VERSION@", "@EDGE_ROOT_A@", "@EDGE_ROOT_B@")
SLOT_PLACEHOLDERS = ("@EDGE_SLOT@", "@EDGE_ROOT@")
ROOTFS_TARGET = "rootfs"
_SIZE = re.compile(r"(\d+)\s*(B|K|KiB|M|MiB|G|GiB|T|TiB)?")
_UNITS = {None: 1, "B": 1, "K": 1 << 10, "KiB": 1 << 10, "M": 1 << 20, "MiB": 1 << 20, "G": 1 << 30, "GiB": 1 << 30,
          "T": 1 << 40, "TiB": 1 << 40}


class BoardError(BuildError):
    """A board folder or ``board.yaml`` is missing or invalid (exit code 5)."""


@dataclass(frozen=True)
class SerialConsole:
    device: str  # the kernel's name for the console UART on the board, e.g. ttyS0
    baud: int


@dataclass(frozen=True)
class BootControl:
    mechanism: str  # rpi-tryboot | nvbootctrl | grub-env
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Partition:
    name: str
    role: str  # boot | boot-select | rootfs | data | firmware | other
    size: int  # bytes (the minimum when grow is set)
    number: int  # partition number on the device (MBR logical partitions start at 5)
    fs: str | None = None
    slot: str | None = None  # A or B for per-slot partitions
    root: str | None = None  # the kernel's root= for a rootfs partition
    grow: bool = False  # takes the rest of the device
    mount: str | None = None  # where the running system mounts it (the build makes sure the directory exists)


@dataclass(frozen=True)
class BootFile:
    """One boot file: from the board folder (``src``) or from the image (``rootfs``), to a partition path."""

    partition: str  # a partition name, "boot" (every boot-role partition), or "rootfs" (into the image)
    path: str  # destination inside the partition; ending in "/" for a directory; "@EDGE_SLOT@" makes one copy per slot
    src: str | None = None  # absolute path in the board folder
    rootfs: str | None = None  # absolute path or glob in the image
    template: bool = False  # render @EDGE_...@ placeholders
    optional: bool = False  # a missing rootfs file is a warning, not an error


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    arch: str  # aarch64 | x86_64
    compatible: str
    kernel_cmdline: tuple[str, ...]
    serial_console: SerialConsole
    boot_control: BootControl
    partition_table: str  # mbr | gpt
    partitions: tuple[Partition, ...]
    boot_files: tuple[BootFile, ...]
    directory: str
    rootfs_overlay: str | None  # <directory>/rootfs when present

    def partition(self, name: str) -> Partition | None:
        return next((p for p in self.partitions if p.name == name), None)

    def rootfs_partition(self, slot: str) -> Partition:
        return next(p for p in self.partitions if p.role == "rootfs" and p.slot == slot)

    def boot_targets(self, selector: str) -> list[Partition]:
        """The partitions a boot file goes to: one by name, or every boot-role partition for "boot"."""
        part = self.partition(selector)
        if part is not None:
            return [part]
        if selector == "boot":
            return [p for p in self.partitions if p.role == "boot"]
        return []

    def to_dict(self) -> dict[str, Any]:
        """Everything about the board, JSON-ready (``edge boards show --json``)."""
        data = asdict(self)
        data["kernel_cmdline"] = " ".join(self.kernel_cmdline)
        return data


# ---------------------------------------------------------------- loading
def parse_size(text: str) -> int | None:
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        return None
    return int(match.group(1)) * _UNITS[match.group(2)]


def load_board(directory: str) -> Board:
    """Load and validate ``directory/board.yaml``; every error names the file, line and field."""
    directory = os.path.abspath(directory)
    path = os.path.join(directory, BOARD_FILE)
    if not os.path.isfile(path):
        raise BoardError(f"{directory}: not a board folder (no {BOARD_FILE})")
    doc = Document(path, BoardError)
    top = doc.mapping(doc.root, "", required=(
        "name", "arch", "compatible", "kernel_cmdline", "serial_console", "boot_control", "partition_table",
        "partitions", "boot_files"), allowed=("description",))
    name = doc.string(top["name"], "name", pattern=BOARD_NAME, hint="lower-case letters, digits, '.', '_', '-'")
    if name != os.path.basename(directory):
        raise doc.error(top["name"], "name", f"{name!r} must equal the folder name {os.path.basename(directory)!r}")
    description = doc.string(top["description"], "description") if "description" in top else ""
    arch = doc.string(top["arch"], "arch")
    if arch not in ARCHES:
        raise doc.error(top["arch"], "arch", f"{arch!r} is not one of {', '.join(ARCHES)}")
    compatible = doc.string(top["compatible"], "compatible", pattern=re.compile(r"[\x21-\x7e]{1,128}"),
                            hint="printable ASCII without spaces, e.g. raspberrypi,4-model-b")
    cmdline = tuple(doc.string(top["kernel_cmdline"], "kernel_cmdline").split())
    serial = _serial(doc, top["serial_console"])
    table = doc.string(top["partition_table"], "partition_table")
    if table not in TABLES:
        raise doc.error(top["partition_table"], "partition_table", f"{table!r} is not one of {', '.join(TABLES)}")
    partitions = _partitions(doc, top["partitions"])
    boot_control = _boot_control(doc, top["boot_control"], partitions)
    board_stub = Board(name, description, arch, compatible, cmdline, serial, boot_control, table, partitions, (),
                       directory, None)
    boot_files = tuple(_boot_file(doc, item, field_path("boot_files", i), board_stub)
                       for i, item in enumerate(doc.sequence(top["boot_files"], "boot_files")))
    overlay = os.path.join(directory, "rootfs")
    return Board(name, description, arch, compatible, cmdline, serial, boot_control, table, partitions, boot_files,
                 directory, overlay if os.path.isdir(overlay) else None)


def _serial(doc: Document, node: Node) -> SerialConsole:
    mapping = doc.mapping(node, "serial_console", required=("device", "baud"))
    device = doc.string(mapping["device"], "serial_console.device", pattern=re.compile(r"[A-Za-z0-9_./-]{1,64}"),
                        hint="a device name such as ttyS0")
    baud = doc.integer(mapping["baud"], "serial_console.baud", minimum=300, maximum=12_000_000)
    return SerialConsole(device, baud)


def _partitions(doc: Document, node: Node) -> tuple[Partition, ...]:
    items = doc.sequence(node, "partitions", non_empty=True)
    parts: list[Partition] = []
    for i, item in enumerate(items):
        f = field_path("partitions", i)
        m = doc.mapping(item, f, required=("name", "role", "size"), allowed=("fs", "slot", "root", "grow", "number", "mount"))
        name = doc.string(m["name"], field_path(f, "name"), pattern=PART_NAME, hint="letters, digits, '_', '.', '-'")
        if any(p.name == name for p in parts):
            raise doc.error(m["name"], field_path(f, "name"), f"partition {name!r} is defined twice")
        role = doc.string(m["role"], field_path(f, "role"))
        if role not in ROLES:
            raise doc.error(m["role"], field_path(f, "role"), f"{role!r} is not one of {', '.join(ROLES)}")
        size_node = m["size"]
        size_text = str(size_node.value) if isinstance(size_node.value, int) and not isinstance(size_node.value, bool) else doc.string(size_node, field_path(f, "size"))
        size = parse_size(size_text)
        if size is None or size <= 0:
            raise doc.error(size_node, field_path(f, "size"), f"{size_text!r} is not a size such as 256MiB or 2GiB")
        fs = None
        if "fs" in m:
            fs = doc.string(m["fs"], field_path(f, "fs"))
            if fs not in FILESYSTEMS:
                raise doc.error(m["fs"], field_path(f, "fs"), f"{fs!r} is not one of {', '.join(FILESYSTEMS)}")
        slot = None
        if "slot" in m:
            slot = doc.string(m["slot"], field_path(f, "slot"))
            if slot not in SLOTS:
                raise doc.error(m["slot"], field_path(f, "slot"), f"{slot!r} is not A or B")
        root = doc.string(m["root"], field_path(f, "root")) if "root" in m else None
        if role == "rootfs" and (slot is None or root is None):
            raise doc.error(item, f, "a rootfs partition needs a slot (A or B) and the kernel's root= value ('root')")
        if role != "rootfs" and root is not None:
            raise doc.error(m["root"], field_path(f, "root"), "only a rootfs partition has a root= value")
        grow = doc.boolean(m["grow"], field_path(f, "grow")) if "grow" in m else False
        mount = None
        if "mount" in m:
            mount = doc.string(m["mount"], field_path(f, "mount"))
            if not mount.startswith("/") or mount == "/" or ".." in mount.split("/") or role == "rootfs":
                raise doc.error(m["mount"], field_path(f, "mount"), f"{mount!r}: a mount point is an absolute path below / "
                                "without '..' (and a rootfs partition is mounted as / itself)")
        if grow and i != len(items) - 1:
            raise doc.error(m["grow"], field_path(f, "grow"), "only the last partition can grow to fill the device")
        number = doc.integer(m["number"], field_path(f, "number"), minimum=1, maximum=128) if "number" in m else (parts[-1].number + 1 if parts else 1)
        if any(p.number == number for p in parts):
            raise doc.error(item, field_path(f, "number"), f"partition number {number} is used twice")
        parts.append(Partition(name, role, size, number, fs, slot, root, grow, mount))
    for role in ("rootfs",) + tuple(sorted({p.role for p in parts if p.slot is not None} - {"rootfs"})):
        slots = sorted(p.slot for p in parts if p.role == role and p.slot is not None)
        if slots != ["A", "B"]:
            raise doc.error(node, "partitions", f"needs exactly one {role} partition for slot A and one for slot B (found {slots or 'none'})")
    rootfs = [p for p in parts if p.role == "rootfs"]
    if rootfs[0].size != rootfs[1].size:
        raise doc.error(node, "partitions", "the A and B rootfs partitions must have the same size")
    if sum(1 for p in parts if p.role == "data") > 1:
        raise doc.error(node, "partitions", "at most one data partition")
    return tuple(parts)


def _boot_control(doc: Document, node: Node, partitions: tuple[Partition, ...]) -> BootControl:
    m = doc.mapping(node, "boot_control", required=("mechanism",), allowed=("partition", "file", "tries", "target"))
    mechanism = doc.string(m["mechanism"], "boot_control.mechanism")
    if mechanism not in MECHANISMS:
        raise doc.error(m["mechanism"], "boot_control.mechanism", f"{mechanism!r} is not one of {', '.join(MECHANISMS)}")
    required, optional = MECHANISMS[mechanism]
    options: dict[str, Any] = {}
    for key, value in m.items():
        if key == "mechanism":
            continue
        f = field_path("boot_control", key)
        if key not in required + optional:
            raise doc.error(value, f, f"not an option of {mechanism} (it takes: {', '.join(required + optional)})")
        options[key] = doc.integer(value, f, minimum=1, maximum=255) if key == "tries" else doc.string(value, f)
    for key in required:
        if key not in options:
            raise doc.error(node, field_path("boot_control", key), f"is required for {mechanism}")
    if "partition" in options and not any(p.name == options["partition"] for p in partitions):
        raise doc.error(m["partition"], "boot_control.partition", f"no partition named {options['partition']!r}")
    return BootControl(mechanism, options)


def _boot_file(doc: Document, node: Node, f: str, board: Board) -> BootFile:
    m = doc.mapping(node, f, required=("partition", "path"), allowed=("src", "rootfs", "template", "optional"))
    partition = doc.string(m["partition"], field_path(f, "partition"))
    targets = board.boot_targets(partition)
    if partition != ROOTFS_TARGET and not targets:
        raise doc.error(m["partition"], field_path(f, "partition"),
                        f"{partition!r} is neither a partition of this board, 'boot' nor 'rootfs'")
    path = doc.string(m["path"], field_path(f, "path"))
    if partition == ROOTFS_TARGET:
        if not path.startswith("/"):
            raise doc.error(m["path"], field_path(f, "path"), "a file for the rootfs needs an absolute image path")
    elif path.startswith("/"):
        raise doc.error(m["path"], field_path(f, "path"), "a path inside a boot partition is relative (no leading '/')")
    if any(part == ".." for part in path.split("/")) or (not path.strip("/.") and not path.endswith("/")):
        raise doc.error(m["path"], field_path(f, "path"), f"{path!r} must name a file, or a directory ending in '/', without '..'")
    path_placeholders = set(PLACEHOLDER.findall(path))
    if path_placeholders - {"@EDGE_SLOT@"} or (path_placeholders and partition == ROOTFS_TARGET):
        raise doc.error(m["path"], field_path(f, "path"), "the only placeholder a boot partition path may hold is @EDGE_SLOT@ "
                        "(one copy per slot)")
    per_slot_path = "@EDGE_SLOT@" in path
    if ("src" in m) == ("rootfs" in m):
        raise doc.error(node, f, "give exactly one of 'src' (a file in the board folder) and 'rootfs' (a file in the image)")
    template = doc.boolean(m["template"], field_path(f, "template")) if "template" in m else False
    optional = doc.boolean(m["optional"], field_path(f, "optional")) if "optional" in m else False
    if "src" in m:
        written = doc.string(m["src"], field_path(f, "src"))
        src = os.path.normpath(os.path.join(board.directory, written))
        if not src.startswith(board.directory + os.sep):
            raise doc.error(m["src"], field_path(f, "src"), f"{written!r} is outside the board folder")
        if not os.path.isfile(src):
            raise doc.error(m["src"], field_path(f, "src"), f"{written} does not exist in the board folder")
        if optional:
            raise doc.error(m["optional"], field_path(f, "optional"), "only a file taken from the rootfs can be optional")
        if path.endswith("/"):
            raise doc.error(m["path"], field_path(f, "path"), "a file from the board folder needs a file name, not a directory")
        if template:
            shared = partition == ROOTFS_TARGET or (not per_slot_path and any(t.slot is None for t in targets))
            _check_template(doc, m["src"], field_path(f, "src"), src, shared)
        return BootFile(partition, path, src=src, template=template)
    pattern = doc.string(m["rootfs"], field_path(f, "rootfs"))
    if not pattern.startswith("/") or ".." in pattern.split("/"):
        raise doc.error(m["rootfs"], field_path(f, "rootfs"), "must be an absolute path or glob in the image, without '..'")
    if partition == ROOTFS_TARGET:
        raise doc.error(m["partition"], field_path(f, "partition"), "a file taken from the rootfs cannot go back into the rootfs")
    if template:
        raise doc.error(m["template"], field_path(f, "template"), "only files from the board folder can be templates")
    if any(c in pattern for c in "*?[") and not path.endswith("/"):
        raise doc.error(m["path"], field_path(f, "path"), "a glob copies into a directory: end the path with '/'")
    return BootFile(partition, path, rootfs=pattern, optional=optional)


def _check_template(doc: Document, node: Node, f: str, src: str, shared: bool) -> None:
    try:
        with open(src, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise doc.error(node, f, f"template {src} is not readable UTF-8 text ({exc})") from None
    for placeholder in sorted(set(PLACEHOLDER.findall(text))):
        if placeholder in SLOT_PLACEHOLDERS:
            if shared:
                raise doc.error(node, f, f"{placeholder} only works in a per-slot boot file (a per-slot partition, "
                                "or a path holding @EDGE_SLOT@)")
        elif placeholder not in GLOBAL_PLACEHOLDERS:
            raise doc.error(node, f, f"unknown placeholder {placeholder} (known: {', '.join(GLOBAL_PLACEHOLDERS + SLOT_PLACEHOLDERS)})")


# ---------------------------------------------------------------- registry
class BoardRegistry:
    """Boards by name: folders from ``extra_paths`` first (they override), then the built-in ``bsp/``.

    An extra path is either a board folder (it has ``board.yaml``) or a
    directory of board folders.
    """

    def __init__(self, extra_paths: Sequence[str] = ()) -> None:
        self.search_paths = [os.path.abspath(p) for p in extra_paths] + [BUILTIN_DIR]
        for path in self.search_paths[:-1]:
            if not os.path.isdir(path):
                raise BoardError(f"--bsp-path {path}: not a directory")
        self._folders: dict[str, str] = {}
        for base in self.search_paths:
            for folder in _board_folders(base):
                self._folders.setdefault(os.path.basename(folder), folder)
        self._cache: dict[str, Board] = {}

    def names(self) -> list[str]:
        return sorted(self._folders)

    def folder(self, name: str) -> str | None:
        return self._folders.get(name)

    def get(self, name: str) -> Board:
        board = self._cache.get(name)
        if board is None:
            folder = self._folders.get(name)
            if folder is None:
                raise BoardError(f"unknown board {name!r} (known: {', '.join(self.names()) or 'none'}; "
                                 "add a folder or pass --bsp-path)")
            board = self._cache[name] = load_board(folder)
        return board

    def all(self) -> list[Board]:
        return [self.get(name) for name in self.names()]


def _board_folders(base: str) -> Iterable[str]:
    if os.path.isfile(os.path.join(base, BOARD_FILE)):
        return [base]
    try:
        names = sorted(os.listdir(base))
    except OSError as exc:
        raise BoardError(f"{base}: cannot list board folders: {exc.strerror}") from None
    return [os.path.join(base, n) for n in names if os.path.isfile(os.path.join(base, n, BOARD_FILE))]
