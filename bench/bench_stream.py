#!/usr/bin/env python3
"""Streamed installs (issue #5): time to updated when the device applies a delta while it downloads.

The issue's "time to updated" adds delta bytes / 1 MB/s to the apply wall time,
as if the device downloaded first and applied after.  Edge's applier (and
``edge install URL``) streams instead: it reads the delta over HTTP Range
requests and recompresses blocks while the rest arrives.  This benchmark
measures that, for real: every delta is served by a loopback HTTP server that
sends at most LINK bytes/s (a strict cap: after a stall it does not burst to
catch up), and the clock runs from the command's start until the verified
image is on disk.

Contenders, on the security pair (bench/rootfs.py) for each image flavour:
- Edge, smallest delta (the default) — ``edge delta apply OLD URL``;
- Edge, ``--link-speed LINK`` delta (changed blocks shipped ready-compressed when
  recompressing them on the device would hold the install up);
- xdelta3 -9, decoding from the stream: ``curl URL | xdelta3 -d -s OLD``;
- the full image (download only), at the faster link.

It also computes the floor of the issue's *sequential* formula for this pair on
this machine: the smallest ``delta bytes / link + rebuild time`` any choice of
shipped or rebuilt blocks can reach, from Edge's own ops and the rebuild rate
its apply measured, so a missed formula target can be told apart from a
missing optimisation.

    .venv/bin/python bench/bench_stream.py [--flavours edge-zstd19,...] [--links 1M,12.5M] [--runs 3]
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import rootfs as rf  # noqa: E402
from bench.bench_delta import FLAVOURS, flavour_images, same, timed_apply  # noqa: E402
from bench.measure import timed  # noqa: E402
from bench.report import machine_line, update_section  # noqa: E402
from edge.cli.units import parse_rate  # noqa: E402
from edge.delta import format as dfmt  # noqa: E402
from tests.rangeserver import RangeHandler  # noqa: E402

EDGE = str(rf.EDGE)
PAIR = "security"


class Server:
    def __init__(self, root: Path) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
        self.httpd.root = str(root)  # type: ignore[attr-defined]
        self.httpd.rate = 1e6  # type: ignore[attr-defined]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()


def streamed(cmd: list[str], out: Path, new: Path, runs: int) -> tuple[float, bool]:
    """Median wall seconds of ``cmd`` over ``runs`` runs, and whether every run wrote ``new``."""
    matches: list[bool] = []
    wall, _, _ = timed_apply(cmd, out, runs, after_each=lambda: matches.append(same(out, new)))
    out.unlink(missing_ok=True)
    return wall, all(matches)


@dataclass(frozen=True)
class OpCost:
    """One op of a delta as the sequential formula sees it: its bytes, and for a BLOCKS op with
    compressed blocks the plain bytes the device rebuilds and its bytes if shipped compressed instead."""

    size: int
    plain: int = 0
    shipped: int = 0


def delta_costs(delta: Path) -> tuple[int, list[OpCost]]:
    """The delta's bytes before its first op, and every op's cost."""
    costs: list[OpCost] = []
    with open(delta, "rb") as fh:
        reader = dfmt.DeltaReader(fh, str(delta))
        reader.preamble()
        base = reader.pos
        while True:
            before = reader.pos
            op = reader.op()
            if op is None:
                break
            size = reader.pos - before
            if isinstance(op, dfmt.Blocks) and dfmt.BLOCK_COMPRESSED in op.flags:
                costs.append(OpCost(size, op.content_len, op.length))
            else:
                costs.append(OpCost(size))
    return base, costs


def floor_seconds(base: int, costs: list[OpCost], link: float, rebuild_rate: float) -> float:
    """The smallest ``bytes / link + rebuild seconds`` over every choice of BLOCKS ops shipped or rebuilt.

    Separable: an op is shipped exactly when its extra bytes cost less link time than its rebuild.
    Patch sizes are Edge's own, so this is the floor for deltas of Edge's content efficiency;
    rebuild is charged at ``rebuild_rate``, other apply work (hashing, writing, interpreter
    start) at zero.
    """
    seconds = base / link
    for c in costs:
        seconds += min(c.size / link + c.plain / rebuild_rate, c.shipped / link) if c.plain else c.size / link
    return seconds


def sequential_floor(delta: Path, link: float, rebuild_rate: float) -> dict:
    """``floor_seconds`` of a delta file, with the rate it assumed and the plain bytes its BLOCKS ops rebuild."""
    base, costs = delta_costs(delta)
    return {"seconds": floor_seconds(base, costs, link, rebuild_rate), "rebuild_rate": rebuild_rate,
            "rebuilt_plain": sum(c.plain for c in costs)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flavours", default=",".join(FLAVOURS))
    ap.add_argument("--links", default="1M,12.5M", help="link speeds in bytes/s (decimal units)")
    ap.add_argument("--runs", type=int, default=3, help="streamed runs per contender (median reported)")
    ap.add_argument("--no-write", action="store_true", help="print only, do not update docs/benchmarks.md")
    args = ap.parse_args(argv)
    flavours = [f for f in args.flavours.split(",") if f]
    links = [parse_rate(x) for x in args.links.split(",") if x]
    curl = shutil.which("curl")
    if curl is None:
        print("error: curl is needed (apt-get install curl)", file=sys.stderr)
        return 2
    a, b = rf.PAIRS[PAIR]
    work = Path(tempfile.mkdtemp(prefix="edge-bench-stream-", dir="/var/tmp"))
    server = Server(work)
    rows: list[dict] = []
    floors: dict[str, dict] = {}
    ok = True
    try:
        for flavour in flavours:
            old, new = flavour_images(flavour, a, b)
            shutil.copyfile(new, work / "full.sqfs")
            out = work / "out.img"
            timed([EDGE, "delta", "make", str(old), str(new), "-o", str(work / "edge.delta")])
            timed(["xdelta3", "-9", "-e", "-f", "-s", str(old), str(new), str(work / "x.vcdiff")])
            # sequential formula, measured locally: apply wall time (median of runs) and the rebuild rate
            edge_apply, _, proc = timed_apply([EDGE, "delta", "apply", str(old), str(work / "edge.delta"), "-o", str(out),
                                               "--json"], out, args.runs)
            applied = json.loads(proc.stdout)
            x_apply = timed_apply(["xdelta3", "-d", "-f", "-s", str(old), str(work / "x.vcdiff"), str(out)], out, args.runs)[0]
            out.unlink(missing_ok=True)
            seq = {"edge_bytes": (work / "edge.delta").stat().st_size, "edge_apply": edge_apply,
                   "x_bytes": (work / "x.vcdiff").stat().st_size, "x_apply": x_apply}
            for link in links:
                server.httpd.rate = link  # type: ignore[attr-defined]
                name = f"edge-{link:g}.delta"
                _, _, proc = timed([EDGE, "delta", "make", str(old), str(new), "-o", str(work / name),
                                    "--link-speed", f"{link:g}", "--json"])
                made = json.loads(proc.stdout)
                contenders = [
                    ("Edge (smallest delta)", work / "edge.delta",
                     [EDGE, "delta", "apply", str(old), server.url("edge.delta"), "-o", str(out)]),
                    (f"Edge --link-speed {link / 1e6:g}M", work / name,
                     [EDGE, "delta", "apply", str(old), server.url(name), "-o", str(out)]),
                    ("xdelta3 -9 (curl | xdelta3 -d)", work / "x.vcdiff",
                     ["sh", "-c", f"{curl} -sf {server.url('x.vcdiff')} | xdelta3 -d -c -s {old} > {out}"]),
                ]
                if link >= 5e6:  # 58 s per run at 1 MB/s: only at the faster link
                    contenders.append(("full image (download only)", work / "full.sqfs",
                                       [curl, "-sf", "-o", str(out), server.url("full.sqfs")]))
                for label, path, cmd in contenders:
                    print(f"   {flavour} {link / 1e6:g} MB/s {label} ...", file=sys.stderr, flush=True)
                    wall, good = streamed(cmd, out, new, args.runs)
                    ok = ok and good
                    rows.append({"flavour": flavour, "link": link, "label": label, "bytes": path.stat().st_size,
                                 "seconds": wall, "ok": good,
                                 "shipped": made["shipped_ops"] if "link-speed" in label else None})
                floors[f"{flavour}@{link:g}"] = {**sequential_floor(work / "edge.delta", link, applied["rebuild_rate"]),
                                                 "x_formula": seq["x_bytes"] / link + seq["x_apply"],
                                                 "edge_formula": seq["edge_bytes"] / link + seq["edge_apply"]}
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)
    md = report(flavours, links, rows, floors, args.runs)
    print(md)
    if not args.no_write:
        update_section("delta-stream", md)
    return 0 if ok else 1


def _row(rows: list[dict], flavour: str, link: float, label: str) -> dict | None:
    """This run's row of ``flavour`` at ``link`` whose contender label starts with ``label``."""
    return next((r for r in rows if r["flavour"] == flavour and r["link"] == link and r["label"].startswith(label)), None)


def reading(flavours: list[str], rows: list[dict], floors: dict) -> str:
    """What bounds each image's time to updated, from this run's numbers (the machine changes between runs)."""
    threads = os.cpu_count() or 1
    out = ["What bounds the 1 MB/s times in this run: the plain bytes the apply recompresses and the rate it "
           f"measured ({threads} threads); the formula's floor (as above); and the download of Edge's smallest delta "
           "alone, which no apply speed can beat when streaming.", "",
           "| image | rebuilt MB | rebuild MB/s | per core | formula floor vs xdelta3 | smallest delta's download "
           "vs xdelta3 |", "|---|---:|---:|---:|---:|---:|"]
    for flavour in flavours:
        f = floors.get(f"{flavour}@{1e6:g}")
        x, small = _row(rows, flavour, 1e6, "xdelta3"), _row(rows, flavour, 1e6, "Edge (smallest")
        if f is None or x is None or small is None:
            continue
        rate = f["rebuild_rate"] / 1e6
        out.append(f"| {flavour} | {f['rebuilt_plain'] / 1e6:.1f} | {rate:.1f} | {rate / threads:.1f} | "
                   f"{f['seconds'] / f['x_formula']:.3f}x | {small['bytes'] / 1e6 / x['seconds']:.3f}x |")
    out += ["", READING]
    return "\n".join(out)


READING = (
    "Reading: the issue's formula adds the apply to the download as if one ran after the other; Edge's applier "
    "overlaps them, so the streamed time is what a device on that link sees. Where the formula's floor is above 0.4x, "
    "no mix of shipped and rebuilt blocks reaches the formula's target on this machine: rebuilding the changed "
    "content takes longer than the time 0.4x leaves after the patches have downloaded, and shipping those blocks "
    "compressed costs more link time than rebuilding them. Byte-exact zstd level-19 recompression is the slow case "
    "(about 5 MB/s per core on AMD EPYC, 2-3 MB/s on the 2.1 GHz Xeon). Where the last column is near 0.4x (the "
    "mksquashfs lz4 and lzo images, extra flavours that are not among the issue's images) the streamed target is out "
    "of reach for another reason: these compressors have no entropy stage, so xdelta3's delta is only about 2.3x "
    "Edge's. At the faster link the smallest delta is paced by recompression wherever its time is above its download "
    "time; `--link-speed` ships changed blocks ready-compressed instead, and its delta then grows towards the size "
    "of the compressed changed blocks, about as large as xdelta3's delta for the zstd images.")


def report(flavours: list[str], links: list[float], rows: list[dict], floors: dict, runs: int) -> str:
    lines = ["## Streamed installs: time to updated while the delta downloads", ""]
    lines.append(
        "Security pair (bookworm minbase+python3 before/after `apt-get upgrade` from bookworm-security). Each delta is "
        "served by a loopback HTTP server capped at the link speed (strict cap, no catch-up burst after a stall); the "
        "time runs from the command's start (interpreter start included) until the image is written and verified; "
        f"median of {runs} runs. Edge applies while it downloads (`edge delta apply OLD URL`, the same streaming code "
        "as `edge install URL`); xdelta3 decodes from a pipe (`curl URL | xdelta3 -d -c -s OLD`). Every result was "
        "compared byte for byte with the new image.")
    lines.append("")
    lines.append("| image | link | contender | delta bytes | shipped ops | time to updated s | vs xdelta3 | ok |")
    lines.append("|---|---|---|---:|---:|---:|---:|---|")
    for flavour in flavours:
        for link in links:
            sel = [r for r in rows if r["flavour"] == flavour and r["link"] == link]
            x = _row(rows, flavour, link, "xdelta3")
            for r in sel:
                rel = f"{r['seconds'] / x['seconds']:.3f}x" if x else "-"
                shipped = "-" if r["shipped"] is None else str(r["shipped"])
                lines.append(f"| {flavour} | {link / 1e6:g} MB/s | {r['label']} | {r['bytes']:,} | {shipped} | "
                             f"{r['seconds']:.2f} | {rel} | {'ok' if r['ok'] else 'MISMATCH'} |")
    lines.append("")
    lines.append("Issue #5's target, time to updated <= 0.4x xdelta3's on the security pair, two ways:")
    lines.append("")
    for flavour in flavours:
        for link in links:
            if link != 1e6:
                continue
            sel = [r for r in rows if r["flavour"] == flavour and r["link"] == link]
            x = next(r for r in sel if r["label"].startswith("xdelta3"))
            best = min((r for r in sel if r["label"].startswith("Edge")), key=lambda r: r["seconds"])
            f = floors[f"{flavour}@{link:g}"]
            lines.append(
                f"- {flavour}: streamed (measured) {best['label']} {best['seconds']:.2f} s vs xdelta3 {x['seconds']:.2f} s "
                f"= **{best['seconds'] / x['seconds']:.3f}x** ({'PASS' if best['seconds'] <= 0.4 * x['seconds'] else 'MISS'}); "
                f"sequential formula (delta bytes / 1 MB/s + apply wall) {f['edge_formula']:.2f} s vs xdelta3 "
                f"{f['x_formula']:.2f} s = **{f['edge_formula'] / f['x_formula']:.3f}x** "
                f"({'PASS' if f['edge_formula'] <= 0.4 * f['x_formula'] else 'MISS'}); the formula's floor here is "
                f"{f['seconds']:.2f} s = {f['seconds'] / f['x_formula']:.3f}x (best mix of shipped and rebuilt blocks, "
                f"rebuild at the measured {f['rebuild_rate'] / 1e6:.1f} MB/s, all other apply work free).")
    lines += ["", reading(flavours, rows, floors), "", machine_line(), "", "Reproduce:", "", "```", ".venv/bin/python bench/bench_stream.py", "```"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
