"""Benchmark: `edge bundle extract` (verify + extract) against `sha256sum` on the same bundle file.

Builds a real squashfs image (about 500 MB: incompressible random files plus
compressible text, written with Edge's own writer) in a temporary directory
under /var/tmp, signs it into a full bundle, then in the same run measures,
with a warm page cache and alternating runs:

* ``sha256sum BUNDLE`` (the baseline: reading and hashing every byte once);
* ``edge bundle extract BUNDLE -o OUT --keyring ROOT`` (signature and chain
  check, every chunk hashed, the image written and fsynced);
* ``edge bundle verify BUNDLE --keyring ROOT`` (the same without writing).

Peak RSS of each child comes from GNU time (``/usr/bin/time -f %M``).  A second, 10x smaller bundle
shows the peak does not grow with the bundle.  Results go to
docs/benchmarks.md (section "bundle").  Exit status 1 if a target is missed:
extract throughput >= 70% of sha256sum, peak RSS <= 64 MiB.

Run: .venv/bin/python bench/bench_bundle.py [--size-mb 500] [--runs 5] [--keep] [--no-report]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.measure import TIME, timed  # noqa: E402
from bench.report import machine_line, update_section  # noqa: E402
from edge.squashfs import Tree, WriterOptions, walk_directory, write_image  # noqa: E402
from signing.ca import CertificateAuthority  # noqa: E402

EDGE = os.path.join(os.path.dirname(sys.executable), "edge")
MiB = 1024 * 1024
TARGET_RATIO = 0.70
TARGET_RSS_MIB = 64


def make_tree(root: str, size_mb: int, seed: int) -> None:
    """About size_mb MiB of files: 95% random (incompressible), 5% repetitive text."""
    rnd = random.Random(seed)
    os.makedirs(root)
    random_total = size_mb * MiB * 95 // 100
    n = 0
    while random_total > 0:
        size = min(random_total, 8 * MiB)
        with open(os.path.join(root, f"blob{n:03d}.bin"), "wb") as fh:
            fh.write(rnd.randbytes(size))
        random_total -= size
        n += 1
    text_total = size_mb * MiB * 5 // 100
    words = [f"word{i}" for i in range(5000)]
    os.makedirs(os.path.join(root, "text"))
    m = 0
    while text_total > 0:
        chunk = (" ".join(rnd.choice(words) for _ in range(200_000)) + "\n").encode()
        with open(os.path.join(root, "text", f"doc{m:03d}.txt"), "wb") as fh:
            fh.write(chunk)
        text_total -= len(chunk)
        m += 1


def run_child(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one child process (no progress bars)."""
    wall, rss, _ = timed(cmd, env=dict(os.environ, EDGE_NO_PROGRESS="1"))
    return wall, rss


def build_bundle(work: str, name: str, size_mb: int, keys_dir: str) -> tuple[str, int, float]:
    tree_dir = os.path.join(work, f"{name}-tree")
    make_tree(tree_dir, size_mb, seed=size_mb)
    image = os.path.join(work, f"{name}.sqfs")
    write_image(Tree.from_entries(walk_directory(tree_dir)), image, WriterOptions(compressor="zstd", level=1, mtime=0))
    shutil.rmtree(tree_dir)
    bundle = os.path.join(work, f"{name}.edgeb")
    start = time.perf_counter()
    subprocess.run([EDGE, "bundle", "create", image, "--key", os.path.join(keys_dir, "bench.key"),
                    "--cert", os.path.join(keys_dir, "bench.crt"), "--compatible", "bench-board",
                    "--version", "1.0.0", "-o", bundle], check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, EDGE_NO_PROGRESS="1"))
    create_s = time.perf_counter() - start
    os.unlink(image)
    return bundle, os.path.getsize(bundle), create_s


def measure(bundle: str, keyring: str, out: str, runs: int) -> dict[str, list[tuple[float, int]]]:
    subprocess.run(["cat", bundle], stdout=subprocess.DEVNULL, check=True)  # warm the page cache for every contender
    results: dict[str, list[tuple[float, int]]] = {"sha256sum": [], "extract": [], "verify": []}
    for _ in range(runs):
        results["sha256sum"].append(run_child(["sha256sum", bundle]))
        results["extract"].append(run_child([EDGE, "bundle", "extract", bundle, "-o", out, "--keyring", keyring]))
        os.unlink(out)
        results["verify"].append(run_child([EDGE, "bundle", "verify", bundle, "--keyring", keyring]))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=500, help="size of the large image in MB (default 500)")
    parser.add_argument("--runs", type=int, default=5, help="alternating runs per contender (median is reported)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--no-report", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args(argv)
    if shutil.which("sha256sum") is None or not os.access(TIME, os.X_OK):
        raise SystemExit("sha256sum (coreutils) and /usr/bin/time (Debian package 'time') are required")

    work = tempfile.mkdtemp(prefix="edge-bench-bundle-", dir="/var/tmp")
    try:
        ca = CertificateAuthority.init(os.path.join(work, "ca"))
        ca.issue_to_files("bench", os.path.join(work, "keys"))
        keyring = os.path.join(work, "ca", "root.crt")
        rows = []
        failures = []
        for label, size_mb in (("large", args.size_mb), ("small", max(1, args.size_mb // 10))):
            print(f"building a ~{size_mb} MB image and bundle...", file=sys.stderr)
            bundle, size, create_s = build_bundle(work, label, size_mb, os.path.join(work, "keys"))
            res = measure(bundle, keyring, os.path.join(work, f"{label}.out.sqfs"), args.runs)
            med = {k: statistics.median(t for t, _ in v) for k, v in res.items()}
            rss = {k: max(r for _, r in v) / 1024 for k, v in res.items()}
            # Each sha256sum run is paired with the extract run right after it: on a shared machine the
            # load drifts, and a paired ratio cancels most of it.  The headline is the median pair.
            pairs = [s[0] / e[0] for s, e in zip(res["sha256sum"], res["extract"], strict=True)]
            ratio = statistics.median(pairs)
            rows.append((label, size, create_s, med, rss, ratio, (min(pairs), max(pairs))))
            if label == "large" and ratio < TARGET_RATIO:
                failures.append(f"extract/sha256sum throughput ratio {ratio:.2f} < {TARGET_RATIO}")
            if max(rss["extract"], rss["verify"]) > TARGET_RSS_MIB:
                failures.append(f"peak RSS {max(rss['extract'], rss['verify']):.1f} MiB > {TARGET_RSS_MIB} MiB ({label})")
            os.unlink(bundle)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    lines = [
        "## Bundle verify + extract",
        "",
        machine_line(),
        "",
        f"A real squashfs image (zstd level 1; 95% random data, 5% text) signed into a full bundle (Ed25519, "
        f"1 MiB chunks). {args.runs} alternating runs with a warm page cache; times are medians, throughput is "
        "bundle bytes per wall second of the whole command (process start included), the ratio is the median of "
        "the ratios of each `sha256sum` run and the `extract` run right after it (range in brackets); peak RSS of "
        "the command from GNU `time -f %M`. `extract` verifies the signature and chain, hashes every chunk before "
        "writing it, and writes the image through the page cache with writeback started behind the writer, then "
        "fsyncs it, so on a slow or shared disk the disk write bounds it; `verify` is the same without writing.",
        "",
        "| bundle | size | `sha256sum` | `edge bundle extract` | `edge bundle verify` | extract / sha256sum throughput (range) | peak RSS extract / verify / sha256sum |",
        "|---|---|---|---|---|---|---|",
    ]
    def cell(seconds: float, mb: float) -> str:
        return f"{seconds:.2f} s ({mb / seconds:.0f} MB/s)"

    for label, size, _, med, rss, ratio, (low, high) in rows:
        mb = size / 1e6
        lines.append(f"| {label} | {mb:.0f} MB | {cell(med['sha256sum'], mb)} | {cell(med['extract'], mb)} | "
                     f"{cell(med['verify'], mb)} | "
                     f"**{ratio:.2f}** ({low:.2f}-{high:.2f}) | {rss['extract']:.1f} / {rss['verify']:.1f} / "
                     f"{rss['sha256sum']:.1f} MiB |")
    lines += [
        "",
        f"Targets: extract throughput >= {TARGET_RATIO:.0%} of `sha256sum` on the large bundle; peak RSS <= "
        f"{TARGET_RSS_MIB} MiB at any size. " + ("Both met." if not failures else "MISSED: " + "; ".join(failures)),
        f"Creating the bundles took {rows[0][2]:.1f} s (large) and {rows[1][2]:.1f} s (small); load average "
        f"at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.",
        "",
        "Reproduce: `.venv/bin/python bench/bench_bundle.py`",
    ]
    markdown = "\n".join(lines)
    print(markdown)
    if not args.no_report:
        update_section("bundle", markdown)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
