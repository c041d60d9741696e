#!/usr/bin/env python3
"""Realistic Debian root filesystems for the benchmarks, built once with debootstrap and cached.

Synthetic trees flatter a squashfs writer and a delta engine alike: real root
filesystems have thousands of small files, hard links, device nodes, ELF
binaries and byte-compiled Python, and real updates touch a scattered subset
of them.  So the benchmarks use Debian trees (``TREES``) and the pairs a device
really sees (``PAIRS``): a security update, one added package, a release
upgrade, and a configuration-only release.

Each tree lives in ``bench/cache/rootfs/<name>/`` with a completion stamp
``<name>.stamp.json`` next to it (recipe, ``dpkg-query -W`` output, the
packages an update changed, file counts).  A tree without its stamp is
incomplete and is rebuilt; a tree with one is never touched again, so every
benchmark sees the same bytes.  Building needs root (debootstrap, chroot).

Images of the trees, built with Edge or mksquashfs at given settings, are
cached in ``bench/cache/images/`` and rebuilt when the tree, the Edge squashfs
sources or the mksquashfs version change.

    .venv/bin/python bench/rootfs.py                 # build all five trees
    .venv/bin/python bench/rootfs.py bookworm-base   # just one (and its parent)
    .venv/bin/python bench/rootfs.py --images        # also zstd images with both tools
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "bench" / "cache"
ROOTFS_DIR = CACHE / "rootfs"
IMAGES_DIR = CACHE / "images"
EDGE = REPO / ".venv" / "bin" / "edge"

MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
EXTRA_PACKAGE = "curl"  # what bookworm-plus-pkg adds: a common small tool that pulls in nine libraries
# what bookworm-config changes: a configuration-only release (a file changed, a directory and a file added,
# a symlink retargeted; no package changes). The content is fixed, so every build of the tree is the same.
CONFIG_MOTD_LINE = "Fleet release 2026.11: managed by Edge.\n"
CONFIG_FILE = ("etc/edge/app.conf", "# application settings (release 2026.11)\n[mqtt]\nbroker = mqtt.example.com\n"
               "port = 8883\nkeepalive = 60\n\n[telemetry]\ninterval = 300\n")
CONFIG_TIMEZONE = "Europe/Berlin"
IMAGE_EPOCH = 1735689600  # 2025-01-01 UTC: SOURCE_DATE_EPOCH for every cached image (clamps file times)
DEFAULT_BLOCK_SIZE = 128 * 1024
DEFAULT_LEVELS = {"zstd": 15, "gzip": 9, "xz": 6}  # both tools' defaults
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Recipe:
    """How one tree is made: debootstrap a suite, or copy a parent tree and change it in a chroot."""

    name: str
    description: str
    suite: str
    parent: str | None = None


TREES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("bookworm-base", "debootstrap --variant=minbase --include=python3 bookworm (no security updates)",
               "bookworm"),
        Recipe("bookworm-security", "bookworm-base + bookworm-security enabled + apt-get upgrade", "bookworm",
               parent="bookworm-base"),
        Recipe("bookworm-plus-pkg", f"bookworm-base + apt-get install --no-install-recommends {EXTRA_PACKAGE}",
               "bookworm", parent="bookworm-base"),
        Recipe("trixie-base", "debootstrap --variant=minbase --include=python3 trixie", "trixie"),
        Recipe("bookworm-config", f"bookworm-base + /etc/motd changed, /{CONFIG_FILE[0]} added, /etc/localtime -> "
               f"{CONFIG_TIMEZONE} (no package changes)", "bookworm", parent="bookworm-base"),
    )
}

# (old, new) pairs for the delta benchmark: what a device updates from and to.
PAIRS: dict[str, tuple[str, str]] = {
    "security": ("bookworm-base", "bookworm-security"),
    "plus-pkg": ("bookworm-base", "bookworm-plus-pkg"),
    "trixie": ("bookworm-base", "trixie-base"),
    "config": ("bookworm-base", "bookworm-config"),
}
ISSUE_PAIRS = ("security", "plus-pkg", "trixie")  # the pairs issue #5 sets its targets on


class BuildError(Exception):
    """A tree or image could not be built; the message names the log to read."""


# ---------------------------------------------------------------------------------------------- trees


def tree_path(name: str) -> Path:
    _recipe(name)
    return ROOTFS_DIR / name


def stamp_path(name: str) -> Path:
    _recipe(name)
    return ROOTFS_DIR / f"{name}.stamp.json"


def read_stamp(name: str) -> dict | None:
    """The completion stamp of ``name``, or None when the tree is missing, incomplete or older than its parent."""
    try:
        stamp = json.loads(stamp_path(name).read_text())
    except (OSError, ValueError):
        return None
    if not tree_path(name).is_dir() or stamp.get("name") != name:
        return None
    parent = TREES[name].parent
    if parent is not None:
        parent_stamp = read_stamp(parent)
        if parent_stamp is None or parent_stamp["built_at"] != stamp.get("parent_built_at"):
            return None  # the parent was rebuilt: this copy of it no longer pairs with it
    return stamp


def rootfs(name: str) -> Path:
    """The directory of tree ``name``, built (as root) first if it is missing or incomplete.

    Safe to call from several processes at once: one builds, the others wait for it.
    """
    if read_stamp(name) is None:
        with _locked(ROOTFS_DIR / f"{name}.lock"):
            if read_stamp(name) is None:
                build(name)
    return tree_path(name)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build(name: str) -> dict:
    """Build tree ``name`` from scratch (its parent first, if needed) and return its stamp."""
    recipe = _recipe(name)
    if os.geteuid() != 0:
        raise BuildError(f"building {name} needs root (debootstrap, chroot): run as root")
    parent = rootfs(recipe.parent) if recipe.parent else None
    ROOTFS_DIR.mkdir(parents=True, exist_ok=True)
    final, work, log = tree_path(name), ROOTFS_DIR / f"{name}.partial", ROOTFS_DIR / f"{name}.log"
    stamp_path(name).unlink(missing_ok=True)
    for stale in (final, work):
        _remove_tree(stale)
    log.write_text("")
    started = time.monotonic()
    print(f"==> building {name}: {recipe.description}", file=sys.stderr, flush=True)
    extra: dict = {}
    if parent is None:
        _run(["debootstrap", "--variant=minbase", "--include=python3", recipe.suite, str(work), MIRROR], log)
    else:
        _run(["cp", "-a", "--reflink=auto", str(parent), str(work)], log)
        before = _packages(work, log)
        if name == "bookworm-config":
            extra = _configure_release(work)
        else:
            with _chroot_session(work):
                if name == "bookworm-security":
                    extra = _security_upgrade(work, log, before)
                elif name == "bookworm-plus-pkg":
                    extra = _install_extra(work, log, before)
                else:
                    raise AssertionError(f"no chroot recipe for {name}")
    _make_reproducible(work, log)
    packages_text = _chroot(work, ["dpkg-query", "-W"], log, capture=True)
    os.rename(work, final)
    stamp = {
        "name": name,
        "description": recipe.description,
        "suite": recipe.suite,
        "parent": recipe.parent,
        "parent_built_at": read_stamp(recipe.parent)["built_at"] if recipe.parent else None,
        "mirror": MIRROR,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(time.monotonic() - started, 1),
        "debootstrap": _tool_version(["dpkg-query", "-W", "-f=${Version}", "debootstrap"]),
        "stats": tree_stats(final),
        **extra,
        "dpkg_query_W": packages_text,
    }
    tmp = stamp_path(name).with_suffix(".tmp")
    tmp.write_text(json.dumps(stamp, indent=1) + "\n")
    os.replace(tmp, stamp_path(name))
    print(f"==> {name}: {stamp['stats']['files']} files, {stamp['stats']['file_bytes']} bytes "
          f"in {stamp['build_seconds']} s", file=sys.stderr, flush=True)
    return stamp


def tree_stats(root: Path) -> dict[str, int]:
    """Entry counts and sizes of a tree (hard-linked files counted once in ``file_bytes``)."""
    counts = {"files": 0, "directories": 0, "symlinks": 0, "devices": 0, "other": 0, "hardlink_names": 0,
              "file_bytes": 0}
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        counts["directories"] += 1
        for entry in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            st = os.lstat(os.path.join(dirpath, entry))
            if stat.S_ISREG(st.st_mode):
                counts["files"] += 1
                if (st.st_dev, st.st_ino) in seen:
                    counts["hardlink_names"] += 1
                else:
                    seen.add((st.st_dev, st.st_ino))
                    counts["file_bytes"] += st.st_size
            elif stat.S_ISLNK(st.st_mode):
                counts["symlinks"] += 1
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                counts["devices"] += 1
            else:
                counts["other"] += 1
    return counts


def _recipe(name: str) -> Recipe:
    try:
        return TREES[name]
    except KeyError:
        raise BuildError(f"unknown tree {name!r}: choose one of {', '.join(TREES)}") from None


def _run(cmd: list[str], log: Path, *, capture: bool = False, env: dict[str, str] | None = None) -> str:
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE if capture else fh, stderr=fh, text=True, env=env)
    if proc.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise BuildError(f"{' '.join(cmd[:4])} ... failed with exit code {proc.returncode}; see {log}:\n{tail}")
    return proc.stdout if capture else ""


def _chroot(root: Path, cmd: list[str], log: Path, *, capture: bool = False) -> str:
    env = {"PATH": CHROOT_PATH, "HOME": "/root", "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive",
           "DEBCONF_NONINTERACTIVE_SEEN": "true"}
    return _run(["chroot", str(root), *cmd], log, capture=capture, env=env)


def _packages(root: Path, log: Path) -> dict[str, str]:
    out = _chroot(root, ["dpkg-query", "-W", "-f=${binary:Package}\\t${Version}\\n"], log, capture=True)
    return dict(line.split("\t", 1) for line in out.splitlines() if line)


def _package_changes(before: dict[str, str], after: dict[str, str]) -> dict:
    return {
        "changed_packages": {p: [before[p], after[p]] for p in sorted(after) if p in before and before[p] != after[p]},
        "added_packages": {p: after[p] for p in sorted(after) if p not in before},
        "removed_packages": {p: before[p] for p in sorted(before) if p not in after},
    }


def _security_upgrade(root: Path, log: Path, before: dict[str, str]) -> dict:
    line = f"deb {SECURITY_MIRROR} bookworm-security main\n"
    sources = root / "etc/apt/sources.list"
    text = sources.read_text() if sources.exists() else ""
    if line not in text:
        sources.write_text(text + line)
    _chroot(root, ["apt-get", "update"], log)
    _chroot(root, ["apt-get", "-y", "upgrade"], log)
    kept = _chroot(root, ["apt-get", "-s", "-o", "Debug::NoLocking=1", "upgrade"], log, capture=True)
    changes = _package_changes(before, _packages(root, log))
    changes["kept_back"] = [ln.split()[1] for ln in kept.splitlines() if ln.startswith("Inst ")]
    if not changes["changed_packages"]:
        print("!" * 78 + "\nWARNING: bookworm-security: apt-get upgrade changed NO package; the 'security' pair "
              "is identical to bookworm-base\n" + "!" * 78, file=sys.stderr, flush=True)
        changes["warning"] = "apt-get upgrade changed no package"
    return changes


def _install_extra(root: Path, log: Path, before: dict[str, str]) -> dict:
    _chroot(root, ["apt-get", "update"], log)
    _chroot(root, ["apt-get", "-y", "install", "--no-install-recommends", EXTRA_PACKAGE], log)
    changes = _package_changes(before, _packages(root, log))
    changes["installed"] = EXTRA_PACKAGE
    return changes


def _configure_release(root: Path) -> dict:
    """A configuration-only release: what a fleet ships when only settings change (no chroot needed)."""
    motd = root / "etc/motd"
    motd.write_text(motd.read_text() + CONFIG_MOTD_LINE)
    path, content = CONFIG_FILE
    (root / path).parent.mkdir(mode=0o755, exist_ok=True)
    (root / path).write_text(content)
    (root / path).chmod(0o644)
    localtime = root / "etc/localtime"
    localtime.unlink()
    localtime.symlink_to(f"/usr/share/zoneinfo/{CONFIG_TIMEZONE}")
    (root / "etc/timezone").write_text(CONFIG_TIMEZONE + "\n")
    return {"configured": ["/etc/motd", f"/{path}", "/etc/localtime", "/etc/timezone"]}


@contextlib.contextmanager
def _chroot_session(root: Path) -> Iterator[None]:
    """/proc (and /dev when the tree has no device nodes), DNS and no service starts, only for the duration."""
    mounted: list[Path] = []
    resolv = root / "etc/resolv.conf"
    policy = root / "usr/sbin/policy-rc.d"
    saved_resolv = _save(resolv)
    had_policy = policy.exists() or policy.is_symlink()
    try:
        subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
        mounted.append(root / "proc")
        null = root / "dev/null"
        if not (null.exists() and stat.S_ISCHR(os.lstat(null).st_mode)):
            subprocess.run(["mount", "--bind", "/dev", str(root / "dev")], check=True)
            mounted.append(root / "dev")
        resolv.unlink(missing_ok=True)
        shutil.copyfile("/etc/resolv.conf", resolv)
        if not had_policy:
            policy.write_text("#!/bin/sh\n# bench/rootfs.py: no service starts while building\nexit 101\n")
            policy.chmod(0o755)
        yield
    finally:
        if not had_policy:
            policy.unlink(missing_ok=True)
        _restore(resolv, saved_resolv)
        for mount_point in reversed(mounted):
            _umount(mount_point)


_Saved = tuple[str, str | bytes, os.stat_result] | None


def _save(path: Path) -> _Saved:
    if path.is_symlink():
        return ("link", os.readlink(path), os.lstat(path))
    if path.exists():
        return ("file", path.read_bytes(), os.stat(path))
    return None


def _restore(path: Path, saved: _Saved) -> None:
    """Put back what :func:`_save` saw, times and mode included, so the change leaves no trace."""
    path.unlink(missing_ok=True)
    if saved is None:
        return
    kind, value, st = saved
    if kind == "link":
        os.symlink(value, path)
    else:
        assert isinstance(value, bytes)
        path.write_bytes(value)
        path.chmod(stat.S_IMODE(st.st_mode))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _mounts_under(path: Path) -> list[Path]:
    top = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            point = line.split()[4].encode().decode("unicode_escape")  # mountinfo octal-escapes spaces
            if point == top or point.startswith(top + "/"):
                found.append(Path(point))
    return sorted(found, key=lambda p: len(str(p)), reverse=True)


def _umount(point: Path) -> None:
    if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(point)], check=True)


def _remove_tree(path: Path) -> None:
    """Remove a (possibly half-built) tree, unmounting anything left mounted inside it first."""
    if not (path.exists() or path.is_symlink()):
        return
    for point in _mounts_under(path):
        _umount(point)
    if _mounts_under(path):
        raise BuildError(f"{path}: still has mounts inside; refusing to delete it")
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


def _make_reproducible(root: Path, log: Path) -> None:
    """Drop what differs between two builds of the same packages: caches, logs, host identity, backups.

    Every tree gets the same treatment so that pairs compare fairly.
    """
    _chroot(root, ["apt-get", "clean"], log)
    for directory, keep_dirs in (("var/lib/apt/lists", False), ("var/log", True), ("tmp", False),
                                 ("var/tmp", False), ("var/cache/apt", True)):
        _empty_dir(root / directory, keep_dirs=keep_dirs)
    for pattern in ("var/lib/dpkg/*-old", "var/cache/debconf/*-old", "etc/ssh/ssh_host_*", "var/lib/dbus/machine-id",
                    "etc/*-", "var/lib/systemd/random-seed"):
        for path in root.glob(pattern):
            if path.is_file() or path.is_symlink():
                path.unlink()
    for path, content in (("etc/machine-id", ""), ("etc/resolv.conf", ""), ("etc/hostname", "localhost\n")):
        target = root / path
        if target.is_file() and not target.is_symlink():
            if target.read_text() != content:  # rewrite only when needed: keeps a parent's mtime in derived trees
                target.write_text(content)
            target.chmod(0o644)  # debootstrap copies the host's file, mode included


def _empty_dir(directory: Path, *, keep_dirs: bool) -> None:
    """Delete every file below ``directory``; with keep_dirs, keep the (now empty) directory skeleton."""
    if not directory.is_dir() or directory.is_symlink():
        return
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            if keep_dirs:
                _empty_dir(child, keep_dirs=True)
            else:
                shutil.rmtree(child)
        else:
            child.unlink()


def _tool_version(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return (proc.stdout or proc.stderr).strip().splitlines()[0] if proc.returncode == 0 else "unknown"


# --------------------------------------------------------------------------------------------- images

TOOLS = ("edge", "mksquashfs")


@dataclass(frozen=True)
class ImageSpec:
    """Compressor settings shared by both tools, so their images compare like for like."""

    compressor: str = "zstd"
    level: int | None = None  # None: the compressor's default (zstd 15, gzip 9, xz preset 6)
    block_size: int = DEFAULT_BLOCK_SIZE
    processors: int = 2

    @property
    def label(self) -> str:
        level = "default" if self.level is None else str(self.level)
        return f"{self.compressor}-{level}-{self.block_size // 1024}k"


def squashfs_command(tool: str, src: Path | str, out: Path | str, spec: ImageSpec) -> list[str]:
    """The command that builds ``out`` from ``src`` with ``tool`` ('edge' or 'mksquashfs') at ``spec``.

    Run it with :func:`squashfs_env`: both tools read SOURCE_DATE_EPOCH the same way
    (image time = epoch, newer file times clamped to it).
    """
    if tool == "edge":
        cmd = [str(EDGE), "squashfs", "create", str(src), str(out), "--comp", spec.compressor,
               "--block-size", str(spec.block_size), "--processors", str(spec.processors)]
        if spec.level is not None:
            cmd += ["--level", str(spec.level)]
        return cmd
    if tool == "mksquashfs":
        cmd = ["mksquashfs", str(src), str(out), "-comp", spec.compressor, "-b", str(spec.block_size),
               "-processors", str(spec.processors), "-noappend", "-no-progress", "-quiet"]
        if spec.level is not None:
            if spec.compressor == "xz":
                if spec.level != 6:
                    raise ValueError("mksquashfs has no xz level option (it always uses preset 6)")
            else:
                cmd += ["-Xcompression-level", str(spec.level)]
        return cmd
    raise ValueError(f"unknown tool {tool!r}: choose one of {', '.join(TOOLS)}")


def squashfs_env(epoch: int = IMAGE_EPOCH) -> dict[str, str]:
    return {**os.environ, "SOURCE_DATE_EPOCH": str(epoch), "EDGE_NO_PROGRESS": "1"}


def tool_fingerprint(tool: str, compressor: str = "zstd") -> str:
    """What makes a cached image stale: the tool (mksquashfs version or Edge's squashfs sources) and the codecs."""
    extra = {"lz4": ["liblz4-1"], "lzo": ["liblzo2-2"]}.get(compressor, [])
    libs = _tool_version(["dpkg-query", "-W", "-f=${Package}=${Version} ", "libzstd1", "liblzma5", "zlib1g", *extra])
    if tool == "mksquashfs":
        return f"{_tool_version(['mksquashfs', '-version'])}; {libs}"
    digest = hashlib.sha256()
    sources = sorted((REPO / "edge" / "squashfs").rglob("*.py")) + [REPO / "edge" / "cli" / "squashfs.py"]
    for path in sources:
        digest.update(path.relative_to(REPO).as_posix().encode() + b"\0" + path.read_bytes())
    return f"edge squashfs sources sha256:{digest.hexdigest()[:16]}; {libs}"


def image(name: str, tool: str, compressor: str = "zstd", level: int | None = None,
          block_size: int = DEFAULT_BLOCK_SIZE) -> Path:
    """A squashfs image of tree ``name`` built by ``tool``, from the cache when it is still valid."""
    if level == DEFAULT_LEVELS.get(compressor):
        level = None  # one cache entry per distinct image
    spec = ImageSpec(compressor, level, block_size)
    src = rootfs(name)
    out = IMAGES_DIR / f"{name}.{tool}.{spec.label}.sqfs"
    meta_path = out.with_suffix(".json")
    meta = {"tree": name, "tree_built_at": read_stamp(name)["built_at"], "tool": tool,
            "fingerprint": tool_fingerprint(tool, compressor), "spec": asdict(spec), "epoch": IMAGE_EPOCH}
    with _locked(out.with_suffix(".lock")):
        if not _image_is_current(out, meta_path, meta):
            _build_image(tool, src, out, meta_path, meta, spec)
    return out


def _image_is_current(out: Path, meta_path: Path, meta: dict) -> bool:
    try:
        cached = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    return out.exists() and {k: cached.get(k) for k in meta} == meta


def _build_image(tool: str, src: Path, out: Path, meta_path: Path, meta: dict, spec: ImageSpec) -> None:
    IMAGES_DIR.mkdir(parents=True, exist_ok=True)
    meta_path.unlink(missing_ok=True)
    tmp = out.with_suffix(".partial")
    cmd = squashfs_command(tool, src, tmp, spec)
    proc = subprocess.run(cmd, env=squashfs_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"{' '.join(cmd)} failed with exit code {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    os.replace(tmp, out)
    meta["command"] = f"SOURCE_DATE_EPOCH={IMAGE_EPOCH} " + " ".join(squashfs_command(tool, src, out, spec))
    meta["size"] = out.stat().st_size
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")


# ------------------------------------------------------------------------------------------------ CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build (once) and cache the Debian root filesystems the benchmarks use.")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"trees to build (default: all of {', '.join(TREES)})")
    parser.add_argument("--images", action="store_true", help="also build zstd-15/128K images with Edge and mksquashfs")
    parser.add_argument("--json", action="store_true", help="print the stamps (without package lists) as JSON")
    args = parser.parse_args(argv)
    names = args.names or list(TREES)
    try:
        for name in names:
            rootfs(name)
            if args.images:
                for tool in TOOLS:
                    print(f"{name}: {image(name, tool)}", file=sys.stderr)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stamps = {name: {k: v for k, v in read_stamp(name).items() if k != "dpkg_query_W"} for name in names}
    if args.json:
        print(json.dumps(stamps, indent=1))
        return 0
    print(f"{'tree':<20} {'files':>6} {'dirs':>5} {'links':>6} {'file bytes':>11} {'pkgs':>5}  built")
    for name, s in stamps.items():
        st = s["stats"]
        pkgs = len(read_stamp(name)["dpkg_query_W"].splitlines())
        print(f"{name:<20} {st['files']:>6} {st['directories']:>5} {st['symlinks']:>6} {st['file_bytes']:>11} "
              f"{pkgs:>5}  {s['built_at']}")
        for key in ("changed_packages", "added_packages", "removed_packages"):
            if s.get(key):
                print(f"  {key.replace('_', ' ')}: {len(s[key])}: {', '.join(s[key])}")
        if s.get("warning"):
            print(f"  WARNING: {s['warning']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
