#!/usr/bin/env python3
"""Power-cut soak (issue #5): SIGKILL ``edge delta apply`` at random points on a real pair, resume, compare.

The tests kill the applier at random points on small generated images (tests/delta/test_resume.py);
this runs the same check on the benchmark's real Debian images, where an apply takes seconds and
the checkpoints fall among hundreds of recompressed blocks. For each trial it starts
``edge delta apply OLD SOURCE -o OUT``, kills it (SIGKILL, like a power cut) up to ``--kills`` times,
each after a random time scaled to the apply's own duration D (measured first, uninterrupted): 0.2 s
to 2D/(kills+1), so that together the kills reach about the end of the apply on average. It lets the
last run finish and compares OUT with the new image byte for byte. SOURCE is the delta file,
standard input (``- < delta``) or a loopback HTTP URL with Range support, capped at ``--rate`` bytes/s.

    .venv/bin/python bench/soak_resume.py [--flavour edge-zstd19] [--modes file,pipe,url] [--trials 5] [--seed 1]

Exit status 0 when every trial ended with exit 0 and an identical image, 1 when one did not, 2 when no
trial was killed at all (nothing about resuming was tested). Nothing is written to docs/.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import rootfs as rf  # noqa: E402
from bench.bench_delta import FLAVOURS, flavour_images  # noqa: E402
from bench.bench_stream import Server  # noqa: E402
from edge.cli.units import parse_rate  # noqa: E402

EDGE = str(rf.EDGE)
MODES = ("file", "pipe", "url")


def trial(old: Path, new: Path, source: str, out: Path, kills: int, rng: random.Random, window: float) -> dict:
    """One apply killed up to ``kills`` times (each after a random time up to ``window`` seconds), then run to
    the end; what happened."""
    for leftover in (out, out.with_name(out.name + ".edge-apply")):
        leftover.unlink(missing_ok=True)
    if source.startswith("<"):
        cmd = ["sh", "-c", 'exec "$0" delta apply "$1" - -o "$2" --json < "$3"', EDGE, str(old), str(out), source[1:]]
    else:
        cmd = [EDGE, "delta", "apply", str(old), source, "-o", str(out), "--json"]
    killed, failures, result = 0, [], {}
    start = time.monotonic()
    while len(failures) < 3:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            stdout, stderr = proc.communicate(timeout=rng.uniform(0.2, window) if killed < kills else None)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            killed += 1
            continue
        if proc.returncode == 0:
            result = json.loads(stdout)
            break
        failures.append(f"exit {proc.returncode}: {stderr.strip().splitlines()[-1] if stderr.strip() else ''}")
    return {"kills": killed, "failures": failures, "resumed_at_op": result.get("resumed_at_op"),
            "identical": bool(result) and filecmp.cmp(out, new, shallow=False),
            "seconds": time.monotonic() - start}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flavour", default="edge-zstd19", choices=sorted(FLAVOURS))
    ap.add_argument("--pair", default="security", choices=sorted(rf.PAIRS))
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated: file, pipe, url")
    ap.add_argument("--trials", type=int, default=5, help="trials per mode")
    ap.add_argument("--kills", type=int, default=4, help="most kills per trial")
    ap.add_argument("--rate", type=parse_rate, default=4e6, help="the URL's link speed in bytes/s (default 4M)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if not modes or any(m not in MODES for m in modes):
        ap.error(f"--modes takes {', '.join(MODES)}")
    old, new = flavour_images(args.flavour, *rf.PAIRS[args.pair])
    work = Path(tempfile.mkdtemp(prefix="edge-soak-", dir="/var/tmp"))
    delta = work / "d.delta"
    subprocess.run([EDGE, "delta", "make", str(old), str(new), "-o", str(delta)], check=True, capture_output=True)
    server = Server(work)
    server.httpd.rate = args.rate  # type: ignore[attr-defined]
    sources = {"file": str(delta), "pipe": f"<{delta}", "url": server.url(delta.name)}
    rng = random.Random(args.seed)
    ok, total_kills = True, 0
    try:
        whole = trial(old, new, sources["file"], work / "out.img", 0, rng, 0.0)  # uninterrupted: how long it takes
        ok = whole["identical"] and not whole["failures"]
        window = max(0.5, 2 * whole["seconds"] / (args.kills + 1))
        print(f"an uninterrupted apply took {whole['seconds']:.1f} s: kills fall 0.2-{window:.1f} s into a run",
              flush=True)
        for mode in modes:
            for n in range(args.trials):
                r = trial(old, new, sources[mode], work / "out.img", args.kills, rng, window)
                good = r["identical"] and not r["failures"]
                ok = ok and good
                total_kills += r["kills"]
                print(f"{args.flavour} {mode} trial {n}: {r['kills']} kills, last resume at op {r['resumed_at_op']}, "
                      f"{r['seconds']:.1f} s, {'identical' if r['identical'] else 'NOT IDENTICAL'}"
                      + "".join(f"; {f}" for f in r["failures"]), flush=True)
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)
    if not ok:
        print("FAILURES")
        return 1
    if total_kills == 0:
        print("NO KILLS: every apply ended before its kill time; nothing about resuming was tested")
        return 2
    print(f"all trials ended with the new image, byte for byte ({total_kills} kills)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
