"""Build recipes: what goes into an image, validated with file, line and field in every error.

A recipe is a small YAML file (see ``docs/build.md``)::

    name: demo
    version: 1.0.0
    boards: [x86-64-efi, rpi4]
    source: {oci: ./oci, ref: base}

Paths are relative to the recipe's directory.  String values may use
``${VAR}`` / ``${VAR:-default}`` from the environment (``$$`` is a literal
``$``); the recipe is meant to hold no secrets, and nothing is looked up
anywhere else.  Unknown keys are errors.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from bsp.boards import BOARD_NAME
from edge.squashfs.compressors import DEFAULT_LEVELS, LEVEL_RANGES, WRITABLE
from edge.squashfs.errors import SquashfsError
from edge.squashfs.writer import WriterOptions, parse_block_size

from .errors import RecipeError
from .yamldoc import Document, Node, field_path

SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SOURCE_TYPES = ("dir", "tar", "oci", "docker-archive")
MAX_EPOCH = 0xFFFFFFFF  # squashfs timestamps are 32-bit

RECIPE_KEYS = (
    "name", "version", "boards", "source", "overlays", "files", "remove",
    "kernel_cmdline", "squashfs", "source_date_epoch", "arch_check",
)


@dataclass(frozen=True)
class SourceSpec:
    """Where the root filesystem comes from: exactly one of the four source types."""

    type: str  # dir | tar | oci | docker-archive
    path: str  # absolute
    ref: str | None = None  # OCI tag / docker RepoTag, when the input holds several images
    written: str = ""  # the path as the recipe wrote it (for messages and metadata)


@dataclass(frozen=True)
class OverlaySpec:
    """A directory, tarball or single file laid over the root filesystem at ``dest``."""

    src: str  # absolute
    kind: str = "dir"  # dir | tar | file
    dest: str = ""  # image path ("" = the root; for a file, its own path)
    owner: tuple[int, int] | None = (0, 0)  # None: keep the owners on disk / in the tarball
    mode: int | None = None  # single files only
    written: str = ""


@dataclass(frozen=True)
class FileSpec:
    """An inline file, directory or symlink."""

    path: str  # image path, normalised, relative to the root
    kind: str  # file | dir | symlink
    content: bytes = b""
    target: str = ""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int | None = None  # None: source_date_epoch, or 0


@dataclass(frozen=True)
class SquashfsSpec:
    compressor: str = "zstd"
    level: int | None = None  # None: the compressor's default
    block_size: int = 128 * 1024

    @property
    def resolved_level(self) -> int:
        return self.level if self.level is not None else DEFAULT_LEVELS[self.compressor]


@dataclass(frozen=True)
class Recipe:
    path: str
    name: str
    version: str
    boards: tuple[str, ...]
    source: SourceSpec
    overlays: tuple[OverlaySpec, ...] = ()
    files: tuple[FileSpec, ...] = ()
    remove: tuple[str, ...] = ()
    kernel_cmdline: tuple[str, ...] = ()
    squashfs: SquashfsSpec = field(default_factory=SquashfsSpec)
    source_date_epoch: int | None = None
    arch_check: bool = True


def load_recipe(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Recipe:
    """Parse and validate the recipe at ``path``; ``env`` feeds ``${VAR}`` (default: ``os.environ``).

    ``source_date_epoch`` falls back to ``$SOURCE_DATE_EPOCH`` when the recipe
    does not set it.
    """
    environ = dict(os.environ if env is None else env)
    doc = Document(os.fspath(path), RecipeError, env=environ)
    top = doc.mapping(doc.root, "", required=("name", "version", "boards", "source"), allowed=RECIPE_KEYS)

    name = doc.string(top["name"], "name", pattern=NAME, hint="letters, digits, '.', '_', '-' (used in file names)")
    version = doc.string(top["version"], "version", pattern=SEMVER, hint="a semantic version MAJOR.MINOR.PATCH (e.g. 1.0.0)")
    boards = _boards(doc, top["boards"])
    source = _source(doc, top["source"])
    overlays = tuple(_overlay(doc, item, field_path("overlays", i))
                     for i, item in enumerate(doc.sequence(top["overlays"], "overlays"))) if "overlays" in top else ()
    files = tuple(_file(doc, item, field_path("files", i))
                  for i, item in enumerate(doc.sequence(top["files"], "files"))) if "files" in top else ()
    seen: dict[str, int] = {}
    for i, spec in enumerate(files):
        if spec.path in seen:
            raise doc.error(top["files"].value[i], field_path("files", i), f"/{spec.path} is already defined by files[{seen[spec.path]}]")
        seen[spec.path] = i
    remove = tuple(_remove(doc, item, field_path("remove", i))
                   for i, item in enumerate(doc.sequence(top["remove"], "remove", allow_single=True))) if "remove" in top else ()
    cmdline: tuple[str, ...] = ()
    if "kernel_cmdline" in top:
        node = top["kernel_cmdline"]
        parts = [doc.string(item, field_path("kernel_cmdline", i)) for i, item in enumerate(doc.sequence(node, "kernel_cmdline", allow_single=True))]
        cmdline = tuple(arg for part in parts for arg in part.split())
        for arg in cmdline:
            if any(ord(c) < 0x20 or c in "\"'\\;`$" for c in arg):
                raise doc.error(node, "kernel_cmdline", f"{arg!r}: quotes, backslashes, '$', ';', '`' and control characters "
                                "are not allowed (the line goes into cmdline.txt, extlinux.conf and GRUB scripts)")
    squashfs = _squashfs(doc, top["squashfs"]) if "squashfs" in top else SquashfsSpec()
    epoch: int | None = None
    if "source_date_epoch" in top:
        epoch = doc.integer(top["source_date_epoch"], "source_date_epoch", minimum=0, maximum=MAX_EPOCH)
    elif environ.get("SOURCE_DATE_EPOCH"):
        text = environ["SOURCE_DATE_EPOCH"]
        if not text.isdigit() or int(text) > MAX_EPOCH:
            raise RecipeError(f"{doc.name}: SOURCE_DATE_EPOCH={text!r} from the environment is not an epoch (0..{MAX_EPOCH})")
        epoch = int(text)
    arch_check = doc.boolean(top["arch_check"], "arch_check") if "arch_check" in top else True
    return Recipe(
        path=os.path.abspath(doc.path), name=name, version=version, boards=boards, source=source,
        overlays=overlays, files=files, remove=remove, kernel_cmdline=cmdline, squashfs=squashfs,
        source_date_epoch=epoch, arch_check=arch_check,
    )


def _boards(doc: Document, node: Node) -> tuple[str, ...]:
    items = doc.sequence(node, "boards", allow_single=True, non_empty=True)
    names: list[str] = []
    for i, item in enumerate(items):
        board = doc.string(item, field_path("boards", i), pattern=BOARD_NAME, hint="a board name such as rpi4 (see 'edge boards')")
        if board in names:
            raise doc.error(item, field_path("boards", i), f"board {board!r} is listed twice")
        names.append(board)
    return tuple(names)


def _source(doc: Document, node: Node) -> SourceSpec:
    mapping = doc.mapping(node, "source", allowed=SOURCE_TYPES + ("ref",))
    given = [key for key in SOURCE_TYPES if key in mapping]
    if len(given) != 1:
        what = "none" if not given else " and ".join(given)
        raise doc.error(node, "source", f"needs exactly one of {', '.join(SOURCE_TYPES)} (got {what})")
    kind = given[0]
    written = doc.string(mapping[kind], f"source.{kind}")
    if not written:
        raise doc.error(mapping[kind], f"source.{kind}", "must not be empty")
    path = doc.relative_path(written)
    if not os.path.exists(path):
        raise doc.error(mapping[kind], f"source.{kind}", f"{written} does not exist (paths are relative to the recipe)")
    if kind == "dir" and not os.path.isdir(path):
        raise doc.error(mapping[kind], "source.dir", f"{written} is not a directory")
    if kind in ("tar", "docker-archive") and not os.path.isfile(path):
        raise doc.error(mapping[kind], f"source.{kind}", f"{written} is not a file")
    ref = None
    if "ref" in mapping:
        if kind not in ("oci", "docker-archive"):
            raise doc.error(mapping["ref"], "source.ref", f"only an oci or docker-archive source has refs, not {kind}")
        ref = doc.string(mapping["ref"], "source.ref")
        if not ref:
            raise doc.error(mapping["ref"], "source.ref", "must not be empty")
    return SourceSpec(kind, path, ref, written)


def image_path(doc: Document, node: Node, field: str, *, allow_root: bool = False) -> str:
    """An absolute path inside the image, normalised to the relative form the tree uses."""
    text = doc.string(node, field)
    if not text.startswith("/"):
        raise doc.error(node, field, f"{text!r} must be an absolute path in the image (start with '/')")
    parts = []
    for part in text.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise doc.error(node, field, f"{text!r} must not contain '..'")
        parts.append(part)
    if not parts and not allow_root:
        raise doc.error(node, field, "must not be the image root")
    return "/".join(parts)


def _owner(doc: Document, node: Node, field: str, *, allow_keep: bool) -> tuple[int, int] | None:
    text = doc.string(node, field)
    if allow_keep and text == "keep":
        return None
    match = re.fullmatch(r"(\d{1,10}):(\d{1,10})", text)
    if not match or int(match.group(1)) > 0xFFFFFFFF or int(match.group(2)) > 0xFFFFFFFF:
        hint = "'keep' or " if allow_keep else ""
        raise doc.error(node, field, f"{text!r} is not an owner: write {hint}numeric UID:GID such as \"0:0\"")
    return int(match.group(1)), int(match.group(2))


def _mode(doc: Document, node: Node, field: str) -> int:
    """Modes are octal however YAML typed them: 0644, 644, "0755" and 0o755 all mean what they say."""
    text = node.text if node.text is not None and not node.is_map and not node.is_list else None
    if text is None:
        raise doc.error(node, field, "expected an octal mode such as 0644")
    digits = text.strip().lower().removeprefix("0o")
    if not re.fullmatch(r"[0-7]{1,5}", digits) or int(digits, 8) > 0o7777:
        raise doc.error(node, field, f"{text!r} is not an octal permission mode (0000..7777)")
    return int(digits, 8)


def _overlay(doc: Document, node: Node, field: str) -> OverlaySpec:
    if not node.is_map:
        written = doc.string(node, field)
        mapping: dict[str, Node] = {"src": node}
    else:
        mapping = doc.mapping(node, field, required=("src",), allowed=("dest", "owner", "mode"))
        written = doc.string(mapping["src"], field_path(field, "src"))
    src = doc.relative_path(written)
    if not os.path.exists(src):
        raise doc.error(mapping["src"], field, f"{written} does not exist (paths are relative to the recipe)")
    dest = image_path(doc, mapping["dest"], field_path(field, "dest"), allow_root=True) if "dest" in mapping else ""
    kind = "dir" if os.path.isdir(src) else "tar" if _looks_like_tar(src) else "file"
    is_file = kind == "file"
    if is_file and not dest:
        raise doc.error(node, field, f"{written} is a single file: give its place in the image with 'dest'")
    owner: tuple[int, int] | None = (0, 0)
    if "owner" in mapping:
        owner = _owner(doc, mapping["owner"], field_path(field, "owner"), allow_keep=True)
    elif kind == "tar":
        owner = None  # a tarball carries the owners it means
    mode = None
    if "mode" in mapping:
        if not is_file:
            raise doc.error(mapping["mode"], field_path(field, "mode"), "only a single-file overlay takes a mode")
        mode = _mode(doc, mapping["mode"], field_path(field, "mode"))
    return OverlaySpec(src, kind, dest, owner, mode, written)


def _looks_like_tar(path: str) -> bool:
    return os.path.isfile(path) and re.search(r"\.(tar|tgz|txz|tzst|tar\.(gz|xz|zst|zstd|bz2))$", path) is not None


def _file(doc: Document, node: Node, field: str) -> FileSpec:
    mapping = doc.mapping(node, field, required=("path",),
                          allowed=("type", "content", "content_base64", "target", "mode", "owner", "mtime"))
    path = image_path(doc, mapping["path"], field_path(field, "path"))
    kind = "file"
    if "type" in mapping:
        kind = doc.string(mapping["type"], field_path(field, "type"))
        if kind not in ("file", "dir", "symlink"):
            raise doc.error(mapping["type"], field_path(field, "type"), f"{kind!r} is not one of file, dir, symlink")
    content = b""
    target = ""
    if kind == "file":
        if "content" in mapping and "content_base64" in mapping:
            raise doc.error(node, field, "give content or content_base64, not both")
        if "target" in mapping:
            raise doc.error(mapping["target"], field_path(field, "target"), "only a symlink has a target")
        if "content" in mapping:
            content = doc.string(mapping["content"], field_path(field, "content")).encode("utf-8")
        elif "content_base64" in mapping:
            text = doc.string(mapping["content_base64"], field_path(field, "content_base64"))
            try:
                content = base64.b64decode("".join(text.split()), validate=True)
            except (binascii.Error, ValueError):
                raise doc.error(mapping["content_base64"], field_path(field, "content_base64"), "is not valid base64") from None
    else:
        for key in ("content", "content_base64"):
            if key in mapping:
                raise doc.error(mapping[key], field_path(field, key), f"a {kind} has no content")
        if kind == "symlink":
            if "target" not in mapping:
                raise doc.error(node, field_path(field, "target"), "a symlink needs a target")
            target = doc.string(mapping["target"], field_path(field, "target"))
            if not target or "\0" in target:
                raise doc.error(mapping["target"], field_path(field, "target"), "must be a non-empty link text")
        elif "target" in mapping:
            raise doc.error(mapping["target"], field_path(field, "target"), "only a symlink has a target")
    default_mode = {"file": 0o644, "dir": 0o755, "symlink": 0o777}[kind]
    mode = _mode(doc, mapping["mode"], field_path(field, "mode")) if "mode" in mapping else default_mode
    uid, gid = 0, 0
    if "owner" in mapping:
        owner = _owner(doc, mapping["owner"], field_path(field, "owner"), allow_keep=False)
        assert owner is not None
        uid, gid = owner
    mtime = doc.integer(mapping["mtime"], field_path(field, "mtime"), minimum=0, maximum=MAX_EPOCH) if "mtime" in mapping else None
    return FileSpec(path, kind, content, target, mode, uid, gid, mtime)


def _remove(doc: Document, node: Node, field: str) -> str:
    text = doc.string(node, field)
    if not text.startswith("/"):
        raise doc.error(node, field, f"{text!r} must be an absolute path or glob in the image (start with '/')")
    if any(part == ".." for part in text.split("/")):
        raise doc.error(node, field, f"{text!r} must not contain '..'")
    if not text.strip("/"):
        raise doc.error(node, field, "cannot remove the image root")
    return text


def _squashfs(doc: Document, node: Node) -> SquashfsSpec:
    mapping = doc.mapping(node, "squashfs", allowed=("compression", "level", "block_size"))
    compressor = "zstd"
    if "compression" in mapping:
        compressor = doc.string(mapping["compression"], "squashfs.compression")
        if compressor not in WRITABLE:
            raise doc.error(mapping["compression"], "squashfs.compression", f"{compressor!r} is not one of {', '.join(WRITABLE)}")
    level = None
    if "level" in mapping:
        lo, hi = LEVEL_RANGES[compressor]
        level = doc.integer(mapping["level"], "squashfs.level", minimum=lo, maximum=hi)
    block_size = 128 * 1024
    if "block_size" in mapping:
        bs_node = mapping["block_size"]
        text = str(bs_node.value) if isinstance(bs_node.value, int) and not isinstance(bs_node.value, bool) else doc.string(bs_node, "squashfs.block_size")
        try:
            block_size = parse_block_size(text)
            WriterOptions(block_size=block_size).validate()
        except SquashfsError as exc:
            raise doc.error(bs_node, "squashfs.block_size", str(exc)) from None
    return SquashfsSpec(compressor, level, block_size)
