"""``edge build``: a recipe in, one squashfs image, metadata file and boot directory per board out.

Order of assembly for each board (``docs/build.md``):

1. the source, merged (read once per architecture, shared by every board);
2. the board's ``rootfs/`` overlay (owned by root, mtimes set to the build epoch);
3. the recipe's ``overlays``, in order;
4. the recipe's inline ``files``;
5. the recipe's ``remove`` paths and globs;
6. what Edge adds: ``/usr/lib/edge/image.json`` and the board's rootfs templates.

Then the architecture check, the boot files, and the image.  Outputs are
written to a staging directory inside OUTDIR and moved into place only
when every board has been built, so a failed build leaves no partial files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from bsp.boards import Board, BoardRegistry
from edge import __version__
from edge.fsutil import sha256_prefix
from edge.squashfs.errors import SquashfsError
from edge.squashfs.tree import BytesContent, Entry, FileContent, Kind
from edge.squashfs.walker import file_ids
from edge.squashfs.writer import WriterOptions, write_image

from .blobs import BlobCache, BlobStats
from .bootfiles import RenderContext, boot_outputs, rootfs_templates, write_boot_dir
from .elfcheck import CheckedBinary, check_architecture
from .errors import ArchMismatchError, BuildError, SourceError
from .images import OCI_ARCH
from .recipe import BOARD_NAME, OverlaySpec, Recipe
from .sources import LoadedRootfs, RootfsSource, directory_entries, tar_entries

IMAGE_INFO_PATH = "usr/lib/edge/image.json"


class ProgressBar(Protocol):
    def update(self, done: int, total: int | None = None) -> None: ...
    def close(self) -> None: ...


ProgressFactory = Callable[[str], ProgressBar]
Log = Callable[[str], None]


@dataclass
class BoardBuild:
    """What one board's build produced."""

    board: str
    image: str  # path of NAME-VERSION-BOARD.sqfs
    metadata_file: str  # path of NAME-VERSION-BOARD.json
    boot_dir: str  # path of NAME-VERSION-BOARD.boot/
    metadata: dict[str, Any]
    checked_binaries: list[CheckedBinary] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class BuildResult:
    recipe: str
    outdir: str
    boards: list[BoardBuild]
    layers_applied: int  # over the whole build (a source is merged once per architecture, not per board)
    blobs: BlobStats
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "outdir": self.outdir,
            "seconds": round(self.seconds, 3),
            "layers_applied": self.layers_applied,
            "blobs_read": self.blobs.blobs_read,
            "boards": [
                {"board": b.board, "image": b.image, "metadata_file": b.metadata_file, "boot_dir": b.boot_dir,
                 "metadata": b.metadata, "warnings": b.warnings,
                 "checked_binaries": [dataclasses.asdict(c) for c in b.checked_binaries]}
                for b in self.boards
            ],
        }


def _own_outputs(outdir: str, scratch: Sequence[str], stems: Sequence[str]) -> set[tuple[int, int]]:
    """(st_dev, st_ino) of what this build writes: the output directory, its ``scratch`` directories (the
    staging directory, the spool of decompressed layers under --work-dir) and the boards' outputs from an
    earlier build. A directory source or overlay that contains them leaves them out, so building into a
    folder inside the source (or into the source folder itself, the default ``-o .`` with
    ``source: {dir: .}``) does not pack the last build into the next one."""
    return file_ids(outdir, *scratch, *(os.path.join(outdir, stem + ext) for stem in stems
                                        for ext in (".sqfs", ".json", ".boot")))


def output_stem(recipe: Recipe, board: str) -> str:
    """``NAME-VERSION-BOARD``: the base name of a board's three outputs."""
    return f"{recipe.name}-{recipe.version}-{board}"


def build(
    recipe: Recipe,
    *,
    boards: Sequence[str] | None = None,
    outdir: str = ".",
    bsp_paths: Sequence[str] = (),
    arch_check: bool | None = None,
    work_dir: str | None = None,
    workers: int = 0,
    progress: ProgressFactory | None = None,
    log: Log | None = None,
    clock: Callable[[], float] = time.time,
) -> BuildResult:
    """Build ``recipe`` for ``boards`` (default: the recipe's) into ``outdir``.

    ``arch_check`` overrides the recipe's ``arch_check``; ``work_dir`` holds
    the blob cache (default: the system temporary directory); ``workers`` is
    the compression thread count (0: one per CPU).
    """
    started = time.monotonic()
    say = log or (lambda _msg: None)
    names = list(boards) if boards else list(recipe.boards)
    for name in names:
        if not BOARD_NAME.fullmatch(name):
            raise BuildError(f"{name!r} is not a board name")
    if len(set(names)) != len(names):
        raise BuildError(f"a board is listed twice: {', '.join(names)}")
    registry = BoardRegistry(bsp_paths)
    board_list = [registry.get(name) for name in names]  # every board.yaml is validated before any work
    check = recipe.arch_check if arch_check is None else arch_check
    epoch = recipe.source_date_epoch
    build_time = epoch if epoch is not None else int(clock())
    outdir = os.path.abspath(outdir)
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as exc:
        raise BuildError(f"{outdir}: cannot create the output directory: {exc.strerror}") from None
    staging = tempfile.mkdtemp(prefix=".edge-build-", dir=outdir)
    results: list[BoardBuild] = []
    source_bar = progress("reading source") if progress is not None else None
    try:
        with BlobCache(work_dir) as cache:
            own = _own_outputs(outdir, [staging, cache.dir], [output_stem(recipe, b.name) for b in board_list])
            source = RootfsSource(recipe.source, cache, progress=source_bar.update if source_bar is not None else None,
                                  exclude=own)
            overlays = _OverlayCache(recipe, cache, exclude=own)
            # boards grouped by architecture: the source is merged once per group
            for arch in sorted({b.arch for b in board_list}):
                group = [b for b in board_list if b.arch == arch]
                loaded = source.load(arch)
                say(f"{arch}: merged {recipe.source.type} source {loaded.digest}" + (f" ({loaded.platform})" if loaded.platform else "")
                    + f": {loaded.layers} layer(s), {len(loaded.tree)} entries; building {', '.join(b.name for b in group)}")
                for board in group:
                    results.append(_build_board(recipe, board, loaded, overlays, staging, outdir, build_time, check,
                                                workers, progress))
            layers_applied = source.layers_applied
            stats = cache.stats
        _commit(staging, outdir, results)
    finally:
        if source_bar is not None:
            source_bar.close()
        shutil.rmtree(staging, ignore_errors=True)
    order = {name: i for i, name in enumerate(names)}
    results.sort(key=lambda r: order[r.board])
    return BuildResult(recipe.path, outdir, results, layers_applied, stats, time.monotonic() - started)


def _build_board(recipe: Recipe, board: Board, loaded: LoadedRootfs, overlays: "_OverlayCache", staging: str,
                 outdir: str, build_time: int, arch_check: bool, workers: int,
                 progress: ProgressFactory | None) -> BoardBuild:
    epoch = recipe.source_date_epoch
    file_mtime = epoch if epoch is not None else 0
    warnings: list[str] = []
    if arch_check and loaded.config_arch is not None and loaded.config_arch != OCI_ARCH[board.arch]:
        raise ArchMismatchError(
            f"board {board.name} runs {board.arch} ({OCI_ARCH[board.arch]}), but the source image is for "
            f"{loaded.config_arch} ({loaded.platform or 'its config says so'}); build the image for linux/{OCI_ARCH[board.arch]} "
            "or skip the check with --no-arch-check")
    tree = loaded.tree.copy(implicit_mtime=file_mtime)
    # 2. the board's overlay
    if board.rootfs_overlay is not None:
        tree.apply_layer(_board_overlay_entries(board.rootfs_overlay, file_mtime), label=f"board {board.name} rootfs/")
    for part in board.partitions:  # mount points of the board's partitions must exist in a read-only root
        if part.mount is not None:
            path = part.mount.strip("/")
            node = tree.entry(path)
            if node is None:
                tree.add(Entry(path, Kind.DIR, mode=0o755, mtime=file_mtime))
            elif node.kind is not Kind.DIR:
                warnings.append(f"board {board.name}: mount point {part.mount} of partition {part.name} is not a directory in the image")
    # 3. recipe overlays, in order
    for index, spec in enumerate(recipe.overlays):
        tree.apply_layer(overlays.entries(index, spec), label=f"overlay {spec.written}")
    # 4. inline files
    for item in recipe.files:
        kind = {"file": Kind.FILE, "dir": Kind.DIR, "symlink": Kind.SYMLINK}[item.kind]
        tree.add(Entry(item.path, kind, mode=item.mode, uid=item.uid, gid=item.gid,
                       mtime=item.mtime if item.mtime is not None else file_mtime,
                       content=BytesContent(item.content) if kind is Kind.FILE else None, target=item.target))
    # 5. removals
    for pattern in recipe.remove:
        if not tree.remove_glob(pattern):
            warnings.append(f"remove {pattern}: nothing matched")
    # 6. what Edge adds
    ctx = RenderContext(board, recipe.name, recipe.version, board.kernel_cmdline + recipe.kernel_cmdline)
    info = {"name": recipe.name, "version": recipe.version, "board": board.name, "compatible": board.compatible, "arch": board.arch}
    tree.add(Entry(IMAGE_INFO_PATH, Kind.FILE, mode=0o644, mtime=file_mtime,
                   content=BytesContent((json.dumps(info, indent=2, sort_keys=True) + "\n").encode())))
    for path, data in rootfs_templates(ctx):
        tree.add(Entry(path, Kind.FILE, mode=0o644, mtime=file_mtime, content=BytesContent(data)))
    checked: list[CheckedBinary] = []
    if arch_check:
        checked = check_architecture(tree, board.arch, board.name, ctx.kernel_cmdline)
    outputs, boot_warnings = boot_outputs(ctx, tree)
    warnings.extend(boot_warnings)

    stem = output_stem(recipe, board.name)
    options = WriterOptions(compressor=recipe.squashfs.compressor, level=recipe.squashfs.level,
                            block_size=recipe.squashfs.block_size, mtime=epoch, workers=workers)
    squashfs_tree = tree.to_tree()
    staged_image = os.path.join(staging, stem + ".sqfs")
    bar = progress(f"{board.name}: writing {stem}.sqfs") if progress is not None else None
    try:
        result = write_image(squashfs_tree, staged_image, options, progress=bar.update if bar is not None else None)
    except SquashfsError as exc:
        raise BuildError(f"board {board.name}: cannot write the image: {exc}") from None
    finally:
        if bar is not None:
            bar.close()
    for skipped in result.skipped_xattrs:
        warnings.append(f"xattr not representable in squashfs, dropped: {skipped}")
    digest, size = _sha256_file(staged_image)
    write_boot_dir(outputs, os.path.join(staging, stem + ".boot"), build_time)
    metadata: dict[str, Any] = {
        "name": recipe.name,
        "version": recipe.version,
        "board": board.name,
        "compatible": board.compatible,
        "arch": board.arch,
        "sha256": digest,
        "size": size,
        "compressor": options.compressor,
        "level": recipe.squashfs.resolved_level,
        "block_size": options.block_size,
        "source_digest": loaded.digest,
        "source_type": recipe.source.type,
        "source_platform": loaded.platform,
        "entry_count": len(squashfs_tree),
        "build_time": build_time,
        "edge_version": __version__,
        "image": stem + ".sqfs",
        "boot_dir": stem + ".boot",
        "boot_control": board.boot_control.mechanism,
        "kernel_cmdline": " ".join(ctx.kernel_cmdline),
        "boot_files": [{"partition": o.partition, "path": o.path, "slot": o.slot, "sha256": o.sha256, "size": len(o.data)}
                       for o in outputs],
    }
    with open(os.path.join(staging, stem + ".json"), "w", encoding="utf-8") as fh:
        json.dump(metadata, fh, indent=2, sort_keys=True)
        fh.write("\n")
    return BoardBuild(board.name, os.path.join(outdir, stem + ".sqfs"), os.path.join(outdir, stem + ".json"),
                      os.path.join(outdir, stem + ".boot"), metadata, checked, warnings)


def _sha256_file(path: str) -> tuple[str, int]:
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        return sha256_prefix(fd, size), size
    finally:
        os.close(fd)


def _commit(staging: str, outdir: str, results: list[BoardBuild]) -> None:
    """Move every staged output into OUTDIR (replacing older ones of the same name)."""
    for result in results:
        stem = os.path.basename(result.image)[: -len(".sqfs")]
        boot_final = os.path.join(outdir, stem + ".boot")
        if os.path.lexists(boot_final):
            old = tempfile.mkdtemp(prefix=".edge-old-", dir=outdir)
            os.replace(boot_final, os.path.join(old, "boot"))
            shutil.rmtree(old, ignore_errors=True)
        os.replace(os.path.join(staging, stem + ".boot"), boot_final)
        os.replace(os.path.join(staging, stem + ".sqfs"), result.image)
        os.replace(os.path.join(staging, stem + ".json"), result.metadata_file)


# ---------------------------------------------------------------- overlays
def _board_overlay_entries(root: str, mtime: int) -> Iterator[Entry]:
    """A board's ``rootfs/`` as entries: root-owned, plain modes, no host xattrs, fixed mtimes.

    The folder comes from a source checkout, whose owners, umask and
    checkout times say nothing about the image.
    """
    for entry in directory_entries(root, f"board overlay {root}"):
        if entry.path == "":
            continue
        if entry.kind is Kind.DIR:
            mode = 0o755
        elif entry.kind is Kind.FILE:
            mode = 0o755 if entry.mode & 0o111 else 0o644
        else:
            mode = entry.mode
        yield replace(entry, mode=mode, uid=0, gid=0, mtime=mtime, xattrs=())


class _OverlayCache:
    """The recipe's overlays as entry lists, read once per build and reused for every board."""

    def __init__(self, recipe: Recipe, cache: BlobCache, exclude: Collection[tuple[int, int]] = ()) -> None:
        self.recipe = recipe
        self.cache = cache
        self.exclude = exclude  # the build's own outputs (see _own_outputs)
        self._entries: dict[int, list[Entry]] = {}

    def entries(self, index: int, spec: OverlaySpec) -> list[Entry]:
        cached = self._entries.get(index)
        if cached is None:
            cached = self._entries[index] = list(self._read(spec))
        return cached

    def _read(self, spec: OverlaySpec) -> Iterator[Entry]:
        label = f"overlay {spec.written}"
        dest = spec.dest

        def place(entry: Entry) -> Entry | None:
            if entry.path == "":
                return None  # the overlay folder's own owner and mode are not the image's
            path = f"{dest}/{entry.path}" if dest else entry.path
            target = entry.target
            if entry.kind is Kind.HARDLINK:
                target = f"{dest}/{target}" if dest else target
            uid, gid = (entry.uid, entry.gid) if spec.owner is None else spec.owner
            return replace(entry, path=path, target=target, uid=uid, gid=gid)

        if spec.kind == "dir":
            entries: Iterator[Entry] = directory_entries(spec.src, label, self.exclude)
        elif spec.kind == "tar":
            try:
                size = os.path.getsize(spec.src)
            except OSError as exc:
                raise SourceError(f"{label}: cannot read: {exc.strerror}") from None
            entries = tar_entries(self.cache.uncompressed(spec.src, 0, size, label=label), label)
        else:  # a single file placed at dest
            try:
                st = os.stat(spec.src)
            except OSError as exc:
                raise SourceError(f"{label}: cannot read: {exc.strerror}") from None
            mode = spec.mode if spec.mode is not None else stat.S_IMODE(st.st_mode)
            uid, gid = spec.owner if spec.owner is not None else (st.st_uid, st.st_gid)
            yield Entry(dest, Kind.FILE, mode=mode, uid=uid, gid=gid, mtime=int(st.st_mtime),
                        content=FileContent(spec.src, st.st_size))
            return
        for entry in entries:
            placed = place(entry)
            if placed is not None:
                yield placed
