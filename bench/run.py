#!/usr/bin/env python3
"""Run benchmarks by name: ``bench/run.py [squashfs|bundle|delta|all]`` (``make bench`` runs all).

Each ``bench/bench_NAME.py`` has a ``main(argv) -> int`` that measures, prints
and updates its section of docs/benchmarks.md.  They run one after another,
never in parallel, so they do not disturb each other's timings.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BENCH_DIR = Path(__file__).resolve().parent
ORDER = ("squashfs", "bundle", "delta")  # the cheap, basic one first


def available() -> list[str]:
    found = {p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py")}
    return [name for name in ORDER if name in found] + sorted(found - set(ORDER))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    names = available()
    if any(a in ("-h", "--help") for a in args):
        print(__doc__.strip() + f"\n\navailable: {', '.join(names)}")
        return 0
    wanted = names if not args or "all" in args else args
    unknown = [n for n in wanted if n not in names]
    if unknown:
        print(f"error: no benchmark {', '.join(unknown)}; available: {', '.join(names)}", file=sys.stderr)
        return 2
    failed = []
    for name in wanted:
        print(f"==> bench {name}", file=sys.stderr, flush=True)
        start = time.monotonic()
        module = importlib.import_module(f"bench.bench_{name}")
        code = module.main([])  # each benchmark with its defaults
        print(f"==> bench {name}: exit {code} after {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"error: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
