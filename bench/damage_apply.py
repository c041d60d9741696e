#!/usr/bin/env python3
"""Damaged-delta run (issue #5): corrupt a real delta at random, apply it, and check what the user is told.

The tests damage deltas of small generated images (tests/delta/test_errors.py); this does the same
to the benchmark's real Debian pair, where the delta holds hundreds of patches. Each trial damages a
copy of the delta one way (bit flips, a random run of bytes, inserted bytes, a truncation, or a flip
within the first 4 KiB: header and sample; with ``--kinds header``, a flip within the header's JSON), runs ``edge delta apply OLD DAMAGED -o OUT --json``
under ``/usr/bin/time`` and checks:

- exit 0 only with OUT identical to the new image, otherwise exit 10 (a delta error);
- one line on standard error, no traceback;
- peak RSS at most 64 MiB;
- damage never blamed on the device ("cannot reproduce ...; send a full bundle") nor on the source
  slot ("... is not the image this delta was made from"): the header carries its own hash, the sample
  and every patch zstd's checksum.

It prints each trial and then the messages seen, numbers masked, with their counts.

    .venv/bin/python bench/damage_apply.py [--flavour edge-zstd19] [--trials 100] [--seed 1]

Exit status 0 when every trial passed. Nothing is written to docs/.
"""

from __future__ import annotations

import argparse
import collections
import filecmp
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import rootfs as rf  # noqa: E402
from bench.bench_delta import FLAVOURS, flavour_images  # noqa: E402
from edge.delta import format as dfmt  # noqa: E402

EDGE = str(rf.EDGE)
KINDS = ("flip", "run", "insert", "truncate", "head")
EXTRA_KINDS = ("header",)  # (only when asked for: --kinds header)
RSS_LIMIT_MIB = 64


def damage(raw: bytes, kind: str, rng: random.Random) -> tuple[bytes, int]:
    """(damaged copy, first damaged offset)."""
    d = bytearray(raw)
    if kind == "flip":
        spots = sorted(rng.randrange(len(d)) for _ in range(rng.randint(1, 8)))
        for i in spots:
            d[i] ^= 1 << rng.randrange(8)
        return bytes(d), spots[0]
    if kind == "run":
        i = rng.randrange(len(d))
        n = min(rng.randint(16, 4096), len(d) - i)
        d[i : i + n] = rng.randbytes(n)
        return bytes(d), i
    if kind == "insert":
        i = rng.randrange(len(d))
        d[i:i] = rng.randbytes(rng.randint(1, 64))
        return bytes(d), i
    if kind == "truncate":
        i = rng.randrange(len(d))
        return bytes(d[:i]), i
    if kind == "header":
        hlen = dfmt.PREAMBLE.unpack_from(raw)[2]
        i = rng.randrange(dfmt.PREAMBLE.size, dfmt.PREAMBLE.size + hlen)
        d[i] ^= 1 << rng.randrange(8)
        return bytes(d), i
    i = rng.randrange(min(4096, len(d)))
    d[i] ^= 1 << rng.randrange(8)
    return bytes(d), i


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flavour", default="edge-zstd19", choices=sorted(FLAVOURS))
    ap.add_argument("--pair", default="security", choices=sorted(rf.PAIRS))
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kinds", default=",".join(KINDS),
                    help=f"comma-separated damage kinds, of {', '.join(KINDS + EXTRA_KINDS)} (default: %(default)s)")
    args = ap.parse_args(argv)
    kinds = tuple(args.kinds.split(","))
    if not set(kinds) <= set(KINDS + EXTRA_KINDS):
        ap.error(f"--kinds: unknown kind in {args.kinds!r}")
    old, new = flavour_images(args.flavour, *rf.PAIRS[args.pair])
    work = Path(tempfile.mkdtemp(prefix="edge-damage-", dir="/var/tmp"))
    rng = random.Random(args.seed)
    seen: collections.Counter[str] = collections.Counter()
    bad = 0
    try:
        delta = work / "d.delta"
        subprocess.run([EDGE, "delta", "make", str(old), str(new), "-o", str(delta)], check=True, capture_output=True)
        raw = delta.read_bytes()
        damaged, out = work / "damaged.delta", work / "out.img"
        for n in range(args.trials):
            kind = rng.choice(kinds)
            mutant, at = damage(raw, kind, rng)
            damaged.write_bytes(mutant)
            for leftover in (out, out.with_name(out.name + ".edge-apply")):
                leftover.unlink(missing_ok=True)
            p = subprocess.run(["/usr/bin/time", "-f", "RSS %M", EDGE, "delta", "apply", str(old), str(damaged),
                                "-o", str(out), "--json"], capture_output=True, text=True)
            lines = p.stderr.splitlines()
            rss = int(lines.pop().split()[1]) // 1024  # (time's own line is the last)
            lines = [line for line in lines if not line.startswith("Command exited with non-zero status")]
            message = lines[0] if lines else ""
            problems = []
            if p.returncode == 0 and not filecmp.cmp(out, new, shallow=False):
                problems.append("exit 0 with a wrong image")
            if p.returncode not in (0, 10):
                problems.append(f"exit {p.returncode}")
            if p.returncode and (len(lines) != 1 or "Traceback" in p.stderr):
                problems.append(f"{len(lines)} lines on stderr")
            if rss > RSS_LIMIT_MIB:
                problems.append(f"peak RSS {rss} MiB")
            if "cannot reproduce" in message:
                problems.append("damage to the delta blamed on the device")
            if "is not the image this delta was made from" in message:
                problems.append("damage to the delta blamed on the source slot")
            bad += bool(problems)
            seen[re.sub(r"\d+", "N", message.replace(str(work) + "/", "")) if p.returncode else "(exit 0, identical)"] += 1
            print(f"{n} {kind} at {at}: exit {p.returncode}, {rss} MiB, "
                  f"{'; '.join(problems) if problems else 'ok'}: {message[:200]}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\nmessages (numbers masked):")
    for message, count in seen.most_common():
        print(f"{count:5d}  {message[:220]}")
    print(f"{args.trials - bad} of {args.trials} trials passed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
