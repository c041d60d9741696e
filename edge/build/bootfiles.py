"""Boot files: the board's boot partition content for one image, rendered per slot.

A board lists its boot files in ``board.yaml``: files from the board folder
(``src``; ``template: true`` ones get ``@EDGE_...@`` placeholders filled in)
and files taken from the image (``rootfs``: a kernel, firmware, device
trees; a glob copies a set).  A file aimed at a per-slot boot partition
(``boot_a``/``boot_b``) is rendered once per slot, with ``@EDGE_SLOT@`` and
``@EDGE_ROOT@`` (that slot's ``root=``) filled in; a file aimed at
``rootfs`` is rendered into the image itself.  Later entries override
earlier ones at the same destination, so a board's own ``config.txt`` can
replace one a firmware glob brought along.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from bsp.boards import ROOTFS_TARGET, Board, BootFile
from edge.squashfs.tree import Kind

from .errors import BuildError
from .merge import RootfsTree, glob_regex


@dataclass(frozen=True)
class BootOutput:
    """One file of a boot partition."""

    partition: str  # the partition's name in board.yaml
    path: str  # path inside the partition
    data: bytes
    slot: str | None = None  # the slot this file belongs to (per-slot partition or per-slot path); None: shared

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class RenderContext:
    """The values placeholders take for one image on one board."""

    board: Board
    image_name: str
    image_version: str
    kernel_cmdline: tuple[str, ...]  # the board's, then the recipe's extras

    def values(self, slot: str | None) -> dict[str, str]:
        values = {
            "@EDGE_KERNEL_CMDLINE@": " ".join(self.kernel_cmdline),
            "@EDGE_BOARD@": self.board.name,
            "@EDGE_COMPATIBLE@": self.board.compatible,
            "@EDGE_ARCH@": self.board.arch,
            "@EDGE_IMAGE_NAME@": self.image_name,
            "@EDGE_IMAGE_VERSION@": self.image_version,
            "@EDGE_ROOT_A@": self.board.rootfs_partition("A").root or "",
            "@EDGE_ROOT_B@": self.board.rootfs_partition("B").root or "",
        }
        if slot is not None:
            values["@EDGE_SLOT@"] = slot
            values["@EDGE_ROOT@"] = self.board.rootfs_partition(slot).root or ""
        return values


def render(text: str, values: dict[str, str]) -> str:
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


def rootfs_templates(ctx: RenderContext) -> list[tuple[str, bytes]]:
    """(image path, content) of the board files that go into the image itself."""
    out = []
    for spec in ctx.board.boot_files:
        if spec.partition == ROOTFS_TARGET:
            assert spec.src is not None
            data = _read_board_file(spec.src)
            if spec.template:
                data = render(data.decode("utf-8"), ctx.values(None)).encode("utf-8")
            out.append((spec.path.strip("/"), data))
    return out


def boot_outputs(ctx: RenderContext, tree: RootfsTree) -> tuple[list[BootOutput], list[str]]:
    """Every boot partition file for this image (sorted), and warnings.

    A required file the image lacks is an error.  Optional ones (a board
    lists the places several distributions keep kernels and firmware) may be
    missing, but a boot partition that got nothing at all from the image
    earns a warning: it holds no kernel.
    """
    files: dict[tuple[str, str], tuple[bytes, str | None]] = {}
    wanted: dict[str, list[str]] = {}  # partition -> rootfs patterns asked for
    got: set[str] = set()  # partitions that received a file from the image
    for spec in ctx.board.boot_files:
        if spec.partition == ROOTFS_TARGET:
            continue
        found: list[tuple[str, bytes]] = []
        raw = b""
        if spec.src is not None:
            raw = _read_board_file(spec.src)
        else:
            assert spec.rootfs is not None
            found = _from_rootfs(tree, spec)
            if not found and not spec.optional:
                raise BuildError(f"board {ctx.board.name}: boot file {spec.rootfs} is not in the image (board.yaml requires it)")
        for part in ctx.board.boot_targets(spec.partition):
            slots: list[str | None] = [part.slot] if part.slot else ["A", "B"] if "@EDGE_SLOT@" in spec.path else [None]
            for slot in slots:
                values = ctx.values(slot)
                if spec.src is not None:
                    data = render(raw.decode("utf-8"), values).encode("utf-8") if spec.template else raw
                    files[(part.name, _clean(render(spec.path, values)))] = (data, slot)
                    continue
                assert spec.rootfs is not None
                wanted.setdefault(part.name, []).append(spec.rootfs)
                if found:
                    got.add(part.name)
                for rel, data in found:
                    files[(part.name, _clean(render(rel, values)))] = (data, slot)
    empty: dict[tuple[str, ...], list[str]] = {}  # partitions that got nothing, by what they asked for
    for name, patterns in wanted.items():
        if name not in got:
            empty.setdefault(tuple(dict.fromkeys(patterns)), []).append(name)
    warnings = [f"board {ctx.board.name}: boot partition {' and '.join(names)} got no file from the image "
                f"(no kernel or firmware at {', '.join(patterns)})" for patterns, names in empty.items()]
    outputs = [BootOutput(part, path, data, slot) for (part, path), (data, slot) in sorted(files.items())]
    return outputs, warnings


def _clean(path: str) -> str:
    return "/".join(p for p in path.split("/") if p not in ("", "."))


def _read_board_file(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise BuildError(f"{path}: cannot read board file: {exc.strerror}") from None


def _from_rootfs(tree: RootfsTree, spec: BootFile) -> list[tuple[str, bytes]]:
    """(destination, content) of the image files ``spec.rootfs`` names; symlinks resolve inside the image.

    A plain path goes to ``spec.path`` (or into it, by base name, when that
    ends in '/').  A glob copies every matching regular file into the
    directory ``spec.path`` by base name; with ``**`` the part below the
    pattern's fixed leading directories is kept.
    """
    assert spec.rootfs is not None
    pattern = spec.rootfs.strip("/")
    if not any(c in pattern for c in "*?["):
        data = _file_bytes(tree, pattern)
        if data is None:
            return []
        dest = spec.path + pattern.rsplit("/", 1)[-1] if spec.path.endswith("/") else spec.path
        return [(dest, data)]
    static = []
    for part in pattern.split("/"):
        if any(c in part for c in "*?["):
            break
        static.append(part)
    base = "/".join(static)
    keep_dirs = "**" in pattern
    regex = glob_regex(pattern)
    out = []
    for path, node in tree.walk():
        if not path or not regex.fullmatch(path) or node.entry.kind is Kind.DIR:
            continue
        data = _file_bytes(tree, path)
        if data is None:
            continue  # a dangling link or a device: not a boot file
        rel = (path[len(base) + 1:] if base else path) if keep_dirs else path.rsplit("/", 1)[-1]
        out.append((spec.path + rel, data))
    return out


def _file_bytes(tree: RootfsTree, path: str) -> bytes | None:
    found = tree.resolve(path)
    if found is None:
        return None
    entry = found[1].entry
    if entry.kind is not Kind.FILE or entry.content is None:
        return None
    with entry.content.open() as fh:
        return fh.read()


def write_boot_dir(outputs: list[BootOutput], directory: str, mtime: int) -> None:
    """Write the boot files under ``directory/<partition>/<path>`` (``directory`` must not exist yet)."""
    os.makedirs(directory)
    for out in outputs:
        full = os.path.join(directory, out.partition, *out.path.split("/"))
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as fh:
            fh.write(out.data)
        os.chmod(full, 0o644)
        os.utime(full, (mtime, mtime))
