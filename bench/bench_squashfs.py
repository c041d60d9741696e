#!/usr/bin/env python3
"""``edge squashfs create`` against ``mksquashfs -processors 2`` on a real Debian root filesystem (issue #2).

Targets: output size <= 1.01x mksquashfs and wall time <= 1.5x mksquashfs, same
compressor, level and block size, measured in one run.  Both tools run as
subprocesses (Edge through its installed CLI, so interpreter start-up counts:
that is what a user waits for), with a warm page cache, interleaved so that
noise from the shared machine hits both, alternating which goes first.
Wall time is the median of the runs; peak RSS comes from ``wait4`` per child.

Every image is checked before its numbers count: all runs of a tool must give
identical bytes, ``unsquashfs -s`` must show the same settings for both tools,
``unsquashfs -lln`` of the Edge image must equal that of the mksquashfs image
(directory sizes may differ by whole 12-byte headers, see compare_listings),
and the Edge image, extracted by ``unsquashfs`` and mounted by the kernel, must
hold exactly the tree's file contents, symlink targets and device numbers.
Needs root (debootstrap on the first run, loop mounts).

    .venv/bin/python bench/bench_squashfs.py            # all four settings, 3 runs, updates docs/benchmarks.md
    .venv/bin/python bench/bench_squashfs.py --only zstd-15 --runs 1 --no-doc
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import os
import re
import shlex
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import report  # noqa: E402
from bench.rootfs import CACHE, EDGE, IMAGE_EPOCH, TOOLS, ImageSpec, read_stamp, rootfs, squashfs_command, squashfs_env  # noqa: E402

TREE = "bookworm-base"
SIZE_TARGET = 1.01
TIME_TARGET = 1.5
CONFIGS: dict[str, ImageSpec] = {
    "zstd-15": ImageSpec("zstd", 15),
    "zstd-19": ImageSpec("zstd", 19),
    "xz": ImageSpec("xz", None),
    "gzip": ImageSpec("gzip", None),
}
WORK = CACHE / "bench-squashfs"
RESULTS = CACHE / "results" / "squashfs.json"


@dataclass
class ToolResult:
    tool: str
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    max_rss_kib: list[int] = field(default_factory=list)
    size: int = 0
    sha256: str = ""

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds)

    @property
    def peak_rss_kib(self) -> int:
        return max(self.max_rss_kib)


@dataclass
class ConfigResult:
    name: str
    spec: ImageSpec
    tools: dict[str, ToolResult]
    listing_equal: bool = False  # byte-for-byte equal unsquashfs -lln output
    dir_size_diffs: list[str] = field(default_factory=list)  # directories whose listing size differs
    listing_diff: list[str] = field(default_factory=list)  # any other difference: a broken image
    content_problems: list[str] = field(default_factory=list)  # extracted or mounted content != tree
    settings_diff: list[str] = field(default_factory=list)  # unsquashfs -s differs: not a like-for-like comparison

    @property
    def size_ratio(self) -> float:
        return self.tools["edge"].size / self.tools["mksquashfs"].size

    @property
    def time_ratio(self) -> float:
        return self.tools["edge"].median_seconds / self.tools["mksquashfs"].median_seconds

    @property
    def verified(self) -> bool:
        return not self.listing_diff and not self.content_problems and not self.settings_diff


def warm_page_cache(root: Path) -> int:
    """Read every file of the tree once, so neither tool pays for cold disk reads."""
    total = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if stat.S_ISREG(os.lstat(path).st_mode):
                with open(path, "rb") as fh:
                    while chunk := fh.read(1 << 20):
                        total += len(chunk)
    return total


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Run ``cmd``; return (wall seconds, user+system CPU seconds, peak RSS in KiB) of that child alone."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{shlex.join(cmd)} exited with {proc.returncode}: "
                               f"{err.read().decode(errors='replace').strip()[-2000:]}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def listing(image: Path) -> list[str]:
    out = subprocess.run(["unsquashfs", "-lln", str(image)], check=True, capture_output=True, text=True).stdout
    return out.splitlines()


def superblock(image: Path) -> list[str]:
    """``unsquashfs -s`` without the file name, size and counts: the settings the image was built with."""
    out = subprocess.run(["unsquashfs", "-s", str(image)], check=True, capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if not line.startswith(("Found a valid", "Filesystem size", "Number of"))]


_DIR_LINE = re.compile(r"^(d\S+ \S+)\s+(\d+) (\S+ \S+) (.*)$")  # mode owner size date time path


def compare_listings(reference: list[str], ours: list[str]) -> tuple[list[str], list[str]]:
    """Compare two ``unsquashfs -lln`` listings: (directory size differences, every other difference).

    A directory's size is its on-disk listing size, which includes one 12-byte
    header per run of entries whose inodes share a metadata block.  Two valid
    writers that lay out the inode table differently split those runs
    differently, so only a difference in whole headers is accepted; anything
    else (names, modes, owners, times, file sizes, targets) is a real difference.
    """
    if len(reference) != len(ours):
        return [], list(difflib.unified_diff(reference, ours, "mksquashfs", "edge", n=0, lineterm=""))
    dir_sizes, other = [], []
    for ref, got in zip(reference, ours):
        if ref == got:
            continue
        a, b = _DIR_LINE.match(ref), _DIR_LINE.match(got)
        if a and b and (a[1], a[3], a[4]) == (b[1], b[3], b[4]) and (int(a[2]) - int(b[2])) % 12 == 0:
            dir_sizes.append(f"/{a[4].removeprefix('squashfs-root').lstrip('/')}: mksquashfs {a[2]}, edge {b[2]}")
        else:
            other += [f"-{ref}", f"+{got}"]
    return dir_sizes, other


def compare_tree(tree: Path, copy: Path) -> list[str]:
    """Every regular file, symlink and device whose type, content or target differs between two trees."""
    problems: list[str] = []
    for dirpath, dirnames, filenames in os.walk(tree):
        rel_dir = os.path.relpath(dirpath, tree)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            src, got = tree / rel, copy / rel
            st = os.lstat(src)
            try:
                gst = os.lstat(got)
            except FileNotFoundError:
                problems.append(f"/{rel}: missing")
                continue
            if stat.S_IFMT(st.st_mode) != stat.S_IFMT(gst.st_mode):
                problems.append(f"/{rel}: type differs")
            elif stat.S_ISLNK(st.st_mode) and os.readlink(src) != os.readlink(got):
                problems.append(f"/{rel}: symlink target differs")
            elif stat.S_ISREG(st.st_mode) and (st.st_size != gst.st_size or sha256_file(src) != sha256_file(got)):
                problems.append(f"/{rel}: content differs")
            elif (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) and st.st_rdev != gst.st_rdev:
                problems.append(f"/{rel}: device number differs")
    return problems


def compare_contents(tree: Path, image: Path) -> list[str]:
    """Read ``image`` back two ways, unsquashfs and the kernel, and list what differs from ``tree`` (empty: equal)."""
    problems: list[str] = []
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        dest, mnt = Path(tmp) / "root", Path(tmp) / "mnt"
        proc = subprocess.run(["unsquashfs", "-no-progress", "-d", str(dest), str(image)], capture_output=True, text=True)
        if proc.returncode != 0:
            problems.append(f"unsquashfs failed: {proc.stderr.strip()[-500:]}")
        else:
            problems += [f"unsquashfs: {p}" for p in compare_tree(tree, dest)]
        mnt.mkdir()
        proc = subprocess.run(["mount", "-t", "squashfs", "-o", "loop,ro", str(image), str(mnt)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            problems.append(f"kernel mount failed: {proc.stderr.strip()[-500:]}")
        else:
            try:
                problems += [f"kernel: {p}" for p in compare_tree(tree, mnt)]
            finally:
                subprocess.run(["umount", str(mnt)], check=True)
    return problems


def run_config(name: str, spec: ImageSpec, tree: Path, runs: int) -> ConfigResult:
    env = squashfs_env()
    outputs = {tool: WORK / f"{tool}.{spec.label}.sqfs" for tool in TOOLS}
    result = ConfigResult(name, spec, {tool: ToolResult(tool) for tool in TOOLS})
    for n in range(runs):
        order = TOOLS if n % 2 == 0 else tuple(reversed(TOOLS))
        for tool in order:
            outputs[tool].unlink(missing_ok=True)
            seconds, cpu, rss = timed(squashfs_command(tool, tree, outputs[tool], spec), env)
            r = result.tools[tool]
            r.seconds.append(round(seconds, 3))
            r.cpu_seconds.append(round(cpu, 3))
            r.max_rss_kib.append(rss)
            digest, size = sha256_file(outputs[tool]), outputs[tool].stat().st_size
            if r.sha256 and (digest, size) != (r.sha256, r.size):
                raise RuntimeError(f"{tool} {name}: run {n + 1} gave different bytes than run 1 (not reproducible)")
            r.sha256, r.size = digest, size
            print(f"  {name} run {n + 1} {tool:<10} {seconds:7.2f} s  cpu {cpu:7.2f} s  rss {rss / 1024:6.1f} MiB  "
                  f"{size} bytes", file=sys.stderr, flush=True)
    edge_list, mks_list = listing(outputs["edge"]), listing(outputs["mksquashfs"])
    result.listing_equal = edge_list == mks_list
    dir_sizes, other = compare_listings(mks_list, edge_list)
    result.dir_size_diffs, result.listing_diff = dir_sizes, other[:200]
    result.content_problems = compare_contents(tree, outputs["edge"])[:200]
    edge_sb, mks_sb = superblock(outputs["edge"]), superblock(outputs["mksquashfs"])
    if edge_sb != mks_sb:
        result.settings_diff = list(difflib.unified_diff(mks_sb, edge_sb, "mksquashfs", "edge", n=0, lineterm=""))
    return result


def _mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def _verdict(ratio: float, target: float) -> str:
    return f"{ratio:.3f} {'PASS' if ratio <= target else 'MISS'}"


def markdown(results: list[ConfigResult], runs: int, stamp: dict, startup: float,
             load: tuple[float, float]) -> str:
    st = stamp["stats"]
    lines = [
        "## Squashfs: `edge squashfs create` vs `mksquashfs`",
        "",
        f"Tree `{TREE}`: {stamp['description']}; {st['files']} files, {st['directories']} directories, "
        f"{st['symlinks']} symlinks, {st['devices']} device nodes, {st['file_bytes']:,} bytes of file data; "
        f"{len(stamp['dpkg_query_W'].splitlines())} packages, built {stamp['built_at']}.",
        "",
        f"Same compressor, level and block size (128 KiB) for both; 2 compression threads each "
        f"(`--processors 2` / `-processors 2`); `SOURCE_DATE_EPOCH={IMAGE_EPOCH}`; page cache warm; Edge run "
        f"through its CLI (start-up included). Time is the median of {runs} runs, interleaved with mksquashfs's "
        f"runs; peak RSS is the largest of the runs. Targets (issue #2): size ratio <= {SIZE_TARGET}, "
        f"time ratio <= {TIME_TARGET}.",
        "",
        "| setting | Edge bytes | mksquashfs bytes | size ratio | Edge time | mksquashfs time | time ratio "
        "| Edge CPU | mksquashfs CPU | CPU ratio | Edge peak RSS | mksquashfs peak RSS | image checks |",
        "|---|---:|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        e, m = r.tools["edge"], r.tools["mksquashfs"]
        level = "default" if r.spec.level is None else r.spec.level
        if not r.verified:
            checks = "**FAILED**: " + ", ".join(
                (["settings differ"] if r.settings_diff else []) + (["listing differs"] if r.listing_diff else [])
                + (["contents differ"] if r.content_problems else []))
        elif r.listing_equal:
            checks = "ok; listings identical"
        else:
            checks = f"ok; listings identical but for {len(r.dir_size_diffs)} directory sizes"
        lines.append(
            f"| {r.spec.compressor} {level} | {e.size:,} | {m.size:,} | {_verdict(r.size_ratio, SIZE_TARGET)} "
            f"| {e.median_seconds:.2f} s | {m.median_seconds:.2f} s | {_verdict(r.time_ratio, TIME_TARGET)} "
            f"| {statistics.median(e.cpu_seconds):.1f} s | {statistics.median(m.cpu_seconds):.1f} s "
            f"| {statistics.median(e.cpu_seconds) / statistics.median(m.cpu_seconds):.3f} "
            f"| {_mib(e.peak_rss_kib)} | {_mib(m.peak_rss_kib)} | {checks} |")
    lines += [
        "",
        "CPU is user + system time of the process (median); on a busy machine its ratio is steadier than the "
        f"wall-time ratio (1-minute load average {load[0]:.1f} before the runs, {load[1]:.1f} after). Image checks: every run of a tool gave identical "
        "bytes; `unsquashfs -s` shows the same settings for both images; `unsquashfs -lln` of the Edge image "
        "equals that of the mksquashfs image; the Edge image, both extracted by `unsquashfs` and mounted by the "
        "kernel, holds exactly the tree's file contents, symlink targets and device numbers. One difference is "
        "accepted: a directory's listed size is its on-disk listing size, which has one 12-byte header per run of "
        "entries whose inodes share an 8 KiB metadata block, and Edge lays out its inode table differently from "
        "mksquashfs (inode numbering order, which directories get extended inodes), so a few directories differ "
        "by whole headers.",
        "",
        f"Edge CLI start-up (`edge --version`, median of 3): {startup:.2f} s, included in every Edge time above.",
        "",
        report.machine_line() + f" mksquashfs {_mksquashfs_version()}.",
        "",
        "Reproduce (as root; the first run builds the tree with debootstrap, about a minute):",
        "",
        "```sh",
        f".venv/bin/python bench/bench_squashfs.py --runs {runs}",
        "```",
        "",
        "The timed commands, for zstd level 19:",
        "",
        "```sh",
    ]
    spec = CONFIGS["zstd-19"]
    for tool in TOOLS:
        cmd = squashfs_command(tool, f"bench/cache/rootfs/{TREE}", f"{tool}.sqfs", spec)
        cmd[0] = ".venv/bin/edge" if tool == "edge" else cmd[0]
        lines.append(f"SOURCE_DATE_EPOCH={IMAGE_EPOCH} {shlex.join(cmd)}")
    lines.append("```")
    return "\n".join(lines)


def _mksquashfs_version() -> str:
    out = subprocess.run(["mksquashfs", "-version"], capture_output=True, text=True).stdout
    return out.split()[2] if out.startswith("mksquashfs version") else "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compare edge squashfs create with mksquashfs on a Debian rootfs.")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per tool and setting (default: 3)")
    parser.add_argument("--only", action="append", choices=list(CONFIGS), help="run only this setting (repeatable)")
    parser.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    tree = rootfs(TREE)
    stamp = read_stamp(TREE)
    assert stamp is not None
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"warming the page cache: {warm_page_cache(tree)} bytes read", file=sys.stderr, flush=True)
    results = []
    load_before = os.getloadavg()[0]
    try:
        startup = statistics.median(timed([str(EDGE), "--version"], squashfs_env())[0] for _ in range(3))
        for name in args.only or list(CONFIGS):
            results.append(run_config(name, CONFIGS[name], tree, args.runs))
    except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps([
        {"name": r.name, "spec": asdict(r.spec), "tools": {t: asdict(v) for t, v in r.tools.items()},
         "size_ratio": r.size_ratio, "time_ratio": r.time_ratio, "verified": r.verified,
         "listing_equal": r.listing_equal, "dir_size_diffs": r.dir_size_diffs, "listing_diff": r.listing_diff,
         "content_problems": r.content_problems, "settings_diff": r.settings_diff}
        for r in results], indent=1) + "\n")
    text = markdown(results, args.runs, stamp, startup, (load_before, os.getloadavg()[0]))
    print(text)
    for r in results:
        if r.dir_size_diffs:
            print(f"\n{r.name}: directory sizes that differ by whole 12-byte headers (accepted):",
                  *r.dir_size_diffs[:40], sep="\n")
        if r.listing_diff:
            print(f"\n{r.name}: unsquashfs -lln listings differ (mksquashfs -, edge +):", *r.listing_diff[:40], sep="\n")
        if r.content_problems:
            print(f"\n{r.name}: the Edge image's contents differ from the tree:", *r.content_problems[:40], sep="\n")
        if r.settings_diff:
            print(f"\n{r.name}: unsquashfs -s differs (mksquashfs -, edge +):", *r.settings_diff, sep="\n")
    if not args.no_doc and not args.only:
        report.update_section("squashfs", text)
    return 0 if all(r.verified for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
