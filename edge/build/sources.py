"""Root filesystem sources -- a directory, a tarball, an OCI layout, a docker archive -- as merged trees.

:class:`RootfsSource` opens a recipe's ``source`` once and hands out the
merged :class:`~edge.build.merge.RootfsTree` for a board architecture.
Every input is applied as OCI layer changesets (a directory or tarball is a
single layer), so whiteouts mean the same everywhere.  Trees are cached by
the selected image, so boards sharing an architecture -- or a single-arch
source used for several boards -- read and merge the source once; layer
blobs are cached by digest, so images sharing layers read them once.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

from edge.squashfs.errors import SquashfsError
from edge.squashfs.tree import Entry, Kind, SliceContent
from edge.squashfs.walker import walk_directory

from .blobs import BlobCache, BlobView
from .errors import SourceError
from .images import DockerArchive, ImageSelection, LayerRef, OciLayout
from .merge import RootfsTree
from .recipe import SourceSpec
from .tarstream import Member, iter_members

Progress = Callable[[int, int], None]


@dataclass
class LoadedRootfs:
    """A source merged for one architecture."""

    tree: RootfsTree
    digest: str  # source_digest in the build metadata
    platform: str  # the image platform ("" for a directory or tarball)
    config_arch: str | None  # the image config's architecture (OCI name), if any
    layers: int  # layers applied


def member_entry(member: Member, path: str, label: str) -> Entry:
    """A tar member as a tree entry; a regular file's content stays in ``path`` at the member's offset."""
    where = f"{label}: member {member.raw_name[:200]!r}"
    kind = member.kind
    content = SliceContent(path, member.data_offset, member.size) if kind is Kind.FILE else None
    target = member.linkname if kind in (Kind.HARDLINK, Kind.SYMLINK) else ""
    if kind is Kind.SYMLINK and len(target.encode("utf-8", "surrogateescape")) > 65535:
        raise SourceError(f"{where}: symlink target longer than 65535 bytes")
    if kind in (Kind.CHAR, Kind.BLOCK) and (member.major >= 4096 or member.minor >= 1 << 20):
        raise SourceError(f"{where}: device {member.major}:{member.minor} does not fit squashfs (major < 4096, minor < 2^20)")
    return Entry(member.path, kind, mode=member.mode, uid=member.uid, gid=member.gid, mtime=member.mtime,
                 xattrs=member.xattrs, content=content, target=target, major=member.major, minor=member.minor)


def tar_entries(view: BlobView, label: str) -> Iterator[Entry]:
    region = view.region
    for member in iter_members(region.path, region.start, region.end, label=label):
        yield member_entry(member, region.path, label)


def directory_entries(path: str, label: str, exclude: Collection[tuple[int, int]] = ()) -> Iterator[Entry]:
    """The tree under ``path``, leaving out the files and directories whose (st_dev, st_ino) is in ``exclude``
    (the build's own outputs, when the output directory lies inside a directory source)."""
    try:
        yield from walk_directory(path, exclude=exclude)
    except SquashfsError as exc:
        raise SourceError(f"{label}: {exc}") from None


class RootfsSource:
    """One recipe source, opened (indexes and manifests parsed; layers read on demand)."""

    def __init__(self, spec: SourceSpec, cache: BlobCache, *, progress: Progress | None = None,
                 exclude: Collection[tuple[int, int]] = ()) -> None:
        self.spec = spec
        self.exclude = exclude  # for a directory source: see directory_entries
        self.cache = cache
        self.progress = progress
        self.label = f"{spec.type} source {spec.written or spec.path}"
        self._image: OciLayout | DockerArchive | None = None
        if spec.type == "oci":
            self._image = OciLayout(spec.path, cache, ref=spec.ref, written=spec.written or spec.path)
        elif spec.type == "docker-archive":
            self._image = DockerArchive(spec.path, cache, ref=spec.ref, written=spec.written or spec.path)
        elif spec.type not in ("dir", "tar"):
            raise SourceError(f"unknown source type {spec.type!r}")
        self._loaded: dict[str, LoadedRootfs] = {}
        self.layers_applied = 0  # over the whole build: proves a source is merged once, not per board

    def select(self, arch: str) -> ImageSelection | None:
        """The image chosen for ``arch`` (None for a directory or tarball, which serve every arch)."""
        return None if self._image is None else self._image.select(arch)

    def load(self, arch: str) -> LoadedRootfs:
        """The merged tree for a board of architecture ``arch``; do not mutate it (copy it first)."""
        selection = self.select(arch)
        key = "plain" if selection is None else selection.digest
        loaded = self._loaded.get(key)
        if loaded is None:
            loaded = self._load_plain() if selection is None else self._load_image(selection)
            self._loaded[key] = loaded
        return loaded

    def _load_plain(self) -> LoadedRootfs:
        tree = RootfsTree()
        if self.spec.type == "dir":
            tree.apply_layer(directory_entries(self.spec.path, self.label, self.exclude), label=self.label)
            self.layers_applied += 1
            return LoadedRootfs(tree, tree_digest(tree), "", None, 1)
        size = os.path.getsize(self.spec.path)
        view = self.cache.uncompressed(self.spec.path, 0, size, label=self.label, progress=self._bytes_progress(size))
        tree.apply_layer(tar_entries(view, self.label), label=self.label)
        self.layers_applied += 1
        return LoadedRootfs(tree, view.stored_digest, "", None, 1)

    def _load_image(self, selection: ImageSelection) -> LoadedRootfs:
        tree = RootfsTree()
        total = sum(layer.location.length for layer in selection.layers)
        report = self._bytes_progress(total)
        for layer in selection.layers:
            view = self._layer_view(layer, report)
            tree.apply_layer(tar_entries(view, layer.label), label=layer.label)
            self.layers_applied += 1
        return LoadedRootfs(tree, selection.digest, selection.platform, selection.config_arch, len(selection.layers))

    def _layer_view(self, layer: LayerRef, report: Callable[[int], None] | None) -> BlobView:
        loc = layer.location
        return self.cache.uncompressed(loc.path, loc.start, loc.length, label=layer.label, digest=layer.digest,
                                       diff_id=layer.diff_id, key=layer.digest or layer.diff_id, progress=report)

    def _bytes_progress(self, total: int) -> Callable[[int], None] | None:
        if self.progress is None:
            return None
        done = 0
        progress = self.progress

        def step(n: int) -> None:
            nonlocal done
            done += n
            progress(done, total)

        return step


def tree_digest(tree: RootfsTree) -> str:
    """A digest of everything an image keeps from a tree: names, types, owners, modes, times, xattrs, content.

    Used as the source digest of a directory source (which has no digest of
    its own).  Hard-linked names hash as links to their first name.
    """
    h = hashlib.sha256()
    first: dict[int, str] = {}
    for path, node in tree.walk():
        e = node.entry
        if e.kind is not Kind.DIR:
            holder = first.setdefault(id(node), path)
            if holder != path:
                h.update(f"{path}\0hardlink\0{holder}\n".encode("utf-8", "surrogateescape"))
                continue
        h.update(f"{path}\0{e.kind.value}\0{e.mode:o}\0{e.uid}\0{e.gid}\0{e.mtime}\0{e.target}\0{e.major}:{e.minor}\0".encode("utf-8", "surrogateescape"))
        for name, value in e.xattrs:
            h.update(name.encode("utf-8", "surrogateescape") + b"=" + value.hex().encode() + b"\0")
        if e.content is not None:
            h.update(f"{e.content.size}\0{e.content.sha256().hex()}".encode())
        h.update(b"\n")
    return f"sha256:{h.hexdigest()}"
